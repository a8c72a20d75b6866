"""The processors of the ingest pipeline, built once from settings and shared by both runtimes.

Kafka mode calls :meth:`Pipeline.parse` in the raw-topic agent and :meth:`Pipeline.sessionize` in the
device-keyed agent; the embedded runner calls them back to back. Keeping both paths on these two methods
is what makes the parity test meaningful.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, MutableMapping
from datetime import datetime

from models.ingest import DeviceState, RowBuilder, Sessionizer
from models.privacy import ConsentPolicy, PiiHasher
from models.times import MS, epoch_ms
from schemas.records import EventRow, FailedEvent, Refused
from streams.people import PeopleStage
from streams.scoring import ScoringStage
from streams.settings import Settings

# An id field in bytes that may not parse: how a failed input is matched against erased ids.
_ID_FIELD = re.compile(rb'"(anonymousId|userId|anonymous_id|user_id|previousId)"\s*:\s*"([^"\\]{1,256})"')


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

    __slots__ = ("_build", "_sessionize", "people", "pii", "settings", "suppressed")

    def __init__(self, settings: Settings) -> None:
        self.pii = PiiHasher(key=pii_key(settings))
        consent = ConsentPolicy(purposes=settings.consent_purpose_map, required=settings.consent_required)
        self._build = RowBuilder(pii=self.pii, consent=consent)
        self._sessionize = Sessionizer(
            session_gap=settings.session_gap, dedupe_window=settings.dedupe_window, consent=consent
        )
        self.suppressed: set[str] = set()
        self.people = PeopleStage(settings)
        self.settings = settings

    def scoring_stage(self) -> ScoringStage:
        """A fresh scoring state (one per input partition in Kafka mode, one in embedded mode)."""
        stage = ScoringStage(
            propensity_alert_threshold=self.settings.propensity_alert_threshold,
            challenger_share=self.settings.challenger_share,
            challenger_path=self.settings.challenger_path,
        )
        stage.reload_challenger()
        return stage

    def parse(
        self, raw: bytes, *, source: str, received_at: datetime
    ) -> tuple[EventRow | FailedEvent | Refused, bytes]:
        """The row or failure, and the bytes to carry on (PII hashed): see :meth:`RowBuilder.build`.

        A failed input that names an erased id is refused instead, so a replay cannot store it again.
        """
        out, carried = self._build.build(raw, source=source, received_at=received_at)
        if isinstance(out, FailedEvent) and self.suppressed and self._names_erased(raw):
            return Refused(out.message_id, "erased", out.received_at, source), carried
        return out, carried

    def sessionize(
        self, row: EventRow, raw: bytes | str, devices: MutableMapping[str, DeviceState]
    ) -> EventRow | FailedEvent | Refused | None:
        if self.suppressed and self.is_erased(row):
            return Refused(row.message_id, "erased", row.event_at, row.source)
        key = row.device_key
        state, out = self._sessionize(row, raw, devices.get(key))
        devices[key] = state  # reassigned so a Faust table writes its changelog
        return out

    def is_late(self, row: EventRow, devices: Mapping[str, DeviceState]) -> bool:
        """Whether a sessionized ``row`` is older than its device's dedupe memory: a resend of it would not be
        recognised there, so the runners settle these few against the warehouse (:func:`settle_late`)."""
        state = devices.get(row.device_key)
        # In epoch milliseconds (the state's own unit): building the datetime cost more than the test.
        return state is not None and epoch_ms(row.event_at) < state.latest_ms - self._sessionize.dedupe_window // MS

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

    def forget(self, ids: list[str], subjects: list[str], *, at: datetime) -> None:
        """Erasure: suppress ``subjects`` from now on and drop what the person-level stage holds on ``ids``."""
        self.suppressed.update(subjects)
        self.people.forget(ids, at=at)
