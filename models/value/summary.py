"""Per-person purchase summary: what RFM, BG/NBD and Gamma-Gamma need, in a few numbers that one order updates.

A :class:`CustomerSummary` is immutable; :meth:`CustomerSummary.with_order` returns the updated summary, so a
Faust table can hold one per person (``table[pid] = summary.with_order(...)``) and a replayed order is
recognised by its id (the last :data:`RECENT_ORDER_IDS` ids are kept), which makes the update idempotent
under at-least-once delivery. Orders may arrive out of time order: first and last times are min and max.

Times are epoch milliseconds (exact, and JSON-friendly); the ``*_days`` views are what the models use.

>>> s = CustomerSummary.first_order(at_ms=0, revenue=50.0, order_id="o1")
>>> s = s.with_order(at_ms=10 * DAY_MS, revenue=30.0, order_id="o2")
>>> s.repeat_purchases, s.t_x_days, s.age_days(now_ms=15 * DAY_MS), s.recency_days(now_ms=15 * DAY_MS)
(1, 10.0, 15.0, 5.0)
>>> s.mean_order_value, s.has_order("o1"), CustomerSummary.from_json(s.to_json()) == s
(40.0, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

DAY_MS = 86_400_000
RECENT_ORDER_IDS = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerSummary:
    """A person's orders so far: first and last time, count, revenue in total and of the first order."""

    first_ms: int
    last_ms: int
    orders: int
    revenue: float
    first_revenue: float
    recent_order_ids: tuple[str, ...] = ()

    @classmethod
    def first_order(cls, *, at_ms: int, revenue: float, order_id: str = "") -> CustomerSummary:
        return cls(
            first_ms=at_ms,
            last_ms=at_ms,
            orders=1,
            revenue=revenue,
            first_revenue=revenue,
            recent_order_ids=(order_id,) if order_id else (),
        )

    def has_order(self, order_id: str) -> bool:
        """Whether ``order_id`` is one of the recent orders (an empty id is never recognised)."""
        return bool(order_id) and order_id in self.recent_order_ids

    def with_order(self, *, at_ms: int, revenue: float, order_id: str = "") -> CustomerSummary:
        """The summary after one more order (the caller checks :meth:`has_order` to skip a replay)."""
        earlier = at_ms < self.first_ms
        ids = (*self.recent_order_ids, order_id)[-RECENT_ORDER_IDS:] if order_id else self.recent_order_ids
        return CustomerSummary(
            first_ms=at_ms if earlier else self.first_ms,
            last_ms=max(at_ms, self.last_ms),
            orders=self.orders + 1,
            revenue=self.revenue + revenue,
            first_revenue=revenue if earlier else self.first_revenue,
            recent_order_ids=ids,
        )

    def merged(self, other: CustomerSummary) -> CustomerSummary:
        """One person's summary from two that identity found to be the same person (the first order is the
        earlier of the two first orders; recent ids keep this summary's, then ``other``'s).

        >>> a = CustomerSummary.first_order(at_ms=5 * DAY_MS, revenue=20.0, order_id="a")
        >>> b = CustomerSummary.first_order(at_ms=2 * DAY_MS, revenue=70.0, order_id="b")
        >>> m = a.merged(b)
        >>> m.orders, m.revenue, m.first_revenue, m.t_x_days, m.recent_order_ids
        (2, 90.0, 70.0, 3.0, ('a', 'b'))
        """
        earlier = other if other.first_ms < self.first_ms else self
        ids = (*self.recent_order_ids, *(i for i in other.recent_order_ids if i not in self.recent_order_ids))
        return CustomerSummary(
            first_ms=earlier.first_ms,
            last_ms=max(self.last_ms, other.last_ms),
            orders=self.orders + other.orders,
            revenue=self.revenue + other.revenue,
            first_revenue=earlier.first_revenue,
            recent_order_ids=ids[-RECENT_ORDER_IDS:],
        )

    @property
    def repeat_purchases(self) -> int:
        """BG/NBD ``x``: orders after the first."""
        return self.orders - 1

    @property
    def t_x_days(self) -> float:
        """BG/NBD ``t_x``: days from the first to the last order."""
        return (self.last_ms - self.first_ms) / DAY_MS

    def age_days(self, *, now_ms: int) -> float:
        """BG/NBD ``T``: days from the first order to ``now_ms`` (never less than ``t_x``)."""
        return (max(now_ms, self.last_ms) - self.first_ms) / DAY_MS

    def recency_days(self, *, now_ms: int) -> float:
        """RFM recency: days since the last order (0 if ``now_ms`` is before it)."""
        return max(now_ms - self.last_ms, 0) / DAY_MS

    @property
    def mean_order_value(self) -> float:
        """RFM monetary value and Gamma-Gamma ``zbar`` over every order."""
        return self.revenue / self.orders

    @property
    def mean_repeat_order_value(self) -> float:
        """Gamma-Gamma ``zbar`` over repeat orders only, as FHL define it (0 without repeat orders)."""
        return (self.revenue - self.first_revenue) / self.repeat_purchases if self.repeat_purchases else 0.0

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> CustomerSummary:
        fields = orjson.loads(data)
        fields["recent_order_ids"] = tuple(fields["recent_order_ids"])
        return cls(**fields)
