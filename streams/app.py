"""Kafka mode: the Faust app. Agents are thin: decode, call :class:`~streams.pipeline.Pipeline`, emit.

Topics (all under ``settings.topic_prefix``)::

    events.raw     -> ingest       (any key; Segment JSON bytes)      -> events.parsed | events.failed
    events.parsed  -> sessionize   (key = device; table ``devices``)  -> events        | events.failed
    events, events.failed -> warehouse (batched, idempotent inserts into ClickHouse ``events``/``failed_events``)

``events.parsed`` re-keys by device so that a device's deduplication and session state sit on one
partition with its changelog; ``events`` is the clean stream that downstream agents and consumers read.
Offsets are committed after processing (agent concurrency 1), so delivery is at least once and every
effect is idempotent: rows carry ``message_id`` and each insert carries a token made of the topic,
partition and offset range it came from.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any, cast

import faust
import structlog
from faust.serializers import codecs

from models.ingest import DeviceState
from schemas.errors import SinkError
from schemas.records import EventRow, FailedEvent, ParsedEvent
from sinks.clickhouse import ClickHouseSink
from streams.kafka import OutputProducer
from streams.pipeline import Pipeline
from streams.settings import Settings

log = structlog.get_logger(__name__)


class DeviceStateCodec(codecs.Codec):
    """Changelog codec of the ``devices`` table (compact JSON, no pickle on a topic)."""

    def _dumps(self, obj: Any) -> bytes:
        return bytes(obj.to_json())

    def _loads(self, s: bytes) -> Any:
        return DeviceState.from_json(s)


codecs.register("revstream_device_state", DeviceStateCodec())


def source_of(message: Any) -> str:
    return f"{message.topic}:{message.partition}:{message.offset}"


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app for ``settings``; no module globals, so tests can build several."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        datadir=str(settings.data_dir / "faust"),
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # A restarted worker rejoins after the dead member's session expires: 10 s, not Faust's 60 s.
        broker_session_timeout=10.0,
    )
    pipeline = Pipeline(settings)
    raw_topic = app.topic(settings.topic("events.raw"), value_type=bytes)
    parsed_topic = app.topic(settings.topic("events.parsed"), value_type=bytes)
    valid_topic = app.topic(settings.topic("events"), value_type=bytes)
    failed_topic = app.topic(settings.topic("events.failed"), value_type=bytes)
    devices = app.Table(
        "devices",
        default=None,
        partitions=settings.partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="revstream_device_state"),
    )

    device_writes = _DeviceWrites(devices)
    outputs: list[OutputProducer] = []  # created inside the running worker, not at import

    def output() -> OutputProducer:
        if not outputs:
            outputs.append(OutputProducer(bootstrap=settings.kafka_bootstrap))
        return outputs[0]

    def fail(out: FailedEvent) -> None:
        output().produce(failed_name, key=out.source.encode(), value=out.model_dump_json().encode())

    failed_name, parsed_name, valid_name = (
        failed_topic.get_topic_name(),
        parsed_topic.get_topic_name(),
        valid_topic.get_topic_name(),
    )

    # Both stateful stages take batches: the body runs, outputs are flushed, and only then does take_events
    # acknowledge the batch's inputs (at least once, effects idempotent downstream).
    @app.agent(raw_topic, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for batch in cast(faust.Stream[bytes], stream).take_events(settings.batch_size, within=0.2):
            producer = output()
            for event in batch:
                message = event.message
                received_at = datetime.fromtimestamp(message.timestamp, UTC)
                out = pipeline.parse(event.value, source=source_of(message), received_at=received_at)
                if isinstance(out, FailedEvent):
                    fail(out)
                else:
                    parsed = ParsedEvent(row=out, raw=event.value.decode())
                    producer.produce(parsed_name, key=out.device_key.encode(), value=parsed.to_json())
            await producer.flush()

    @app.agent(parsed_topic, name="sessionize")
    async def sessionize(stream: faust.StreamT[bytes]) -> None:
        async for batch in cast(faust.Stream[bytes], stream).take_events(settings.batch_size, within=0.2):
            producer = output()
            for event in batch:
                parsed = ParsedEvent.from_json(event.value)
                device_writes.partition = event.message.partition
                out = pipeline.sessionize(parsed.row, parsed.raw, device_writes)
                if isinstance(out, FailedEvent):
                    fail(out)
                else:
                    producer.produce(valid_name, key=out.device_key.encode(), value=out.to_json())
            device_writes.send_changelog()
            await producer.flush()

    warehouse_topics = app.topic(valid_name, failed_name, value_type=bytes)

    @app.agent(warehouse_topics, name="warehouse")
    async def warehouse(stream: faust.StreamT[bytes]) -> None:
        sink = await asyncio.to_thread(_open_sink, settings.clickhouse_dsn)
        try:
            batches = cast(faust.Stream[bytes], stream).take_events(settings.batch_size, within=settings.batch_seconds)
            async for batch in batches:
                await _write_batch(sink, batch, valid_name)
        finally:
            await asyncio.to_thread(sink.close)

    return app


class _DeviceWrites(MutableMapping[str, DeviceState]):
    """The ``devices`` table seen by a batch: reads and writes go to its store at once, and its changelog
    gets one message per device per batch (the last state), on the partition of that device's input."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.partition = 0
        self._touched: dict[str, int] = {}

    def __getitem__(self, key: str) -> DeviceState:
        return cast(DeviceState, self.table.data[key])

    def __setitem__(self, key: str, value: DeviceState) -> None:
        self.table.data[key] = value
        self._touched[key] = self.partition

    def __delitem__(self, key: str) -> None:
        del self.table.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.data)

    def __len__(self) -> int:
        return len(self.table.data)

    def send_changelog(self) -> None:
        for key, partition in self._touched.items():
            self.table.send_changelog(partition, key, self.table.data[key])
        self._touched.clear()


def _open_sink(dsn: str) -> ClickHouseSink:
    sink = ClickHouseSink(dsn=dsn)
    sink.migrate()
    return sink


async def _write_batch(sink: ClickHouseSink, batch: Any, valid_topic: str) -> None:
    """Insert one ``take_events`` batch: one insert per table and partition, token = offset range."""
    groups: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for event in batch:
        groups[event.message.topic, event.message.partition].append(event)
    for (topic, partition), events in groups.items():
        table = "events" if topic == valid_topic else "failed_events"
        rows: list[object] = [
            EventRow.from_json(e.value) if table == "events" else FailedEvent.model_validate_json(e.value)
            for e in events
        ]
        token = f"{topic}:{partition}:{events[0].message.offset}-{events[-1].message.offset}"
        while True:
            try:
                await asyncio.to_thread(sink.insert, table, rows, token=token)
                break
            except SinkError as e:
                # Never ack what is not stored: back off and retry the same batch with the same token.
                delay = e.retry_after or 5.0
                log.warning("warehouse insert failed; retrying", table=table, token=token, error=str(e), delay=delay)
                await asyncio.sleep(delay)
