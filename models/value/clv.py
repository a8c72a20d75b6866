"""Customer lifetime value online: per-person summaries from orders, BG/NBD x Gamma-Gamma refitted now and then.

:class:`CustomerValueModel` keeps a :class:`~models.value.summary.CustomerSummary` per person, updated by
``learn_one`` with each order, and refits the population parameters of BG/NBD
(:mod:`models.value.bgnbd`) and Gamma-Gamma (:mod:`models.value.gamma_gamma`) every ``refit_every`` orders
or on demand (:meth:`CustomerValueModel.refit`). ``predict_one`` turns a person's summary into a
:class:`schemas.value.CustomerValue`: RFM scores and segment (:mod:`models.value.rfm`), probability alive,
expected purchases over ``horizon_days`` (BG/NBD eq. 10) and expected revenue = expected purchases x
expected order value (Gamma-Gamma posterior mean), undiscounted.

Time unit: days. ``t_x`` and ``T`` are days since the person's first order, ``alpha`` is in days and
``horizon_days`` defaults to 365 (12 months). "Now" is the event time of the latest order seen (the
model's clock), so replaying a stream gives the same numbers as living through it; a query may pass its
own ``at``. Until the first fit (``min_customers`` customers, ``min_repeat_customers`` of them with a
repeat order) the priors are used: the published CDNOW fits (FHL 2005) converted to days. Fits are MAP
estimates with a weak log-normal prior centred on the priors (``penalizer`` 0.1: a log-parameter s.d. of
~2.2, a factor of ~9), which changes nothing on thousands of customers but keeps a fit on a thin early
sample from running off to a boundary (``a, b -> inf`` when repeat purchases are few). Pass
``prior=MBG_PRIOR`` (an :class:`~models.value.bgnbd.MbgNbdParams`) for MBG/NBD, which lets one-time
buyers drop out.

Spend: every order counts towards a person's mean order value, the first one included. FHL drop the first
order because CDNOW's first purchases differed from later ones; in a stream the first order is an
ordinary order and dropping it would leave every one-time buyer at the population mean
(``spend_includes_first_order=False`` restores FHL's definition). Money is in ``currency``; an order in
another currency is converted with ``fx_rates`` (units of that currency per one unit of ``currency``), or
skipped and counted in ``skipped`` when no rate is known, as are orders without a usable revenue and
replays of an order id already counted (which makes ``learn_one`` idempotent under redelivery).

Accuracy (``python -m benchmarks.value --seed 1 2 3 4``, ``component_precision``): most of the distance to
the benchmark's oracles is in the purchase half, and it is information, not fitting: a cross-fitted
gradient-boosted regression of the oracle's expected purchases on ``(x, t_x, T)`` ranks no better than
BG/NBD eq. 10 (nor does MBG/NBD, or ranking by the probability of a top-decile future instead of the
mean), and the Gamma-Gamma posterior mean ranks as well as it does with the simulator's own spend
parameters. What a short history of mostly one-time buyers cannot reveal is each person's latent rate.

>>> from datetime import datetime, timedelta, UTC
>>> model = CustomerValueModel(min_customers=2, min_repeat_customers=1)
>>> t0 = datetime(2026, 11, 1, tzinfo=UTC)
>>> model.predict_one({"person_id": "ann"}).segment   # never bought
'prospect'
>>> model.learn_one({"person_id": "ann", "at": t0, "revenue": 80.0, "order_id": "o1"})
>>> model.learn_one({"person_id": "ann", "at": t0 + timedelta(days=20), "revenue": 120.0, "order_id": "o2"})
>>> model.learn_one({"person_id": "bob", "at": t0 + timedelta(days=30), "revenue": 15.0, "currency": "EUR"})
>>> model.skipped   # no EUR rate given
{'currency': 1}
>>> value = model.predict_one({"person_id": "ann"})
>>> value.frequency, value.monetary, value.model_version, 0 < value.p_alive < 1, value.expected_revenue > 0
(2, 100.0, 'bgnbd-gg.0', True, True)
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import NotRequired, TypedDict

import numpy as np

from models.times import epoch_ms, from_epoch_ms
from models.value.bgnbd import BgNbdParams, MbgNbdParams
from models.value.fitting import FitError, FloatArray
from models.value.gamma_gamma import GammaGammaParams
from models.value.rfm import RFMScorer
from models.value.summary import CustomerSummary
from schemas.value import CustomerValue

# FHL 2005's CDNOW fits: BG/NBD in weeks (alpha converted to days here), Gamma-Gamma in 1997 USD.
DEFAULT_PRIOR = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426).in_unit(7.0)
DEFAULT_SPEND_PRIOR = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
# MBG/NBD has no published CDNOW fit in FHL; this is ours on the same data (tests/models/test_value_cdnow.py).
MBG_PRIOR = MbgNbdParams(r=0.525, alpha=6.183, a=0.891, b=1.614).in_unit(7.0)
MODEL_NAME = "bgnbd-gg"


class OrderEvent(TypedDict):
    """What ``learn_one`` reads from an ``Order Completed`` event (an ``EventRow`` has every field)."""

    person_id: str
    at: datetime
    revenue: float | None
    currency: NotRequired[str]
    order_id: NotRequired[str]


class ValueQuery(TypedDict):
    """What ``predict_one`` reads: the person, and optionally the time (default: the model's clock)."""

    person_id: str
    at: NotRequired[datetime]


class CustomerValueModel:
    """RFM + BG/NBD + Gamma-Gamma customer value, learned one order at a time.

    ``learn_one(order)`` updates the person's summary, feeds the RFM quantiles and refits every
    ``refit_every`` orders (0: only when :meth:`refit` is called); ``predict_one({"person_id", "at"?})``
    returns a :class:`schemas.value.CustomerValue`; :meth:`values` scores every customer (vectorised), e.g.
    after a refit; :meth:`forget_one` erases a person.
    """

    def __init__(
        self,
        *,
        horizon_days: float = 365.0,
        currency: str = "USD",
        fx_rates: Mapping[str, float] | None = None,
        refit_every: int = 1000,
        min_customers: int = 100,
        min_repeat_customers: int = 20,
        prior: BgNbdParams = DEFAULT_PRIOR,
        spend_prior: GammaGammaParams = DEFAULT_SPEND_PRIOR,
        penalizer: float = 0.1,
        spend_includes_first_order: bool = True,
        rfm: RFMScorer | None = None,
        rfm_samples_per_order: int = 2,
        seed: int = 0,
    ) -> None:
        self.horizon_days = horizon_days
        self.currency = currency
        self.fx_rates = fx_rates
        self.refit_every = refit_every
        self.min_customers = min_customers
        self.min_repeat_customers = min_repeat_customers
        self.prior = prior
        self.spend_prior = spend_prior
        self.penalizer = penalizer
        self.spend_includes_first_order = spend_includes_first_order
        self.rfm = rfm
        self.rfm_samples_per_order = rfm_samples_per_order
        self.seed = seed
        # learned state
        self.summaries: dict[str, CustomerSummary] = {}
        self.params = prior
        self.spend_params = spend_prior
        self.n_fits = 0
        self.orders_since_fit = 0
        self.clock_ms: int | None = None
        self.skipped: dict[str, int] = {}
        self.last_fit_error = ""
        self.rfm_scorer = rfm.clone() if rfm is not None else RFMScorer()
        self._ids: list[str] = []
        self._slot: dict[str, int] = {}
        self._rng = random.Random(seed)

    @property
    def model_version(self) -> str:
        """``bgnbd-gg.N`` (``mbgnbd-gg.N`` for MBG/NBD): N successful fits so far (0: the priors)."""
        name = "mbgnbd-gg" if self.prior.dropout_at_first_purchase else MODEL_NAME
        return f"{name}.{self.n_fits}"

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def learn_one(self, x: OrderEvent) -> None:
        person_id, revenue = x["person_id"], x["revenue"]
        if not person_id:
            self._skip("person")
            return
        if revenue is None or not math.isfinite(revenue) or revenue < 0:
            self._skip("revenue")
            return
        currency = x.get("currency") or self.currency
        if currency != self.currency:
            rate = (self.fx_rates or {}).get(currency)
            if not rate or not math.isfinite(rate) or rate <= 0:
                self._skip("currency")
                return
            revenue /= rate
        at_ms, order_id = epoch_ms(x["at"]), x.get("order_id", "")
        summary = self.summaries.get(person_id)
        if summary is None:
            self.summaries[person_id] = CustomerSummary.first_order(at_ms=at_ms, revenue=revenue, order_id=order_id)
            self._slot[person_id] = len(self._ids)
            self._ids.append(person_id)
        elif summary.has_order(order_id):
            self._skip("duplicate")
            return
        else:
            self.summaries[person_id] = summary.with_order(at_ms=at_ms, revenue=revenue, order_id=order_id)
        self.clock_ms = at_ms if self.clock_ms is None else max(self.clock_ms, at_ms)
        self._sample_rfm(self.clock_ms)
        self.orders_since_fit += 1
        if self.refit_every and self.orders_since_fit >= self.refit_every:
            self.refit()

    def _sample_rfm(self, now_ms: int) -> None:
        # A uniform sample of current customers measured now: what the RFM quantiles must describe.
        for _ in range(self.rfm_samples_per_order):
            summary = self.summaries[self._ids[self._rng.randrange(len(self._ids))]]
            self.rfm_scorer.learn_one(_snapshot(summary, now_ms))

    def advance_to(self, at: datetime) -> None:
        """Move the model's clock forward to ``at`` (never back), e.g. from a timer or the stream's watermark,
        so that a refit or a prediction sees customers' current ages without waiting for the next order."""
        at_ms = epoch_ms(at)
        self.clock_ms = at_ms if self.clock_ms is None else max(self.clock_ms, at_ms)

    def merge_one(self, old: str, new: str) -> bool:
        """Identity merged person ``old`` into ``new``: ``new`` keeps both summaries' orders. True if ``old``
        had a summary. A later split does not divide it again (orders do not record their device)."""
        summary = self.summaries.get(old)
        if summary is None or old == new:
            return False
        self.forget_one(old)
        existing = self.summaries.get(new)
        if existing is None:
            self.summaries[new] = summary
            self._slot[new] = len(self._ids)
            self._ids.append(new)
        else:
            self.summaries[new] = existing.merged(summary)
        return True

    def forget_one(self, person_id: str) -> bool:
        """Erase a person's summary (privacy erasure); True if there was one. Fitted parameters stay."""
        if self.summaries.pop(person_id, None) is None:
            return False
        slot, last = self._slot.pop(person_id), self._ids.pop()
        if last != person_id:
            self._ids[slot] = last
            self._slot[last] = slot
        return True

    def _arrays(
        self, summaries: list[CustomerSummary], now_ms: int
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        x = np.array([s.repeat_purchases for s in summaries], dtype=np.float64)
        t_x = np.array([s.t_x_days for s in summaries], dtype=np.float64)
        age = np.array([s.age_days(now_ms=now_ms) for s in summaries], dtype=np.float64)
        if self.spend_includes_first_order:
            n = x + 1.0
            zbar = np.array([s.mean_order_value for s in summaries], dtype=np.float64)
        else:
            n = x
            zbar = np.array([s.mean_repeat_order_value for s in summaries], dtype=np.float64)
        return x, t_x, age, n, zbar

    def refit(self) -> bool:
        """Refit both models on every summary at the model's clock; False (priors or last fit kept) if the
        data is too thin or the fit fails (``last_fit_error`` says why)."""
        self.orders_since_fit = 0
        if self.clock_ms is None or len(self.summaries) < self.min_customers:
            return False
        x, t_x, age, n, zbar = self._arrays(list(self.summaries.values()), self.clock_ms)
        if int(np.count_nonzero(x)) < self.min_repeat_customers:
            return False
        try:
            params = type(self.prior).fit(x, t_x, age, init=self.params, prior=self.prior, penalizer=self.penalizer)
            spend = GammaGammaParams.fit(
                n, zbar, init=self.spend_params, prior=self.spend_prior, penalizer=self.penalizer
            )
        except (FitError, ValueError) as e:
            self.last_fit_error = str(e)
            return False
        self.params, self.spend_params = params, spend
        self.n_fits += 1
        self.last_fit_error = ""
        return True

    def predict_one(self, x: ValueQuery) -> CustomerValue:
        at = x.get("at")
        now_ms = epoch_ms(at) if at is not None else (self.clock_ms or 0)
        person_id = x["person_id"]
        summary = self.summaries.get(person_id)
        if summary is None:
            return self._prospect(person_id, now_ms)
        return next(self._score([(person_id, summary)], now_ms))

    def values(self, *, at: datetime | None = None) -> Iterator[CustomerValue]:
        """Every known customer's value at ``at`` (default: the model's clock), computed in one pass."""
        now_ms = epoch_ms(at) if at is not None else (self.clock_ms or 0)
        return self._score(list(self.summaries.items()), now_ms)

    def _score(self, people: list[tuple[str, CustomerSummary]], now_ms: int) -> Iterator[CustomerValue]:
        summaries = [s for _, s in people]
        x, t_x, age, n, zbar = self._arrays(summaries, now_ms)
        p_alive = self.params.p_alive(x, t_x, age)
        purchases = self.params.expected_purchases(self.horizon_days, x, t_x, age)
        revenue = purchases * self.spend_params.expected_order_value(n, zbar)
        computed_at = from_epoch_ms(now_ms)
        version = self.model_version
        for i, (person_id, summary) in enumerate(people):
            snapshot = _snapshot(summary, now_ms)
            rfm = self.rfm_scorer.predict_one(snapshot)
            yield CustomerValue(
                person_id=person_id,
                recency_days=snapshot["recency_days"],
                frequency=summary.orders,
                monetary=snapshot["monetary"],
                r_score=rfm.r_score,
                f_score=rfm.f_score,
                m_score=rfm.m_score,
                segment=rfm.segment,
                p_alive=float(p_alive[i]),
                expected_purchases=float(purchases[i]),
                expected_revenue=float(revenue[i]),
                currency=self.currency,
                horizon_days=self.horizon_days,
                model_version=version,
                computed_at=computed_at,
            )

    def _prospect(self, person_id: str, now_ms: int) -> CustomerValue:
        # Not a customer (yet): BG/NBD starts a person's clock at their first purchase, so there is
        # nothing to forecast, and no evidence that they are "alive" as a customer.
        return CustomerValue(
            person_id=person_id,
            recency_days=0.0,
            frequency=0,
            monetary=0.0,
            r_score=0,
            f_score=0,
            m_score=0,
            segment="prospect",
            p_alive=0.0,
            expected_purchases=0.0,
            expected_revenue=0.0,
            currency=self.currency,
            horizon_days=self.horizon_days,
            model_version=self.model_version,
            computed_at=from_epoch_ms(now_ms),
        )


def _snapshot(summary: CustomerSummary, now_ms: int) -> dict[str, float]:
    return {
        "recency_days": summary.recency_days(now_ms=now_ms),
        "frequency": float(summary.orders),
        "monetary": summary.mean_order_value,
    }
