"""Behaviour alerts: a model's score crossed its threshold for a person or a session, and what to do about it.

One record for every behavioural model (``kind``: ``high_propensity``, ``churn_risk``, ``bot``, ...), so
that downstream systems subscribe to one topic and analysts query one table. ``score`` and ``threshold``
are on the model's own scale (a probability for churn and bots); ``reasons`` are short human-readable facts
behind the score, most important first; ``action`` is what the alert asks for (``retention_offer``,
``exclude_session``, ``sales_follow_up``, ...).

``alert_id`` is deterministic: a hash of kind, person, session and ``alerted_at`` (the *event* time that
raised it, never the wall clock), so a replay after a crash re-emits the same ids and the warehouse keeps one
row per alert. Build alerts with :meth:`Alert.create`, which computes it.

Suggested table (the warehouse migrations own the real DDL): ``alerts``, a ReplacingMergeTree ordered by
``(kind, alerted_at, alert_id)``; ``kind``/``action``/``model``/``model_version`` LowCardinality(String),
``score``/``threshold`` Float64, ``reasons`` Array(String), ``alerted_at`` DateTime64(3, 'UTC').

>>> alert = Alert.from_json(EXAMPLE_ALERT.to_json())
>>> alert == EXAMPLE_ALERT, alert.alert_id, alert.reasons[0]
(True, 'eb361d3877cf86a9', 'days_since_last_order 61 (raises risk)')
>>> ALERT_COLUMNS[:3]
('alert_id', 'kind', 'person_id')
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

import orjson

from schemas.records import SCHEMA_VERSION

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def alert_id(*, kind: str, person_id: str, session_id: str, alerted_at: datetime) -> str:
    """The deterministic id of an alert: 16 hex digits of BLAKE2b over its identifying fields.

    Milliseconds are the warehouse's time precision, so two ``alerted_at`` equal to the millisecond give the
    same id.

    >>> at = datetime(2026, 11, 1, tzinfo=UTC)
    >>> alert_id(kind="bot", person_id="a", session_id="s", alerted_at=at) == alert_id(
    ...     kind="bot", person_id="a", session_id="s", alerted_at=at + timedelta(microseconds=10))
    True
    """
    ms = (alerted_at - _EPOCH) // timedelta(milliseconds=1)
    key = f"{kind}\x1f{person_id}\x1f{session_id}\x1f{ms}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


@dataclass(slots=True, kw_only=True)
class Alert:
    """One alert: who (``person_id``, ``session_id``, either may be empty), why, and what to do.

    A slotted dataclass like :class:`schemas.value.HighValueAlert`: built from numbers a model computed
    itself, nothing to validate. ``model``/``model_version`` name the model that raised it.
    """

    alert_id: str
    kind: str
    person_id: str
    session_id: str
    score: float
    threshold: float
    reasons: list[str]
    action: str
    alerted_at: datetime
    model: str
    model_version: str
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def create(
        cls,
        *,
        kind: str,
        person_id: str,
        session_id: str,
        score: float,
        threshold: float,
        reasons: Iterable[str],
        action: str,
        alerted_at: datetime,
        model: str,
        model_version: str,
    ) -> Alert:
        """An alert with its deterministic :func:`alert_id`."""
        return cls(
            alert_id=alert_id(kind=kind, person_id=person_id, session_id=session_id, alerted_at=alerted_at),
            kind=kind,
            person_id=person_id,
            session_id=session_id,
            score=score,
            threshold=threshold,
            reasons=list(reasons),
            action=action,
            alerted_at=alerted_at,
            model=model,
            model_version=model_version,
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Alert:
        obj = orjson.loads(data)
        obj["alerted_at"] = datetime.fromisoformat(obj["alerted_at"])
        return cls(**obj)


ALERT_COLUMNS = tuple(f.name for f in fields(Alert))

EXAMPLE_ALERT = Alert.create(
    kind="churn_risk", person_id="person_000042", session_id="5f1c2b7a9d3e4c10", score=0.91, threshold=0.8,
    reasons=["days_since_last_order 61 (raises risk)", "checkout_failures_30d 2 (raises risk)"],
    action="retention_offer", alerted_at=datetime(2026, 11, 1, 10, tzinfo=UTC), model="churn",
    model_version="churn-lr.1",
)  # fmt: skip
