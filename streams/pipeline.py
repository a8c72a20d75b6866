"""The processors of the ingest pipeline, built once from settings and shared by both runtimes.

Kafka mode calls :meth:`Pipeline.parse` in the raw-topic agent and :meth:`Pipeline.sessionize` in the
device-keyed agent; the embedded runner calls them back to back. Keeping both paths on these two methods
is what makes the parity test meaningful.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import datetime

from models.ingest import DeviceState, RowBuilder, Sessionizer
from models.value.clv import CustomerValueModel
from models.value.high_value import HighValueDetector
from schemas.records import EventRow, FailedEvent
from schemas.value import CustomerValue, HighValueAlert
from streams.settings import Settings


@dataclass
class ValueUpdate:
    """What one order changes: the buyer's value, and everyone's after a refit; alerts raised."""

    values: list[CustomerValue] = field(default_factory=list)
    alerts: list[HighValueAlert] = field(default_factory=list)


def is_order(row: EventRow) -> bool:
    return row.event == "Order Completed" and row.revenue is not None


class Pipeline:
    __slots__ = ("_build", "_sessionize", "detector", "value_model")

    def __init__(self, settings: Settings) -> None:
        self._build = RowBuilder()
        self._sessionize = Sessionizer(session_gap=settings.session_gap, dedupe_window=settings.dedupe_window)
        self.value_model = CustomerValueModel(
            horizon_days=settings.value_horizon_days, currency=settings.value_currency, fx_rates=settings.fx_rate_map
        )
        self.detector = HighValueDetector(top_share=settings.high_value_top_share)

    def parse(self, raw: bytes, *, source: str, received_at: datetime) -> EventRow | FailedEvent:
        return self._build(raw, source=source, received_at=received_at)

    def sessionize(
        self, row: EventRow, raw: bytes | str, devices: MutableMapping[str, DeviceState]
    ) -> EventRow | FailedEvent:
        key = row.device_key
        state, out = self._sessionize(row, raw, devices.get(key))
        devices[key] = state  # reassigned so a Faust table writes its changelog
        return out

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
