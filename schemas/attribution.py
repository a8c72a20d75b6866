"""Attribution and budget records: one credit per conversion, model and credited touch; one budget line per channel.

Slotted dataclasses like :class:`schemas.records.EventRow`: the attribution and spend agents build them from
numbers they computed (nothing to validate), so a pydantic constructor would only cost time.
``to_json``/``from_json`` are their wire form on Kafka (orjson; times as RFC 3339, days as ISO dates). Field
order is the intended ClickHouse column order (:data:`ATTRIBUTION_CREDIT_COLUMNS`,
:data:`BUDGET_RECOMMENDATION_COLUMNS`).

:class:`AttributionCredit`: the credits of one ``conversion_id`` and one ``model`` sum to its ``revenue``
exactly to the cent (``sum(round(credit * 100)) == round(revenue * 100)``; the models split integer cents).
Every touch the model gives a positive weight gets a row, even when its share rounds to 0 cents, so
``uniqExact(conversion_id)`` per model counts conversions and a zero-revenue conversion is still visible.
The ``incremental`` model adds one row more, for its ``baseline`` pseudo-channel (``touch_index`` = the path's
length): the share of the order it expects without any channel.
``touch_index`` is the touch's 0-based position in the person's path (time order) at the conversion.
A conversion without any touch in the lookback window is credited to ``direct`` with ``touch_index`` 0, as
web analytics does for a visit without a known source.

Suggested tables (the warehouse migrations own the real DDL): ``attribution_credits``, a ReplacingMergeTree
ordered by ``(event_at, conversion_id, model, touch_index)`` (a replayed conversion replaces its rows),
``touch_index`` UInt16, ``credit``/``revenue`` Decimal(18, 2) or Float64, ``model``/``channel``/``currency``/
``model_version`` LowCardinality(String); ``budget_recommendations`` ordered by ``(day, channel,
computed_at)``.

>>> AttributionCredit.from_json(EXAMPLE_CREDIT.to_json()) == EXAMPLE_CREDIT
True
>>> rec = BudgetRecommendation.from_json(EXAMPLE_RECOMMENDATION.to_json())
>>> rec == EXAMPLE_RECOMMENDATION, rec.day.isoformat(), ATTRIBUTION_CREDIT_COLUMNS[:3]
(True, '2026-11-02', ('conversion_id', 'person_id', 'model'))
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, date, datetime

import orjson

from schemas.records import SCHEMA_VERSION


@dataclass(slots=True, kw_only=True)
class AttributionCredit:
    """The share of one conversion's revenue that one model gives one touch of the person's path.

    ``credit`` and ``revenue`` are money in ``currency``, rounded to cents; ``event_at`` is the conversion's
    time (UTC); ``model_version`` names the model and, for the learned models, how much it had learned.
    """

    conversion_id: str
    person_id: str
    model: str
    channel: str
    campaign: str
    touch_index: int
    credit: float
    revenue: float
    currency: str
    event_at: datetime
    model_version: str
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> AttributionCredit:
        fields = orjson.loads(data)
        fields["event_at"] = datetime.fromisoformat(fields["event_at"])
        return cls(**fields)


@dataclass(slots=True, kw_only=True)
class BudgetRecommendation:
    """Tomorrow's (``day``) recommended spend on one channel, and the revenue the response curves predict.

    ``predicted_revenue`` is the channel's predicted revenue at ``recommended_spend``; ``predicted_change``
    is that minus the prediction at ``current_spend``. ``reason`` says which limit, if any, decided the
    amount (``optimal``, ``override``, ``min_spend``, ``max_spend``, ``max_increase``, ``max_decrease``)
    and how good the channel's curve fit is.
    """

    day: date
    channel: str
    current_spend: float
    recommended_spend: float
    predicted_revenue: float
    predicted_change: float
    currency: str
    reason: str
    computed_at: datetime
    model_version: str
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> BudgetRecommendation:
        fields = orjson.loads(data)
        fields["day"] = date.fromisoformat(fields["day"])
        fields["computed_at"] = datetime.fromisoformat(fields["computed_at"])
        return cls(**fields)


ATTRIBUTION_CREDIT_COLUMNS = tuple(f.name for f in fields(AttributionCredit))
BUDGET_RECOMMENDATION_COLUMNS = tuple(f.name for f in fields(BudgetRecommendation))

EXAMPLE_CREDIT = AttributionCredit(
    conversion_id="o1", person_id="person_000042", model="linear", channel="email", campaign="black-friday",
    touch_index=1, credit=21.25, revenue=42.5, currency="USD",
    event_at=datetime(2026, 11, 1, 10, 0, 0, 123000, tzinfo=UTC), model_version="linear.1",
)  # fmt: skip
EXAMPLE_RECOMMENDATION = BudgetRecommendation(
    day=date(2026, 11, 2), channel="paid_search", current_spend=1000.0, recommended_spend=1100.0,
    predicted_revenue=5210.4, predicted_change=180.2, currency="USD", reason="max_increase; hill r2=0.91",
    computed_at=datetime(2026, 11, 1, 23, 0, tzinfo=UTC), model_version="budget-hill.1",
)  # fmt: skip
