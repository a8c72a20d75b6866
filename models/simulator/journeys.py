"""Rendering a planned session into Segment events (page, track, identify, alias) in true time.

The plan fixes what happens (funnel depth, order, login, consent change, feedback); rendering adds how:
which pages, how long people stay (log-normal dwell per page type), scroll depth, clicks, engagement time,
frustration bursts (rage clicks, dead clicks, JS errors) and the e-commerce spec events. Bots get pages at
their agent's fixed interval and nothing else. Events come back as ``(true_ms, event)`` pairs without
``timestamp``/``sentAt``; :mod:`noise` adds those (client clock) and delivers them.
"""

from __future__ import annotations

import math
import random
from typing import Any

from .catalog import (
    CATEGORIES,
    CHECKOUT_FAILURES,
    DEAD_SELECTORS,
    JS_ERRORS,
    RAGE_SELECTORS,
    SELECTORS,
    SITE_NAME,
    Catalog,
    Product,
)
from .config import SimulationConfig
from .plans import BotAgent, SessionPlan
from .tracker import CONSENT_EVENT, Journey

_SCROLL = {d: {"depth": d} for d in (25, 50, 75, 100)}
_NO_PROPS: dict[str, Any] = {}
# median dwell (ms) per page kind; dwell is log-normal with sigma 0.9, clipped to [1.5 s, 5 min]
_DWELL = {
    "home": 12_000,
    "category": 15_000,
    "product": 25_000,
    "search": 10_000,
    "sale": 15_000,
    "blog": 60_000,
    "login": 15_000,
    "signup": 40_000,
    "privacy": 12_000,
    "cart": 20_000,
    "checkout": 60_000,
    "confirmation": 15_000,
}
_LOG_DWELL = {k: math.log(v) for k, v in _DWELL.items()}
_BLOG = ("best-rain-jackets-2026", "how-to-choose-running-shoes", "holiday-gift-guide", "packing-list-hiking")
_BROWSE_KINDS = ("home", "category", "blog", "search")


