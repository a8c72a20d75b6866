"""The person-level stage: identity, then touchpoint paths and attribution, then customer value.

Everything here is about persons, and a person's devices can sit on any partition of the device-keyed
stage, so in Kafka mode this stage reads a one-partition ``people`` topic that carries every valid row;
the embedded runner calls :meth:`PeopleStage.process` right after sessionizing. One stage, one state
(:class:`PeopleStage` pickles whole as the worker's checkpoint), so the identity graph, the paths and the
value model never disagree about who is who.

Per row: the identity resolver assigns the person (``u:<userId>`` or ``a:<anonymousId>``, see
:mod:`models.identity`) and reports links, merges, splits and probable duplicate accounts; a merge moves
the old person's touchpoint path to the new one. The first row of each session adds a touch to the
person's path; an order is credited by every attribution model and updates the buyer's value; churn risk
is tracked per customer, and crossing the threshold raises a retention alert (marketing consent required).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from models.attribution import Touch, TouchpointPaths
from models.identity import IdentityResolver
from models.scoring.churn import ChurnModel
from models.scoring.retention import RetentionTrigger
from models.value.clv import CustomerValueModel
from models.value.high_value import HighValueDetector
from schemas.alerts import Alert
from schemas.attribution import AttributionCredit
from schemas.identity import IdentityLink, PersonChange, ProbableDuplicate
from schemas.records import EventRow
from schemas.value import CustomerValue, HighValueAlert
from streams.settings import Settings

_EXPIRE_EVERY = timedelta(hours=1)
# Inputs (by source) the person stage remembers: more than the device stage can redeliver after a crash (the
# rows of its unfinished batches, at most batch size x partitions).
_RECENT_IDS = 50_000


def is_order(row: EventRow) -> bool:
    return row.event == "Order Completed" and row.revenue is not None


@dataclass
class PeopleUpdate:
    """What one row changed, as records to write and publish."""

    person_id: str = ""
    links: list[IdentityLink] = field(default_factory=list)
    changes: list[PersonChange] = field(default_factory=list)
    duplicates: list[ProbableDuplicate] = field(default_factory=list)
    credits: list[AttributionCredit] = field(default_factory=list)
    values: list[CustomerValue] = field(default_factory=list)
    alerts: list[HighValueAlert] = field(default_factory=list)
    retention: list[Alert] = field(default_factory=list)

    def extend(self, other: PeopleUpdate) -> None:
        self.links += other.links
        self.changes += other.changes
        self.duplicates += other.duplicates
        self.credits += other.credits
        self.values += other.values
        self.alerts += other.alerts
        self.retention += other.retention

    def tables(self) -> dict[str, list[object]]:
        """Table name -> rows, for the sink."""
        return {
            "identity_links": list(self.links),
            "person_changes": list(self.changes),
            "probable_duplicates": list(self.duplicates),
            "attribution_credits": list(self.credits),
            "customer_value": list(self.values),
            "high_value_alerts": list(self.alerts),
            "alerts": list(self.retention),
        }


class PeopleStage:
    """Identity -> attribution -> value, for every valid row in arrival order."""

    def __init__(self, settings: Settings) -> None:
        off = not settings.identity_probabilistic
        self.identity = IdentityResolver(
            device_threshold=math.inf if off else settings.identity_device_threshold,
            trait_threshold=math.inf if off else settings.identity_trait_threshold,
        )
        self.paths = TouchpointPaths()
        self.value_model = CustomerValueModel(
            horizon_days=settings.value_horizon_days, currency=settings.value_currency, fx_rates=settings.fx_rate_map
        )
        self.detector = HighValueDetector(top_share=settings.high_value_top_share)
        self.churn = ChurnModel(horizon_days=settings.churn_horizon_days)
        self.retention = RetentionTrigger(threshold=settings.churn_alert_threshold)
        self._marketing_denied: set[str] = set()
        self._session_of: dict[str, str] = {}
        self._expired_at: datetime | None = None
        self._seq = 0
        self._recent: dict[str, None] = {}

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore a checkpoint, also one written before ``_seq`` and ``_recent`` existed."""
        self.__dict__.update({"_seq": 0, "_recent": {}, **state})

    def process(self, row: EventRow) -> PeopleUpdate:
        """Apply one valid row; a row of an input seen recently (redelivered by the device stage after a crash:
        same ``source``) is skipped. Two inputs with one ``messageId`` on two devices are two events here, as
        in the device stage, which de-duplicates per device."""
        recent = self._recent
        if row.source in recent:
            return PeopleUpdate(person_id=row.person_id)
        recent[row.source] = None
        if len(recent) > _RECENT_IDS:
            del recent[next(iter(recent))]
        resolved = self.identity.observe(row)
        for link in resolved.links:
            link.seq = self._next_seq()
        for change in resolved.changes:
            change.seq = self._next_seq()
        person = resolved.person_id or row.person_id
        update = PeopleUpdate(
            person_id=person, links=resolved.links, changes=resolved.changes, duplicates=resolved.duplicates
        )
        for change in resolved.changes:
            if change.kind == "merge":
                self._merge(change.old_person_id, change.new_person_id, at=row.event_at, update=update)
        if row.consent.get("marketing", True):  # alerts are marketing: the person's latest consent decides
            self._marketing_denied.discard(person)
        else:
            self._marketing_denied.add(person)
        device = row.device_key
        if self._session_of.get(device) != row.session_id:
            self._session_of[device] = row.session_id
            touch = Touch(channel=row.channel, campaign=row.campaign, at=row.event_at, session_id=row.session_id)
            self.paths.add(person, touch)
        if is_order(row):
            assert row.revenue is not None
            update.credits = self.paths.convert(
                person, conversion_id=row.order_id, revenue=row.revenue, currency=row.currency, at=row.event_at
            )
            values, alerts = self.value(dataclasses.replace(row, person_id=person))
            update.values += values
            update.alerts += alerts
        if update.alerts:
            update.alerts = [a for a in update.alerts if a.person_id not in self._marketing_denied]
        self._churn(row, person, update)
        if self._expired_at is None or row.event_at - self._expired_at >= _EXPIRE_EVERY:
            self.paths.expire(row.event_at)
            self._expired_at = row.event_at
        return update

    def _merge(self, old: str, new: str, *, at: datetime, update: PeopleUpdate) -> None:
        """Identity merged two persons: the per-person state follows (paths, churn, value)."""
        self.paths.merge(old, new)
        self.churn.merge(old, new)
        self.retention.merge(old, new)
        if self.value_model.merge_one(old, new):
            self.detector.forget_one(old)
            value = self.value_model.predict_one({"person_id": new, "at": at})
            update.values.append(value)
            alert = self.detector.process_one(value)
            update.alerts += [alert] if alert is not None else []

    def _next_seq(self) -> int:
        """The decision order of identity records: increasing, and past any earlier run's (a wall-clock floor,
        in microseconds, since an embedded run starts a fresh stage on the same warehouse)."""
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        return self._seq

    def _churn(self, row: EventRow, person: str, update: PeopleUpdate) -> None:
        """Churn risk of customers; a retention action when it crosses the threshold, where marketing is allowed."""
        snapshot = self.churn.observe(row, person_id=person)
        snapshots = self.churn.advance(row.event_at).snapshots
        if snapshot is not None:
            snapshots.append(snapshot)
        for snap in snapshots:
            alert = self.retention.process_one(snap, self.churn)
            if alert is not None and alert.person_id not in self._marketing_denied:
                update.retention.append(alert)

    def value(self, order: EventRow) -> tuple[list[CustomerValue], list[HighValueAlert]]:
        """Learn one order (idempotent on ``order_id``); re-score everyone when the model refitted."""
        fits = self.value_model.n_fits
        self.value_model.learn_one(
            {
                "person_id": order.person_id,
                "at": order.event_at,
                "revenue": order.revenue or 0.0,
                "currency": order.currency,
                "order_id": order.order_id,
            }
        )
        if self.value_model.n_fits != fits:
            values = list(self.value_model.values())
            return values, self.detector.rescore(values)
        value = self.value_model.predict_one({"person_id": order.person_id})
        alert = self.detector.process_one(value)
        return [value], [alert] if alert is not None else []

    def forget(self, ids: list[str], *, at: datetime) -> None:
        """Erasure: drop every id (and the persons they formed) from identity, paths and value."""
        persons = set(ids)
        for identifier in ids:
            persons.update(self.identity.forget(identifier, at=at).erased)
        for person in persons:
            self.paths.forget(person)
            self.churn.forget(person)
            self.retention.forget(person)
            self._marketing_denied.discard(person)
            self.value_model.forget_one(person)
            self.detector.forget_one(person)
        for device in ids:
            self._session_of.pop(device, None)
