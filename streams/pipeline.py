"""The processors of the ingest pipeline, built once from settings and shared by both runtimes.

Kafka mode calls :meth:`Pipeline.parse` in the raw-topic agent and :meth:`Pipeline.sessionize` in the
device-keyed agent; the embedded runner calls them back to back. Keeping both paths on these two methods
is what makes the parity test meaningful.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import datetime

from models.ingest import DeviceState, RowBuilder, Sessionizer
from schemas.records import EventRow, FailedEvent
from streams.settings import Settings


class Pipeline:
    __slots__ = ("_build", "_sessionize")

    def __init__(self, settings: Settings) -> None:
        self._build = RowBuilder()
        self._sessionize = Sessionizer(session_gap=settings.session_gap, dedupe_window=settings.dedupe_window)

    def parse(self, raw: bytes, *, source: str, received_at: datetime) -> EventRow | FailedEvent:
        return self._build(raw, source=source, received_at=received_at)

    def sessionize(
        self, row: EventRow, raw: bytes | str, devices: MutableMapping[str, DeviceState]
    ) -> EventRow | FailedEvent:
        key = row.device_key
        state, out = self._sessionize(row, raw, devices.get(key))
        devices[key] = state  # reassigned so a Faust table writes its changelog
        return out