class JourneyRenderer:
    """Turns a :class:`SessionPlan` into ``(true_ms, event)`` pairs; pure given the plan's seed."""

    __slots__ = ("_lines", "catalog", "config")

    def __init__(self, *, config: SimulationConfig, catalog: Catalog) -> None:
        self.config = config
        self.catalog = catalog
        keys = ("product_id", "sku", "name", "price", "category")
        self._lines = {
            p.product_id: {cur: {k: spec[k] for k in keys} for cur, spec in p.spec.items()} for p in catalog.products
        }

    def __call__(self, plan: SessionPlan) -> tuple[list[tuple[int, dict[str, Any]]], random.Random]:
        """The session's events in true time, and the generator to continue with (for delivery)."""
        rng = random.Random(plan.seed)
        if plan.bot is not None:
            journey = Journey(plan, rng, "en-US", "USD")
            self._bot(journey, plan, plan.bot)
            return journey.out, rng
        assert plan.person is not None
        journey = Journey(plan, rng, plan.person.locale, plan.person.currency)
        self._human(journey, plan)
        out = journey.out
        out.sort(key=_first)
        limit = round(self.config.max_session_minutes * 60_000)
        length = out[-1][0] - plan.start_ms
        if length > limit:
            start, factor = plan.start_ms, limit / length
            out = [(start + int((at - start) * factor), ev) for at, ev in out]
        return out, rng

    # -- pages ---------------------------------------------------------------------------------------------

    def _dwell(self, rng: random.Random, kind: str) -> int:
        return int(min(max(rng.lognormvariate(_LOG_DWELL[kind], 0.9), 1500.0), 300_000.0))

    @staticmethod
    def _product_props(j: Journey, product: Product, quantity: int) -> dict[str, Any]:
        currency = j.currency
        return {**product.spec[currency], "quantity": quantity, "currency": currency, "cart_id": j.cart_id}

    def _open(self, j: Journey, at: int, kind: str, *, product: Product | None = None, extra: str = "") -> None:
        """Open a page of the given kind and fire the event that page load fires."""
        rng, currency = j.rng, j.currency
        search = f"?{extra}" if extra and kind != "search" else ""
        if kind == "product":
            assert product is not None
            j.open(at, f"/p/{product.slug}", search, f"{product.name} | {SITE_NAME}", "Product")
            j.track(j.loaded(at), "Product Viewed", self._product_props(j, product, 1))
        elif kind in ("category", "sale"):
            category = product.category if product is not None else rng.choice(CATEGORIES)
            path = f"/c/{category}" if kind == "category" else f"/sale/{category}"
            j.open(at, path, search, f"{category.title()} | {SITE_NAME}", kind.title())
            items = self.catalog.by_category[category]
            shown = [items[i] for i in sorted(rng.sample(range(len(items)), 6))]
            products = [{**self._lines[p.product_id][currency], "position": k + 1} for k, p in enumerate(shown)]
            j.track(
                j.loaded(at),
                "Product List Viewed",
                {"list_id": f"{kind}_{category}", "category": category, "products": products},
            )
        elif kind == "search":
            category = product.category if product is not None else rng.choice(CATEGORIES)
            query = rng.choice(self.catalog.queries[category])
            q = f"?q={query.replace(' ', '+')}" + (f"&{extra}" if extra else "")
            j.open(at, "/search", q, f"Search: {query} | {SITE_NAME}", "Search")
            j.track(j.loaded(at), "Products Searched", {"query": query})
        elif kind == "blog":
            j.open(at, f"/blog/{rng.choice(_BLOG)}", search, f"Journal | {SITE_NAME}", "Blog")
        else:
            path, title = {
                "home": ("/", f"{SITE_NAME} | Home"),
                "login": ("/account/login", f"Sign in | {SITE_NAME}"),
                "signup": ("/account/signup", f"Create account | {SITE_NAME}"),
                "privacy": ("/privacy/preferences", f"Privacy preferences | {SITE_NAME}"),
                "cart": ("/cart", f"Your cart | {SITE_NAME}"),
                "checkout": ("/checkout", f"Checkout | {SITE_NAME}"),
                "confirmation": ("/checkout/confirmation", f"Thank you | {SITE_NAME}"),
            }[kind]
            j.open(at, path, search, title, kind.title())

    def _micro(self, j: Journey, at: int, dwell: int, *, frustrated: bool) -> None:
        """Scroll depth, clicks, frustration and engagement time while the page is open."""
        rng = j.rng
        r = rng.random()
        reached = 0 if r < 0.25 else 25 if r < 0.5 else 50 if r < 0.7 else 75 if r < 0.85 else 100
        for depth in (25, 50, 75, 100):
            if depth > reached:
                break
            j.track(
                at + int(dwell * depth / 110 * (0.85 + 0.15 * rng.random())), "Scroll Depth Reached", _SCROLL[depth]
            )
        r = rng.random()
        for _ in range(0 if r < 0.5 else 1 if r < 0.8 else 2):
            j.track(at + int(dwell * rng.random()), "Element Clicked", {"selector": rng.choice(SELECTORS)})
        if frustrated:
            when = at + int(dwell * rng.random())
            j.track(when, "Rage Click", {"selector": rng.choice(RAGE_SELECTORS), "clicks": rng.randint(3, 9)})
            if rng.random() < 0.6:
                j.track(when + rng.randint(500, 4000), "Dead Click", {"selector": rng.choice(DEAD_SELECTORS)})
            if rng.random() < 0.5:
                message, source = rng.choice(JS_ERRORS)
                j.track(at + rng.randint(200, 2000), "JS Error", {"message": message, "source": source})
        j.track(at + dwell, "Page Engagement", {"engagement_time_ms": int(dwell * (0.4 + 0.55 * rng.random()))})

    def _visit(
        self,
        j: Journey,
        at: int,
        kind: str,
        *,
        product: Product | None = None,
        extra: str = "",
        frustrated: bool = False,
    ) -> tuple[int, int]:
        """Open a page and live on it; returns (page opened at, dwell)."""
        self._open(j, at, kind, product=product, extra=extra)
        dwell = self._dwell(j.rng, kind)
        self._micro(j, at, dwell, frustrated=frustrated)
        return at, dwell

    # -- sessions ------------------------------------------------------------------------------------------

    def _products(
        self, rng: random.Random, plan: SessionPlan, landing: str
    ) -> tuple[list[tuple[Product, int]], list[tuple[Product, int]], Product | None]:
        """(products viewed in order with the quantity added, the cart, a product added then removed)."""
        person, order, depth = plan.person, plan.order, plan.depth
        assert person is not None
        views: list[tuple[Product, int]] = list(order.items) if order is not None else []
        if depth >= 1:
            extra_views = 1 + min(int(rng.expovariate(0.7)), 6) - len(views)
            for _ in range(max(extra_views, 0 if views else 1)):
                category = rng.choices(CATEGORIES, weights=person.category_weights)[0]
                views.append((rng.choice(self.catalog.by_category[category]), 0))
            rng.shuffle(views)
            if order is None and depth >= 2:
                views[0] = (views[0][0], 1)
                if len(views) > 1 and rng.random() < 0.3:
                    views[1] = (views[1][0], 1)
        cart = list(order.items) if order is not None else [(p, q) for p, q in views if q]
        removed = None
        if depth >= 3 and rng.random() < 0.15:
            category = rng.choices(CATEGORIES, weights=person.category_weights)[0]
            removed = rng.choice(self.catalog.by_category[category])
            views.insert(rng.randint(1 if landing == "product" else 0, len(views)), (removed, 1))
        return views, cart, removed

    def _human(self, j: Journey, plan: SessionPlan) -> None:
        rng, touch, frustrated = j.rng, plan.touch, plan.frustrated
        landing = rng.choices(touch.landings, weights=touch.landing_weights)[0]
        if plan.depth == 0 and landing == "product":
            landing = "category"
        views, cart, removed = self._products(rng, plan, landing)
        if landing == "product":
            view = views.pop(0)
            opened, dwell = self._visit(
                j, plan.start_ms, "product", product=view[0], extra=touch.query, frustrated=frustrated
            )
            self._add(j, opened, dwell, view)
        else:
            hint = views[0][0] if views else None
            opened, dwell = self._visit(
                j, plan.start_ms, landing, product=hint, extra=touch.query, frustrated=frustrated
            )
        at = opened + dwell + j.gap()
        if plan.consent_update is not None:
            opened, dwell = self._visit(j, at, "privacy")
            j.consent = plan.consent_update
            j.ctx = j.context()
            when = opened + rng.randint(1500, 6000)
            j.track(when, CONSENT_EVENT, _NO_PROPS, message_id=plan.consent_update_message_id)
            at = opened + dwell + j.gap()
        if plan.login is not None:
            opened, dwell = self._visit(j, at, "login")
            j.identify(opened + rng.randint(3000, min(dwell, 15000) + 3000), plan.login)
            at = opened + dwell + j.gap()
        at = self._browse(j, at, views, frustrated=frustrated, bounce=plan.depth == 0)
        if plan.depth >= 3:
            opened, dwell = self._visit(j, at, "cart")
            listed = [*cart, (removed, 1)] if removed is not None else cart
            j.track(j.loaded(opened), "Cart Viewed", {"cart_id": j.cart_id, "products": self._items(j, listed)})
            if removed is not None:
                j.track(opened + int(dwell * 0.7), "Product Removed", self._product_props(j, removed, 1))
            at = opened + dwell + j.gap()
        if plan.depth >= 4:
            at = self._checkout(j, plan, at, cart)
        if plan.feedback is not None:
            message_id, _, rating, text = plan.feedback
            props = {"text": text, "rating": rating}
            j.track(at + rng.randint(1000, 20000), "Feedback Submitted", props, message_id=message_id)

    def _browse(self, j: Journey, at: int, views: list[tuple[Product, int]], *, frustrated: bool, bounce: bool) -> int:
        """A few content pages (sessions that never see a product) or the product pages, with lists between."""
        rng = j.rng
        if bounce:
            r = rng.random()
            for _ in range(0 if r < 0.45 else 1 if r < 0.75 else 2 if r < 0.9 else 3):
                kind = rng.choice(_BROWSE_KINDS)
                opened, dwell = self._visit(j, at, kind, frustrated=frustrated and rng.random() < 0.3)
                at = opened + dwell + j.gap()
        for view in views:
            if rng.random() < 0.3:
                kind = "search" if rng.random() < 0.35 else "category"
                opened, dwell = self._visit(j, at, kind, product=view[0])
                at = opened + dwell + j.gap()
            opened, dwell = self._visit(j, at, "product", product=view[0], frustrated=frustrated and rng.random() < 0.3)
            self._add(j, opened, dwell, view)
            at = opened + dwell + j.gap()
        return at

    def _add(self, j: Journey, opened: int, dwell: int, view: tuple[Product, int]) -> None:
        product, quantity = view
        if quantity:
            when = opened + int(dwell * (0.4 + 0.5 * j.rng.random()))
            j.track(when, "Product Added", self._product_props(j, product, quantity))

    def _items(self, j: Journey, items: list[tuple[Product, int]]) -> list[dict[str, Any]]:
        return [{**self._lines[p.product_id][j.currency], "quantity": q} for p, q in items]

    def _checkout(self, j: Journey, plan: SessionPlan, at: int, cart: list[tuple[Product, int]]) -> int:
        rng, order, currency = j.rng, plan.order, j.currency
        if order is not None and plan.checkout in ("login", "signup"):
            assert plan.checkout_account is not None
            opened, dwell = self._visit(j, at, "login" if plan.checkout == "login" else "signup")
            when = opened + int(dwell * 0.8)
            if plan.checkout == "signup":
                j.alias(when, plan.checkout_account.user_id)
            j.identify(when + rng.randint(5, 40), plan.checkout_account)
            at = opened + dwell + j.gap()
        opened, dwell = self._visit(j, at, "checkout")
        products = self._items(j, cart)
        if order is None:
            value = round(sum(p["price"] * p["quantity"] for p in products), 2)
            order_id = f"NW-{rng.randrange(10**10):010d}"
            started = {
                "order_id": order_id,
                "value": value,
                "revenue": value,
                "currency": currency,
                "products": products,
            }
            j.track(j.loaded(opened), "Checkout Started", started)
            if rng.random() < 0.25:
                failure = {"order_id": order_id, "reason": rng.choice(CHECKOUT_FAILURES)}
                j.track(opened + int(dwell * 0.8), "Checkout Failed", failure)
            return opened + dwell
        started = {
            "order_id": order.order_id,
            "value": order.subtotal,
            "revenue": order.revenue,
            "currency": currency,
            "products": products,
        }
        j.track(j.loaded(opened), "Checkout Started", started)
        if rng.random() < self.config.checkout_failure_share:
            failure = {"order_id": order.order_id, "reason": rng.choice(CHECKOUT_FAILURES[:3])}
            j.track(opened + int(dwell * 0.5), "Checkout Failed", failure)
            dwell += self._dwell(rng, "checkout")
        at = opened + dwell + rng.randint(500, 3000)
        completed: dict[str, Any] = {
            "order_id": order.order_id,
            "checkout_id": order.checkout_id,
            "total": order.total,
            "revenue": order.revenue,
            "shipping": order.shipping,
            "tax": order.tax,
            "discount": order.discount,
            "currency": currency,
            "products": products,
        }
        if order.coupon is not None:
            completed["coupon"] = order.coupon
        self._open(j, at, "confirmation")
        ctx = None
        if plan.checkout == "guest":
            profile = plan.guest_profile
            assert profile is not None
            completed["email"] = profile.email
            traits = {"email": profile.email, "first_name": profile.first_name, "last_name": profile.last_name}
            ctx = {**j.ctx, "traits": traits}
        j.track(j.loaded(at), "Order Completed", completed, ctx=ctx)
        dwell = self._dwell(rng, "confirmation")
        self._micro(j, at, dwell, frustrated=False)
        return at + dwell

    def _bot(self, j: Journey, plan: SessionPlan, agent: BotAgent) -> None:
        rng = j.rng
        at = plan.start_ms
        interval = agent.interval_ms
        products = self.catalog.products
        for i in range(rng.randint(10, 60)):
            r = rng.random()
            kind = "product" if r < 0.75 else "category" if r < 0.95 else "home"
            product = products[rng.randrange(len(products))]
            self._open(j, at, kind, product=product, extra=plan.touch.query if i == 0 else "")
            at += interval + round(rng.gauss(0.0, interval * 0.02))


def _first(item: tuple[int, dict[str, Any]]) -> int:
    return item[0]
