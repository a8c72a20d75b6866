"""High-value detection: alert once when a person's forecast revenue crosses into the top share of customers.

:class:`HighValueDetector` keeps every customer's latest ``expected_revenue`` (one number each, in a sorted
list too), so the threshold is the exact ``1 - top_share`` order statistic of the current forecasts: one
value per customer, however often each is re-scored. (A running quantile of the stream of re-scorings would
weigh heavy buyers once per order and keep their stale values.) A person is high-value when their forecast
is positive and at or above the threshold; the first time, and again only after falling below
``threshold * (1 - hysteresis)``, :meth:`HighValueDetector.process_one` returns a
:class:`schemas.value.HighValueAlert`. A person's standing is re-evaluated when they are re-scored; after a
refit, :meth:`HighValueDetector.rescore` takes everyone's new values at once. Until ``min_customers``
customers are known there is no meaningful top share and nothing alerts.

State is plain data: the detector pickles, and ``to_json``/``from_json`` carry settings and state.

>>> from dataclasses import replace
>>> from schemas.value import EXAMPLE_VALUE
>>> detector = HighValueDetector(top_share=0.1, min_customers=10)
>>> for i in range(20):
...     _ = detector.process_one(replace(EXAMPLE_VALUE, person_id=f"p{i}", expected_revenue=10.0 * i))
>>> detector.threshold
180.0
>>> alert = detector.process_one(replace(EXAMPLE_VALUE, person_id="p3", expected_revenue=500.0))
>>> alert.person_id, alert.threshold, alert.reasons[0]
('p3', 190.0, 'expected_revenue 500.00 USD over 365 days >= 190.00, the top 10% threshold')
>>> detector.process_one(replace(EXAMPLE_VALUE, person_id="p3", expected_revenue=510.0)) is None   # once
True
>>> HighValueDetector.from_json(detector.to_json()).above == detector.above
True
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import orjson

from schemas.value import CustomerValue, HighValueAlert


class HighValueDetector:
    """Top-``top_share`` detector on ``CustomerValue.expected_revenue`` with one alert per crossing.

    ``predict_one(x)``: is ``x`` high-value against the current threshold; ``learn_one(x)``: record ``x``
    and update the person's standing; ``process_one(x)``: both, returning the alert of a new crossing.
    """

    def __init__(self, *, top_share: float = 0.1, min_customers: int = 100, hysteresis: float = 0.1) -> None:
        if not 0.0 < top_share <= 1.0:
            msg = f"top_share must be in (0, 1], got {top_share}"
            raise ValueError(msg)
        if not 0.0 <= hysteresis < 1.0:
            msg = f"hysteresis must be in [0, 1), got {hysteresis}"
            raise ValueError(msg)
        self.top_share = top_share
        self.min_customers = min_customers
        self.hysteresis = hysteresis
        # learned state
        self.values: dict[str, float] = {}
        self.above: set[str] = set()
        self.n_alerts = 0
        self._sorted: list[float] = []

    @property
    def threshold(self) -> float | None:
        """The smallest forecast in the top share of current customers; None below ``min_customers``."""
        n = len(self._sorted)
        if n == 0 or n < self.min_customers:
            return None
        k = max(1, math.ceil(self.top_share * n))
        return self._sorted[n - k]

    def predict_one(self, x: CustomerValue) -> bool:
        threshold = self.threshold
        return threshold is not None and x.expected_revenue > 0 and x.expected_revenue >= threshold

    def _store(self, person_id: str, value: float) -> None:
        old = self.values.get(person_id)
        if old is not None:
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        bisect.insort(self._sorted, value)
        self.values[person_id] = value

    def _standing(self, x: CustomerValue) -> None:
        if self.predict_one(x):
            self.above.add(x.person_id)
        elif x.person_id in self.above:
            threshold = self.threshold
            if threshold is None or x.expected_revenue < threshold * (1.0 - self.hysteresis):
                self.above.discard(x.person_id)

    def learn_one(self, x: CustomerValue) -> None:
        value = x.expected_revenue
        if not math.isfinite(value):
            return
        self._store(x.person_id, value)
        self._standing(x)

    def process_one(self, x: CustomerValue) -> HighValueAlert | None:
        """Learn ``x``; return an alert if this made the person newly high-value."""
        was_above = x.person_id in self.above
        self.learn_one(x)
        if was_above or x.person_id not in self.above:
            return None
        return self._alert(x)

    def rescore(self, values: Iterable[CustomerValue]) -> list[HighValueAlert]:
        """Take many new values at once (e.g. everyone's after a refit), then re-evaluate each person."""
        batch = [x for x in values if math.isfinite(x.expected_revenue)]
        before = {x.person_id for x in batch if x.person_id in self.above}
        for x in batch:
            self._store(x.person_id, x.expected_revenue)
        alerts = []
        for x in batch:
            self._standing(x)
            if x.person_id in self.above and x.person_id not in before:
                alerts.append(self._alert(x))
        return alerts

    def forget_one(self, person_id: str) -> bool:
        """Erase a person (privacy erasure); True if they were known."""
        old = self.values.pop(person_id, None)
        if old is None:
            return False
        del self._sorted[bisect.bisect_left(self._sorted, old)]
        self.above.discard(person_id)
        return True

    def _alert(self, x: CustomerValue) -> HighValueAlert:
        threshold = self.threshold
        assert threshold is not None  # only called for a person who is above it
        self.n_alerts += 1
        reasons = (
            f"expected_revenue {x.expected_revenue:.2f} {x.currency} over {x.horizon_days:g} days"
            f" >= {threshold:.2f}, the top {self.top_share:.0%} threshold",
            f"p_alive {x.p_alive:.2f}",
            f"frequency {x.frequency} orders",
            f"monetary {x.monetary:.2f} {x.currency} per order",
            f"segment {x.segment}",
        )
        return HighValueAlert(
            person_id=x.person_id,
            expected_revenue=x.expected_revenue,
            threshold=threshold,
            currency=x.currency,
            reasons=reasons,
            alerted_at=x.computed_at,
            model_version=x.model_version,
        )

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "top_share": self.top_share,
                "min_customers": self.min_customers,
                "hysteresis": self.hysteresis,
                "values": self.values,
                "above": sorted(self.above),
                "n_alerts": self.n_alerts,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> HighValueDetector:
        state = orjson.loads(data)
        detector = cls(
            top_share=state["top_share"], min_customers=state["min_customers"], hysteresis=state["hysteresis"]
        )
        detector.values = {k: float(v) for k, v in state["values"].items()}
        detector._sorted = sorted(detector.values.values())
        detector.above = set(state["above"])
        detector.n_alerts = state["n_alerts"]
        return detector
