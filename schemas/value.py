"""Customer value records: a person's RFM scores and CLV forecast, and the high-value alert.

Slotted dataclasses like :class:`schemas.records.EventRow`: the value agent builds them from numbers it
computed itself (nothing to validate), once per order, so a pydantic constructor would only cost time.
``to_json``/``from_json`` are their wire form on Kafka (orjson; times as RFC 3339). Field order is the
intended ClickHouse column order. Money is in ``currency`` (the value model's reporting currency);
``horizon_days`` is the forecast window of ``expected_purchases`` and ``expected_revenue``.

Suggested tables (the warehouse migrations own the real DDL): ``customer_value``, a ReplacingMergeTree
versioned by ``computed_at`` and ordered by ``person_id`` (the latest row per person is the current value),
``frequency``/``*_score`` UInt32/UInt8, ``segment``/``currency``/``model_version`` LowCardinality(String),
the rest Float64 and ``DateTime64(3, 'UTC')``; ``high_value_alerts`` ordered by ``(alerted_at, person_id)``
with ``reasons`` an Array(String).

>>> CustomerValue.from_json(EXAMPLE_VALUE.to_json()) == EXAMPLE_VALUE
True
>>> alert = HighValueAlert.from_json(EXAMPLE_ALERT.to_json())
>>> alert == EXAMPLE_ALERT, alert.reasons[1], alert.alerted_at.isoformat()
(True, 'p_alive 0.93', '2026-11-01T10:00:00+00:00')
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

import orjson

from schemas.alerts import Alert
from schemas.records import SCHEMA_VERSION


@dataclass(slots=True, kw_only=True)
class CustomerValue:
    """One person's value at ``computed_at``: RFM, segment and the BG/NBD + Gamma-Gamma forecast.

    ``recency_days``: days since the last order. ``frequency``: orders in total (0 for a person who has
    not bought). ``monetary``: mean order value. ``*_score``: 1-5, 5 best (0 when there are no orders).
    ``segment``: an RFM segment (``champions`` ... ``lost``), or ``prospect`` without orders.
    ``p_alive``: probability the person is still a customer. ``expected_purchases``/``expected_revenue``:
    forecasts for the next ``horizon_days``.
    """

    person_id: str
    recency_days: float
    frequency: int
    monetary: float
    r_score: int
    f_score: int
    m_score: int
    segment: str
    p_alive: float
    expected_purchases: float
    expected_revenue: float
    currency: str
    horizon_days: float
    model_version: str
    computed_at: datetime
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> CustomerValue:
        fields = orjson.loads(data)
        fields["computed_at"] = datetime.fromisoformat(fields["computed_at"])
        return cls(**fields)


@dataclass(slots=True, kw_only=True)
class HighValueAlert:
    """A person's forecast revenue crossed into the top share of customers: raised once per crossing.

    ``threshold`` is the expected revenue that marks the top share when the alert was raised; ``reasons``
    are short human-readable facts behind it (forecast, probability alive, orders, spend, segment).
    """

    person_id: str
    expected_revenue: float
    threshold: float
    currency: str
    reasons: tuple[str, ...]
    alerted_at: datetime
    model_version: str
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    def as_alert(self) -> Alert:
        """This alert in the one shape every kind has on the ``alerts`` topic: kind ``high_value``, the expected
        revenue as ``score`` and the top share's threshold as ``threshold`` (both in ``currency``)."""
        return Alert.create(
            kind="high_value",
            person_id=self.person_id,
            session_id="",
            score=self.expected_revenue,
            threshold=self.threshold,
            reasons=self.reasons,
            action="sales_follow_up",
            alerted_at=self.alerted_at,
            model="clv",
            model_version=self.model_version,
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> HighValueAlert:
        fields = orjson.loads(data)
        fields["alerted_at"] = datetime.fromisoformat(fields["alerted_at"])
        fields["reasons"] = tuple(fields["reasons"])
        return cls(**fields)


CUSTOMER_VALUE_COLUMNS = tuple(f.name for f in fields(CustomerValue))
HIGH_VALUE_ALERT_COLUMNS = tuple(f.name for f in fields(HighValueAlert))

EXAMPLE_VALUE = CustomerValue(
    person_id="person_000042", recency_days=3.5, frequency=4, monetary=82.5, r_score=5, f_score=5, m_score=4,
    segment="champions", p_alive=0.93, expected_purchases=3.1, expected_revenue=255.8, currency="USD",
    horizon_days=365.0, model_version="bgnbd-gg.3", computed_at=datetime(2026, 11, 1, 10, tzinfo=UTC),
)  # fmt: skip
EXAMPLE_ALERT = HighValueAlert(
    person_id="person_000042", expected_revenue=255.8, threshold=190.0, currency="USD",
    reasons=("expected_revenue 255.80 USD over 365 days >= 190.00, the top 10% threshold", "p_alive 0.93",
             "frequency 4 orders", "monetary 82.50 USD per order", "segment champions"),
    alerted_at=datetime(2026, 11, 1, 10, tzinfo=UTC), model_version="bgnbd-gg.3",
)  # fmt: skip
