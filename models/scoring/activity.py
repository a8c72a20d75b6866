"""One customer's recent activity in event time: the windows that churn features are counted over.

:class:`CustomerActivity` keeps a person's orders, session starts, frustration signals and feedback as
sorted epoch-millisecond lists, so a window count is two bisections (:func:`count_between`) and a late
event is an insertion in place. :meth:`CustomerActivity.prune` drops what no window reaches any more, which
bounds the state per person. :mod:`models.scoring.churn` reads it.

>>> activity = CustomerActivity()
>>> for day in (3, 1, 2):
...     activity.add_session(day * DAY_MS, f"s{day}")
>>> activity.session_ids, count_between(activity.session_ms, DAY_MS, 3 * DAY_MS)
(['s1', 's2', 's3'], 2)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

DAY_MS = 86_400_000
_SEEN_MS = 7 * DAY_MS  # how long a message id is remembered, so a redelivered event is not counted twice


def count_between(times: list[int], lo: int, hi: int) -> int:
    """How many of the sorted ``times`` fall in ``(lo, hi]``."""
    return bisect.bisect_right(times, hi) - bisect.bisect_right(times, lo)


@dataclass(slots=True)
class CustomerActivity:
    """One person's recent activity in event time (sorted epoch-ms lists, pruned to the windows in use)."""

    order_ms: list[int] = field(default_factory=list)
    order_revenue: list[float] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    n_orders: int = 0
    first_order_ms: int | None = None
    pruned_last_order_ms: int | None = None
    session_ms: list[int] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    frustration: dict[str, list[int]] = field(default_factory=dict)
    feedback_ms: list[int] = field(default_factory=list)
    feedback_score: list[float] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    latest_ms: int = 0
    next_checkin_ms: int | None = None
    pending: list[int] = field(default_factory=list)

    def add_order(self, at_ms: int, revenue: float, order_id: str) -> None:
        i = bisect.bisect_right(self.order_ms, at_ms)
        self.order_ms.insert(i, at_ms)
        self.order_revenue.insert(i, revenue)
        self.order_ids.insert(i, order_id)
        self.n_orders += 1
        self.first_order_ms = at_ms if self.first_order_ms is None else min(self.first_order_ms, at_ms)

    def add_session(self, at_ms: int, session_id: str) -> None:
        i = bisect.bisect_right(self.session_ms, at_ms)
        self.session_ms.insert(i, at_ms)
        self.session_ids.insert(i, session_id)

    def add_feedback(self, at_ms: int, score: float) -> None:
        i = bisect.bisect_right(self.feedback_ms, at_ms)
        self.feedback_ms.insert(i, at_ms)
        self.feedback_score.insert(i, score)

    @property
    def last_active_ms(self) -> int:
        """The latest order or session start (0 if none)."""
        return max(self.order_ms[-1] if self.order_ms else 0, self.session_ms[-1] if self.session_ms else 0)

    def prune(self, *, keep_ms: int, frustration_ms: int) -> None:
        """Drop what no window reaches any more (relative to ``latest_ms``)."""
        horizon = self.latest_ms - keep_ms
        k = bisect.bisect_left(self.order_ms, horizon)
        if k:
            self.pruned_last_order_ms = self.order_ms[k - 1]
            del self.order_ms[:k], self.order_revenue[:k], self.order_ids[:k]
        k = bisect.bisect_left(self.session_ms, horizon)
        if k:
            del self.session_ms[:k], self.session_ids[:k]
        k = bisect.bisect_left(self.feedback_ms, horizon)
        if k:
            del self.feedback_ms[:k], self.feedback_score[:k]
        for times in self.frustration.values():
            k = bisect.bisect_left(times, self.latest_ms - frustration_ms)
            if k:
                del times[:k]
        seen_horizon = self.latest_ms - _SEEN_MS
        while self.seen:
            oldest = next(iter(self.seen))
            if self.seen[oldest] >= seen_horizon:
                break
            del self.seen[oldest]
