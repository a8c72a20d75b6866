"""The processors of the ingest pipeline, built once from settings and shared by both runtimes.

Kafka mode calls :meth:`Pipeline.parse` in the raw-topic agent and :meth:`Pipeline.sessionize` in the
device-keyed agent; the embedded runner calls them back to back. Keeping both paths on these two methods
is what makes the parity test meaningful.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import datetime

from models.ingest import DeviceState, RowBuilder, Sessionizer
from models.privacy import ConsentPolicy, PiiHasher
from models.value.clv import CustomerValueModel
from models.value.high_value import HighValueDetector
from schemas.records import EventRow, FailedEvent, Refused
from schemas.value import CustomerValue, HighValueAlert
from streams.settings import Settings

# An id field in bytes that may not parse: how a failed input is matched against erased ids.
_ID_FIELD = re.compile(rb'"(anonymousId|userId|anonymous_id|user_id|previousId)"\s*:\s*"([^"\\]{1,256})"')


@dataclass
class ValueUpdate:
    """What one order changes: the buyer's value, and everyone's after a refit; alerts raised."""

    values: list[CustomerValue] = field(default_factory=list)
    alerts: list[HighValueAlert] = field(default_factory=list)


def is_order(row: EventRow) -> bool:
    return row.event == "Order Completed" and row.revenue is not None


def pii_key(settings: Settings) -> bytes:
    """The PII hash key: from settings, else ``data_dir/pii.key`` (created once, readable by its owner only).

    Every process of a deployment must use the same key, or hashed emails stop joining across them.
    """
    if settings.pii_key is not None:
        return settings.pii_key.get_secret_value().encode()
    path = settings.data_dir / "pii.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_text().strip().encode()


class Pipeline:
    """The processors, built from settings. ``suppressed`` holds the subject hashes of erased ids."""

    __slots__ = ("_build", "_sessionize", "detector", "pii", "suppressed", "value_model")

    def __init__(self, settings: Settings) -> None:
        self.pii = PiiHasher(key=pii_key(settings))
        consent = ConsentPolicy(purposes=settings.consent_purpose_map, required=settings.consent_required)
        self._build = RowBuilder(pii=self.pii, consent=consent)
        self._sessionize = Sessionizer(
            session_gap=settings.session_gap, dedupe_window=settings.dedupe_window, consent=consent
        )
        self.suppressed: set[str] = set()
        self.value_model = CustomerValueModel(
            horizon_days=settings.value_horizon_days, currency=settings.value_currency, fx_rates=settings.fx_rate_map
        )
        self.detector = HighValueDetector(top_share=settings.high_value_top_share)

    def parse(
        self, raw: bytes, *, source: str, received_at: datetime
    ) -> tuple[EventRow | FailedEvent | Refused, bytes]:
        """The row or failure, and the bytes to carry on (PII hashed): see :meth:`RowBuilder.build`.

        A failed input that names an erased id is refused instead, so a replay cannot store it again.
        """
        out, carried = self._build.build(raw, source=source, received_at=received_at)
        if isinstance(out, FailedEvent) and self.suppressed and self._names_erased(raw):
            return Refused(message_id=out.message_id, purpose="erased", event_at=out.received_at), carried
        return out, carried

    def sessionize(
        self, row: EventRow, raw: bytes | str, devices: MutableMapping[str, DeviceState]
    ) -> EventRow | FailedEvent | Refused | None:
        if self.suppressed and self.is_erased(row):
            return Refused(message_id=row.message_id, purpose="erased", event_at=row.event_at)
        key = row.device_key
        state, out = self._sessionize(row, raw, devices.get(key))
        devices[key] = state  # reassigned so a Faust table writes its changelog
        return out

    def _names_erased(self, raw: bytes) -> bool:
        subject = self.pii.subject
        return any(
            subject(m.group(2).decode(errors="replace")) in self.suppressed for m in _ID_FIELD.finditer(raw[:65536])
        )

    def is_erased(self, row: EventRow) -> bool:
        subject = self.pii.subject
        return (bool(row.anonymous_id) and subject(row.anonymous_id) in self.suppressed) or (
            bool(row.user_id) and subject(row.user_id) in self.suppressed
        )

    def forget(self, ids: list[str], subjects: list[str]) -> None:
        """Erasure: suppress ``subjects`` from now on and drop what the person-level models hold on ``ids``."""
        self.suppressed.update(subjects)
        for person_id in ids:
            self.value_model.forget_one(person_id)
            self.detector.forget_one(person_id)

    def value(self, order: EventRow) -> ValueUpdate:
        """Learn one order (idempotent on ``order_id``); re-score everyone when the model refitted.

        The value model is one for the whole customer base, so in Kafka mode its input is a one-partition
        ``orders`` topic and the result does not depend on how many workers run.
        """
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
        update = ValueUpdate()
        if self.value_model.n_fits != fits:
            update.values = list(self.value_model.values())
            update.alerts = self.detector.rescore(update.values)
        else:
            value = self.value_model.predict_one({"person_id": order.person_id})
            update.values.append(value)
            alert = self.detector.process_one(value)
            if alert is not None:
                update.alerts.append(alert)
        return update
