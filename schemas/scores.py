"""Scoring records: a model's score of one event, a finished session with its features, a model metric.

Slotted dataclasses like :class:`schemas.records.EventRow` (built from numbers the models computed, on the
hot path, so a pydantic constructor would only cost time). ``to_json``/``from_json`` are their wire form on
Kafka (orjson; times as RFC 3339). Field order is the ClickHouse column order (``*_COLUMNS``).

* :class:`Score`: one model's output for one event (``scores`` topic and table, one row per scored event;
  ``message_id`` is the scored event's). ``latency_ms`` is wall time from the event's receipt to the score.
* :class:`SessionRecord`: one row of the ``sessions`` table per finished session: who, when, where from,
  the outcome (``purchased``; ``bot`` sessions are kept but never learned from) and the feature snapshot
  the propensity model learned from - the last one *before* the order for a purchased session, the last
  one for any other - one column per numeric feature (:data:`FEATURE_COLUMNS`, the keys of
  :data:`models.scoring.features.NUMERIC_FEATURES`), so ``revstream train`` can ``SELECT`` them.
  ``propensity_first``/``propensity`` are the online model's scores at the session's first and last
  scored event before its label; ``engagement`` is filled by the engagement model (0 until then).
* :class:`ModelMetric`: a prequential metric of a model over a window of labelled sessions (see
  :mod:`models.scoring.prequential` for the metric names and the window format).

Suggested tables (the warehouse migrations own the real DDL): ``scores`` MergeTree ordered by
``(model, scored_at)``; ``sessions`` ReplacingMergeTree ordered by ``session_id`` (a replayed session
writes the same row again); ``model_metrics`` MergeTree ordered by ``(model, metric, computed_at)``;
ids, ``model``, ``model_version``, ``channel``, ``device_type``, ``metric``, ``window`` as
LowCardinality(String) where their cardinality is low, ``purchased``/``bot`` Bool, the rest Float64 /
UInt64 / ``DateTime64(3, 'UTC')``.

>>> Score.from_json(EXAMPLE_SCORE.to_json()) == EXAMPLE_SCORE
True
>>> record = SessionRecord.from_json(EXAMPLE_SESSION.to_json())
>>> record == EXAMPLE_SESSION, record.features()["cart_adds"], record.features()["channel=email"]
(True, 1.0, 1.0)
>>> ModelMetric.from_json(EXAMPLE_METRIC.to_json()) == EXAMPLE_METRIC
True
>>> SESSION_COLUMNS[7:9], len(FEATURE_COLUMNS)
(('events', 'page_views'), 27)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

import orjson

from schemas.records import SCHEMA_VERSION


@dataclass(slots=True, kw_only=True)
class Score:
    """One model's score of one event."""

    message_id: str
    person_id: str
    session_id: str
    model: str
    model_version: str
    score: float
    scored_at: datetime
    latency_ms: float
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Score:
        obj = orjson.loads(data)
        obj["scored_at"] = datetime.fromisoformat(obj["scored_at"])
        return cls(**obj)


@dataclass(slots=True, kw_only=True)
class SessionRecord:
    """A finished session: identity, times, source, the training snapshot, the outcome and its scores."""

    session_id: str
    person_id: str
    anonymous_id: str
    started_at: datetime
    ended_at: datetime
    channel: str
    device_type: str
    events: float = 0.0
    page_views: float = 0.0
    product_views: float = 0.0
    product_list_views: float = 0.0
    cart_adds: float = 0.0
    cart_removes: float = 0.0
    cart_value: float = 0.0
    checkout_starts: float = 0.0
    checkout_failures: float = 0.0
    searches: float = 0.0
    dwell_seconds: float = 0.0
    engaged_seconds: float = 0.0
    max_scroll_depth: float = 0.0
    clicks: float = 0.0
    rage_clicks: float = 0.0
    dead_clicks: float = 0.0
    errors: float = 0.0
    events_per_minute: float = 0.0
    seconds_since_last_event: float = 0.0
    visits_1h: float = 0.0
    visits_7d: float = 0.0
    visits_30d: float = 0.0
    orders_30d: float = 0.0
    orders_total: float = 0.0
    days_since_last_order: float = 365.0
    days_since_last_visit: float = 365.0
    cart_abandons_7d: float = 0.0
    purchased: bool = False
    bot: bool = False
    engagement: float = 0.0
    propensity_first: float = 0.0
    propensity: float = 0.0
    model_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def features(self) -> dict[str, float]:
        """The snapshot as the models read it: every numeric column plus the one-hot channel and device."""
        snapshot = {name: float(getattr(self, name)) for name in FEATURE_COLUMNS}
        snapshot[f"channel={self.channel or 'unknown'}"] = 1.0
        snapshot[f"device={self.device_type or 'unknown'}"] = 1.0
        return snapshot

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> SessionRecord:
        obj = orjson.loads(data)
        obj["started_at"] = datetime.fromisoformat(obj["started_at"])
        obj["ended_at"] = datetime.fromisoformat(obj["ended_at"])
        return cls(**obj)


@dataclass(slots=True, kw_only=True)
class ModelMetric:
    """A prequential metric of ``model`` over ``window`` (``n`` labelled sessions), as of ``computed_at``."""

    model: str
    model_version: str
    metric: str
    value: float
    n: int
    window: str
    computed_at: datetime
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> ModelMetric:
        obj = orjson.loads(data)
        obj["computed_at"] = datetime.fromisoformat(obj["computed_at"])
        return cls(**obj)


SCORE_COLUMNS = tuple(f.name for f in fields(Score))
SESSION_COLUMNS = tuple(f.name for f in fields(SessionRecord))
METRIC_COLUMNS = tuple(f.name for f in fields(ModelMetric))
FEATURE_COLUMNS = SESSION_COLUMNS[SESSION_COLUMNS.index("events") : SESSION_COLUMNS.index("purchased")]
"""The numeric feature columns of ``sessions``, in order: the same names as the snapshot keys."""

EXAMPLE_SCORE = Score(
    message_id="m1", person_id="a1", session_id="5f1c2b7a9d3e4c10", model="propensity_online",
    model_version="lr-1a2b3c4d.3", score=0.042, scored_at=datetime(2026, 11, 1, 10, 0, 1, tzinfo=UTC),
    latency_ms=0.8,
)  # fmt: skip
EXAMPLE_SESSION = SessionRecord(
    session_id="5f1c2b7a9d3e4c10", person_id="a1", anonymous_id="a1",
    started_at=datetime(2026, 11, 1, 10, tzinfo=UTC), ended_at=datetime(2026, 11, 1, 10, 12, 30, tzinfo=UTC),
    channel="email", device_type="desktop", events=14.0, page_views=5.0, product_views=2.0, cart_adds=1.0,
    cart_value=40.0, dwell_seconds=750.0, engaged_seconds=410.0, max_scroll_depth=75.0, clicks=3.0,
    events_per_minute=1.12, seconds_since_last_event=20.0, visits_7d=1.0, visits_30d=2.0,
    days_since_last_visit=2.5, purchased=False, propensity_first=0.02, propensity=0.11,
    model_version="lr-1a2b3c4d.3",
)  # fmt: skip
EXAMPLE_METRIC = ModelMetric(
    model="propensity_online", model_version="lr-1a2b3c4d.3", metric="roc_auc", value=0.87, n=5000,
    window="last:5001-10000", computed_at=datetime(2026, 11, 1, 10, tzinfo=UTC),
)  # fmt: skip
