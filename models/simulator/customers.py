"""Each person's sessions over time and the purchases they lead to: the latent truth of the simulation.

Sessions arrive as a Poisson process (thinned by a weekday pattern, then placed at a local hour drawn from
a diurnal profile). Each session's purchase probability is a logistic function of the person's baseline
log-odds, the session channel's immediate lift, the decayed carry-over of earlier touches, the device, a
frustration penalty, an abandoned-cart bonus and Gaussian intent noise. A purchase draws its value from the
person's Gamma-Gamma spend distribution and is followed by dropout with the person's BG/NBD probability.
The same process runs on through the holdout window without being rendered, which is what the CLV and
churn truth is.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field

from models.channels import CHANNELS

from .catalog import FX_TO_LOCAL, Catalog
from .channels import ChannelModel
from .config import SimulationConfig
from .devices import CARRIER_POOL_SIZE
from .formats import DAY_MS
from .plans import Device, Order, Person, SessionPlan
from .population import Population, baseline_logit

HOUR_MS = 3_600_000
# Mon..Sun traffic multipliers and local-hour weights (an e-commerce site's typical shape).
WEEKDAY = (1.0, 0.97, 0.97, 1.0, 1.05, 1.12, 1.08)
HOURS: tuple[float, ...] = (0.8, 0.5, 0.3, 0.2, 0.2, 0.3, 0.7, 1.3, 2.0, 2.6, 2.9, 3.0)
HOURS += (3.2, 3.1, 3.0, 3.0, 3.1, 3.3, 3.7, 4.3, 4.6, 4.2, 3.2, 1.8)
MIN_GAP_MS = 65 * 60_000
CART_MEMORY_MS = 7 * DAY_MS
COUPONS = (("WELCOME10", 0.1), ("HOLIDAY15", 0.15), ("VIP20", 0.2))
COUPON_SHARE = 0.15
TAX = {"US": 0.08, "CA": 0.13, "GB": 0.0, "DE": 0.0, "FR": 0.0}
FREE_SHIPPING_FROM = 50.0
SHIPPING = 5.99


def sigmoid(x: float) -> float:
    """The logistic function, safe for large negative inputs."""
    if x < -700:
        return 0.0
    return 1.0 / (1.0 + math.exp(-x))


def _decayed(stock: dict[str, float], elapsed_ms: int, half_life_ms: float) -> dict[str, float]:
    """Adstock per channel after ``elapsed_ms``: every earlier touch's log-odds halves each half-life.

    Exponential decay is memoryless, so one running total per channel equals the sum over all touches of
    ``carryover * 2 ** (-age / half_life)``; totals that fall below 1e-4 log-odds are dropped.
    """
    factor = 2.0 ** (-elapsed_ms / half_life_ms)
    return {c: v * factor for c, v in stock.items() if v * factor > 1e-4}


def logit(p: float) -> float:
    """Log-odds of a probability in (0, 1)."""
    return math.log(p / (1.0 - p))


@dataclass(slots=True)
class CustomerOutcome:
    """What a person actually did in the period and in the holdout window (money in their currency)."""

    purchases: int = 0
    revenue: float = 0.0
    revenue_usd: float = 0.0
    holdout_purchases: int = 0
    holdout_revenue: float = 0.0
    holdout_revenue_usd: float = 0.0
    holdout_sessions: int = 0
    alive_at_end: bool = True
    alive_at_holdout_end: bool = True
    dropped_out_ms: int | None = None

    def add(self, order: Order | None, *, in_period: bool) -> None:
        """Count a session (and its order, if any) in the period or in the holdout window."""
        if in_period:
            if order is not None:
                self.purchases += 1
                self.revenue += order.revenue
                self.revenue_usd += order.revenue_usd
            return
        self.holdout_sessions += 1
        if order is not None:
            self.holdout_purchases += 1
            self.holdout_revenue += order.revenue
            self.holdout_revenue_usd += order.revenue_usd


@dataclass(slots=True)
class ChannelTally:
    """Per-channel sums over human sessions of the period, for the attribution truth."""

    sessions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0))
    orders: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0))
    revenue_usd: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0.0))
    incremental_conversions: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0.0))
    incremental_revenue_usd: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0.0))
    implied_probability: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0.0))
    baseline_probability: float = 0.0
    human_sessions: int = 0
    paid_sessions: defaultdict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))


class CustomerProcess:
    """Lays out one person's sessions and purchases; holds the precomputed constants of the model."""

    __slots__ = (
        "_carriers",
        "_hour_cum",
        "_order_ids",
        "_stages",
        "_wmax",
        "catalog",
        "channels",
        "config",
        "end_ms",
        "horizon_ms",
        "start_ms",
    )

    def __init__(
        self, *, config: SimulationConfig, catalog: Catalog, channels: ChannelModel, population: Population
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.channels = channels
        self.start_ms = int(config.start.timestamp() * 1000)
        self.end_ms = self.start_ms + config.days * DAY_MS
        self.horizon_ms = self.end_ms + config.holdout_days * DAY_MS
        self._carriers = population.carriers
        self._wmax = max(WEEKDAY)
        total, cum = 0.0, []
        for w in HOURS:
            total += w
            cum.append(total)
        self._hour_cum = tuple(cum)
        f = config.funnel
        self._stages = tuple(logit(p) for p in (f.product_view, f.add_to_cart, f.cart_view, f.checkout))
        self._order_ids: set[str] = set()

    def _place(self, rng: random.Random, local_day: int, tz_hours: int) -> int:
        hour = bisect.bisect(self._hour_cum, rng.random() * self._hour_cum[-1])
        return local_day * DAY_MS + hour * HOUR_MS + rng.randrange(HOUR_MS) - tz_hours * HOUR_MS

    def arrivals(self, rng: random.Random, person: Person) -> list[int]:
        """Session start times (epoch ms) from acquisition to the end of the holdout window."""
        tz_ms = person.tz_hours * HOUR_MS
        if not person.existing:
            placed = self._place(rng, (person.acquired_ms + tz_ms) // DAY_MS, person.tz_hours)
            person.acquired_ms = min(max(placed, self.start_ms), self.end_ms - 1)
        end = self.horizon_ms if person.erasure_ms is None else min(self.horizon_ms, person.erasure_ms)
        rate = max(person.session_rate, 1e-9) * self._wmax / DAY_MS
        times = [] if person.existing else [person.acquired_ms]
        t = float(person.acquired_ms)
        while True:
            t += rng.expovariate(rate)
            if t >= end:
                break
            local_day = int(t + tz_ms) // DAY_MS
            if rng.random() * self._wmax > WEEKDAY[(local_day + 3) % 7]:
                continue
            placed = self._place(rng, local_day, person.tz_hours)
            if person.acquired_ms <= placed < end:
                times.append(placed)
        times.sort()
        for i in range(1, len(times)):
            if times[i] < times[i - 1] + MIN_GAP_MS:
                times[i] = times[i - 1] + MIN_GAP_MS + rng.randrange(30 * 60_000)
        return [x for x in times if x < end]

    def _ip(self, rng: random.Random, person: Person, device: Device, t: int) -> str:
        if device.device_type == "mobile" and rng.random() < self.config.mobile_roaming_share:
            return self._carriers[person.country][rng.randrange(CARRIER_POOL_SIZE)]
        if device.at_work and person.office_ip is not None:
            local = t + person.tz_hours * HOUR_MS
            hour = (local % DAY_MS) // HOUR_MS
            if (local // DAY_MS + 3) % 7 < 5 and 9 <= hour < 18:
                return person.office_ip
        return person.home_ip

    def _depth(self, rng: random.Random, session_logit: float) -> int:
        f = self.config.funnel
        shift = f.intent_slope * (session_logit - logit(f.reference_probability))
        depth = 0
        for stage in self._stages:
            if rng.random() >= sigmoid(stage + shift):
                break
            depth += 1
        return depth

    def order(self, rng: random.Random, person: Person) -> Order:
        """A purchase: Gamma-Gamma order value -> basket -> coupon, shipping, tax in the person's currency."""
        target = rng.gammavariate(self.config.spend_shape, 1.0 / person.spend_rate)
        items = self.catalog.basket(rng, target)
        currency = person.currency
        subtotal = round(sum(product.price(currency) * quantity for product, quantity in items), 2)
        coupon, discount = None, 0.0
        if rng.random() < COUPON_SHARE:
            coupon, pct = rng.choice(COUPONS)
            discount = round(subtotal * pct, 2)
        revenue = round(subtotal - discount, 2)
        shipping = 0.0 if revenue >= FREE_SHIPPING_FROM else SHIPPING
        tax = round(revenue * TAX[person.country], 2)
        order_id = f"NW-{rng.randrange(10**10):010d}"
        while order_id in self._order_ids:
            order_id = f"NW-{rng.randrange(10**10):010d}"
        self._order_ids.add(order_id)
        return Order(
            order_id=order_id,
            checkout_id=f"chk_{rng.getrandbits(64):016x}",
            items=items,
            currency=currency,
            subtotal=subtotal,
            discount=discount,
            coupon=coupon,
            shipping=shipping,
            tax=tax,
            revenue=revenue,
            total=round(revenue + shipping + tax, 2),
            revenue_usd=round(revenue / FX_TO_LOCAL[currency], 2),
        )

    def plan(
        self, rng: random.Random, person: Person, tally: ChannelTally
    ) -> tuple[list[SessionPlan], CustomerOutcome]:
        """The person's sessions in the period (as plans) and their outcome in period and holdout."""
        cfg = self.config
        lift, carryover, device_lift = cfg.channel_lift, cfg.channel_carryover, cfg.device_lift
        half_life_ms = cfg.carryover_half_life_days * DAY_MS
        base_logit = baseline_logit(person)
        mean_spend = cfg.spend_shape / person.spend_rate
        weights = person.device_weights
        outcome = CustomerOutcome()
        sessions: list[SessionPlan] = []
        stock: dict[str, float] = {}
        stock_at = 0
        n_devices = len(weights)
        device_cum = [sum(weights[: i + 1]) for i in range(n_devices)]
        last_abandon = -CART_MEMORY_MS - 1
        for t in self.arrivals(rng, person):
            device = person.devices[0]
            if n_devices > 1:
                device = person.devices[min(bisect.bisect(device_cum, rng.random() * device_cum[-1]), n_devices - 1)]
            touch = self.channels.draw(rng)
            channel = touch.channel
            frustrated = rng.random() < cfg.frustration_share
            base = base_logit + device_lift[device.device_type] + rng.gauss(0.0, cfg.intent_noise)
            if frustrated:
                base += cfg.frustration_lift
            if t - last_abandon < CART_MEMORY_MS:
                base += cfg.cart_return_lift
            carry = _decayed(stock, t - stock_at, half_life_ms) if stock else {}
            session_logit = base + lift[channel] + sum(carry.values())
            p = sigmoid(session_logit)
            purchased = rng.random() < p
            if carryover[channel]:
                stock = dict(carry)
                stock[channel] = stock.get(channel, 0.0) + carryover[channel]
                stock_at = t
            depth = 5 if purchased else self._depth(rng, session_logit)
            if not purchased and depth >= 2:
                last_abandon = t
            order = self.order(rng, person) if purchased else None
            if t < self.end_ms:
                plan = SessionPlan(
                    person=person,
                    device=device,
                    start_ms=t,
                    channel=channel,
                    campaign=touch.campaign,
                    touch=touch,
                    ip=self._ip(rng, person, device, t),
                    probability=p,
                    purchased=purchased,
                    depth=depth,
                    frustrated=frustrated,
                    order=order,
                )
                sessions.append(plan)
                self._tally(tally, plan, base=base, session_logit=session_logit, carry=carry, mean_spend=mean_spend)
            outcome.add(order, in_period=t < self.end_ms)
            if purchased and rng.random() < person.dropout_prob:
                outcome.dropped_out_ms = t
                outcome.alive_at_holdout_end = False
                outcome.alive_at_end = t >= self.end_ms
                break
        self._consent(rng, person, sessions)
        return sessions, outcome

    def _tally(
        self,
        tally: ChannelTally,
        plan: SessionPlan,
        *,
        base: float,
        session_logit: float,
        carry: dict[str, float],
        mean_spend: float,
    ) -> None:
        """Counterfactual truth: how much each channel's log-odds terms raised this session's probability."""
        channel, p = plan.channel, plan.probability
        tally.human_sessions += 1
        tally.sessions[channel] += 1
        tally.baseline_probability += sigmoid(base)
        for name, value in self.config.channel_lift.items():
            tally.implied_probability[name] += sigmoid(base + value)
        contributions = dict(carry)
        contributions[channel] = contributions.get(channel, 0.0) + self.config.channel_lift[channel]
        for name, value in contributions.items():
            if value:
                delta = p - sigmoid(session_logit - value)
                tally.incremental_conversions[name] += delta
                tally.incremental_revenue_usd[name] += delta * mean_spend
        if plan.order is not None:
            tally.orders[channel] += 1
            tally.revenue_usd[channel] += plan.order.revenue_usd
        if plan.campaign is not None:
            tally.paid_sessions[((plan.start_ms - self.start_ms) // DAY_MS, channel, plan.campaign)] += 1

    @staticmethod
    def _consent(rng: random.Random, person: Person, sessions: list[SessionPlan]) -> None:
        """Stamp each session with the consent in force; one session carries the person's change of mind."""
        if person.consent is None:
            return
        change_at = rng.randrange(len(sessions)) if person.consent_after is not None and sessions else len(sessions)
        for i, plan in enumerate(sessions):
            plan.consent = person.consent if i <= change_at else person.consent_after
        if change_at < len(sessions):
            sessions[change_at].consent_update = person.consent_after
