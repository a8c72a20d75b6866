"""Kafka mode: the Faust app. Agents are thin: decode, call :class:`~streams.pipeline.Pipeline`, emit.

Topics (all under ``settings.topic_prefix``)::

    events.raw     -> ingest       (any key; Segment JSON bytes)      -> events.parsed | events.failed
    events.parsed  -> sessionize   (key = device; table ``devices``)  -> events        | events.failed
    events.failed  -> warehouse    (ingest failures into ClickHouse ``failed_events``)
    people         -> people       (one partition; the person-level stage, computed in a child process)
    (sessionize writes the ``events`` rows to ClickHouse itself, batched and idempotent)

``events.parsed`` re-keys by device so that a device's deduplication and session state sit on one
partition with its changelog; ``events`` is the clean stream that downstream agents and consumers read.
Offsets are committed after processing (agent concurrency 1), so delivery is at least once and every
effect is idempotent: rows carry ``message_id`` and each insert carries a token made of the topic,
partition and offset range it came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import faust
import mode
import orjson
import structlog
from faust.serializers import codecs
from faust.types.transports import TransportT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent
from pydantic import ValidationError

from models.ingest import DeviceState, settle_late
from models.privacy import truncate_ip
from models.scoring import DeviceFeatures
from schemas.errors import SinkError
from schemas.privacy import ERASE_MARKER, ConsentRefusalRow, EraseMarker, ErasureRequest
from schemas.records import EventRow, FailedEvent, ParsedEvent, Refused
from schemas.spend import MarketingSpend, SpendRow
from schemas.value import HighValueAlert
from sinks.clickhouse import ClickHouseSink
from sinks.erasure import erase, suppressed_subjects
from streams import faust_fixes
from streams.batches import InFlight, take_batches
from streams.checkpoint import Checkpoint, Effect, effects_of
from streams.kafka import OutputProducer
from streams.people_process import PeopleProcess
from streams.pipeline import Pipeline
from streams.scoring import ScoringStage, ScoringUpdate
from streams.settings import Settings

log = structlog.get_logger(__name__)


class JsonStateCodec(codecs.Codec):
    """Changelog codec of a table whose values have ``to_json``/``from_json`` (no pickle on a topic)."""

    def __init__(self, load: Callable[[bytes], Any]) -> None:
        super().__init__()
        self.load = load

    def _dumps(self, obj: Any) -> bytes:
        return bytes(obj.to_json())

    def _loads(self, s: bytes) -> Any:
        return self.load(s)


codecs.register("revstream_device_state", JsonStateCodec(DeviceState.from_json))
codecs.register("revstream_device_features", JsonStateCodec(DeviceFeatures.from_json))
V = TypeVar("V")


def source_of(message: Any) -> str:
    return f"{message.topic}:{message.partition}:{message.offset}"


class RevstreamApp(faust.App):
    """A Faust app whose agents never outlive an error, with the consumer fixes of :mod:`streams.faust_fixes`."""

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return faust_fixes.FlowControl(loop=self.loop)

    def _new_transport(self) -> TransportT:
        return faust_fixes.Transport(self.conf.broker_consumer, self)

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """An agent raised: end the process now, committing nothing more.

        Faust would restart the agent, and the batch it was working on could be acknowledged without its
        effects. Exiting keeps the guarantee instead: offsets only ever cover finished batches, so a restarted
        worker (systemd, Kubernetes, the tests' harness) replays the rest and the effects stay idempotent.
        """
        log.critical("agent crashed; stopping the worker without committing", agent=agent.name, error=repr(exc))
        logging.shutdown()
        os._exit(70)


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app for ``settings``; no module globals, so tests can build several."""
    app = RevstreamApp(
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
    people_topic = app.topic(settings.topic("people"), value_type=bytes, partitions=1)
    privacy_topic = app.topic(settings.topic("privacy"), value_type=bytes, partitions=1)
    devices = app.Table(
        "devices",
        default=None,
        partitions=settings.partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="revstream_device_state"),
    )

    features = app.Table(
        "features",
        default=None,
        partitions=settings.partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="revstream_device_features"),
    )
    device_writes = _TableWrites(devices, codec="revstream_device_state", revive=DeviceState.from_obj)
    feature_writes = _TableWrites(
        features, codec="revstream_device_features", revive=lambda obj: DeviceFeatures.from_json(orjson.dumps(obj))
    )
    scoring = PartitionScoring(pipeline, settings.data_dir)
    unstored_rows = UnstoredRows()

    def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        unstored_rows.reset()  # a partition that comes back may have been written by another worker
        scoring.reset()

    app.on_partitions_revoked.connect(on_revoked)

    outputs = _Outputs(
        bootstrap=settings.kafka_bootstrap, failed_topic=failed_topic.get_topic_name(), linger_ms=settings.linger_ms
    )

    failed_name, parsed_name, valid_name, people_name = (
        failed_topic.get_topic_name(),
        parsed_topic.get_topic_name(),
        valid_topic.get_topic_name(),
        people_topic.get_topic_name(),
    )

    # Both stateful stages take batches: the body runs, outputs are flushed, and only then does take_batches
    # acknowledge the batch's inputs (at least once, effects idempotent downstream).
    @app.agent(raw_topic, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        await _ingest_loop(
            cast(faust.Stream[bytes], stream),
            pipeline=pipeline,
            settings=settings,
            outputs=outputs,
            names=(raw_topic.get_topic_name(), parsed_name),
        )

    @app.agent(parsed_topic, name="sessionize")
    async def sessionize(stream: faust.StreamT[bytes]) -> None:
        await _sessionize_loop(
            cast(faust.Stream[bytes], stream),
            pipeline=pipeline,
            settings=settings,
            devices=device_writes,
            features=feature_writes,
            scoring=scoring,
            unstored=unstored_rows,
            outputs=outputs,
            names=(parsed_name, valid_name, people_name),
        )

    @app.agent(privacy_topic, name="privacy")
    async def privacy(stream: faust.StreamT[bytes]) -> None:
        await _privacy_loop(
            cast(faust.Stream[bytes], stream),
            pipeline=pipeline,
            settings=settings,
            parsed_name=parsed_name,
            people_name=people_name,
            output=outputs.producer,
        )

    spend_topic = app.topic(settings.topic("spend"), value_type=bytes)

    @app.agent(spend_topic, name="spend")
    async def spend(stream: faust.StreamT[bytes]) -> None:
        await _spend_loop(cast(faust.Stream[bytes], stream), settings=settings, outputs=outputs)

    @app.agent(failed_topic, name="warehouse")
    async def warehouse(stream: faust.StreamT[bytes]) -> None:
        await _failed_loop(cast(faust.Stream[bytes], stream), settings=settings, topic=failed_name)

    _serve_collector(app, settings)

    @app.agent(people_topic, name="people")
    async def people(stream: faust.StreamT[bytes]) -> None:
        await _people_loop(
            cast(faust.Stream[bytes], stream),
            pipeline=pipeline,
            settings=settings,
            people_name=people_name,
            output=outputs.producer,
        )

    return app


async def _ingest_loop(
    stream: faust.Stream[bytes], *, pipeline: Pipeline, settings: Settings, outputs: _Outputs, names: tuple[str, str]
) -> None:
    """Stage 1 per batch: parse and validate; rows to ``events.parsed`` keyed by device, failures to the failed
    stream, and inputs naming an erased id counted as refused. The flush that makes a batch's outputs durable
    (and the refusals' insert) runs while the next batch is parsed (see :class:`~streams.batches.InFlight`);
    only then are its inputs acknowledged."""
    raw_name, parsed_name = names
    sink: ClickHouseSink | None = None  # opened when an input first names an erased id
    events: list[Any] = []
    refused: list[ConsentRefusalRow] = []

    async def store(group: list[Any], refusals: list[ConsentRefusalRow]) -> None:
        nonlocal sink
        if refusals:
            if sink is None:
                sink = await asyncio.to_thread(_open_sink, settings)
            await _store_refusals(sink, refusals, token=f"{raw_name}:refusals:{_batch_range(group)}")
        await outputs.producer().flush()
        for event in group:
            await stream.ack(event)

    def take() -> Coroutine[Any, Any, None] | None:
        nonlocal events, refused
        if not events:
            return None
        group = store(events, refused)
        events, refused = [], []
        return group

    in_flight = InFlight(take, full=lambda: len(events) >= settings.batch_size)
    try:
        async for batch in take_batches(stream, settings.batch_size, settings.linger_ms / 1000, acknowledge=False):
            in_flight.begin_batch()
            producer = outputs.producer()
            for event in batch:
                message = event.message
                received_at = datetime.fromtimestamp(message.timestamp, UTC)
                out, carried = pipeline.parse(event.value, source=source_of(message), received_at=received_at)
                if isinstance(out, FailedEvent):
                    outputs.fail(out)
                elif isinstance(out, EventRow):
                    parsed = ParsedEvent(row=out, raw=carried.decode())
                    producer.produce(parsed_name, key=out.device_key.encode(), value=parsed.to_json())
                else:
                    refused.append(ConsentRefusalRow.of(out))
            events.extend(batch)
            await in_flight.end_batch()
        await in_flight.drain()
    except BaseException as e:
        await in_flight.close(e)
        raise
    finally:
        if sink is not None:
            await asyncio.to_thread(sink.close)


async def _sessionize_loop(
    stream: faust.Stream[bytes],
    *,
    pipeline: Pipeline,
    settings: Settings,
    devices: _TableWrites[DeviceState],
    features: _TableWrites[DeviceFeatures],
    scoring: PartitionScoring,
    unstored: UnstoredRows,
    outputs: _Outputs,
    names: tuple[str, str, str],
) -> None:
    """Stage 2 per batch: consent, dedupe, sessions; rows to ClickHouse and ``events``, and to ``people``.

    ``people`` gets the row with its full IP (identity compares addresses); the stored and published row
    carries the truncated one.
    """
    parsed_name, valid_name, people_name = names
    topics = published_topics(settings)
    # Rows go to ClickHouse from here, in the same batch: re-consuming them from the ``events`` topic cost
    # a third of the worker's CPU. ``events`` is still published, for downstream consumers.
    sink = await asyncio.to_thread(_open_sink, settings)
    pipeline.suppressed |= await asyncio.to_thread(suppressed_subjects, sink)
    # A batch is scored and its scores published at once; its inserts, checkpoint and flush are made while
    # the next batches are read and scored (measured: they took ~50 ms of a 3-event batch, and every event
    # behind them waited that long for its score). take_batches leaves the acknowledgements to them.
    scored = _Scored()

    def take() -> Coroutine[Any, Any, None] | None:
        if not scored.events:
            return None
        group = scored.take(scoring, changelogs=[features.end_batch(), devices.end_batch()], topic=parsed_name)
        return group.run(stream, sink, scoring, outputs.producer())

    # A group pickles each partition's scoring stage (5-20 ms with a few hundred open sessions) and makes an
    # insert per table (~4 ms each even for a few rows), all off the scores' path: so once per batch_seconds
    # at most. Every 0.25 s instead, event-to-score p50 at 1,000 events/s was 20-34 ms against 14-18.
    in_flight = InFlight(take, full=lambda: len(scored.events) >= settings.batch_size, every=settings.batch_seconds)
    try:
        async for batch in take_batches(stream, settings.batch_size, settings.linger_ms / 1000, acknowledge=False):
            if any(not scoring.loaded(p) or unstored.checks(p) for p in {e.message.partition for e in batch}):
                await in_flight.drain()  # the checkpoint file and the stored rows are read: let them be written
            in_flight.begin_batch()
            producer = outputs.producer()
            out = _SessionizedBatch(producer, outputs, people_topic=people_name, valid_topic=valid_name)
            for event in batch:
                devices.partition = event.message.partition
                if event.value.startswith(ERASE_MARKER):
                    _erase(EraseMarker.from_json(event.value), pipeline, devices, features, scoring)
                    continue
                parsed = ParsedEvent.from_json(event.value)
                row = pipeline.sessionize(parsed.row, parsed.raw, devices)
                late = isinstance(row, EventRow) and pipeline.is_late(row, devices)
                out.add(event.message, row, parsed.raw, late=late)
            if out.late:
                await in_flight.wait()  # late rows are settled against the warehouse and the rows not stored yet
                await out.settle_late(sink, devices, scored.sources)
            for partition, rows, offsets in out.tables.by_partition():
                await _make(sink, scoring.redo(partition), (producer, topics))
                fresh, checked = await unstored.filter(sink, partition, rows)
                features.partition = partition
                stage, update = await _score_partition(
                    scoring, partition=partition, rows=rows, offsets=offsets, fresh=fresh, features=features
                )
                # Scores go out first: the topic is what reacts in real time (a replay publishes again).
                _publish(producer, update.tables(), topics)
                scored.add(partition, stage, offsets, update, fresh, check=fresh if checked else [])
            scored.end_batch(batch, out.refused)
            await in_flight.end_batch()
        await in_flight.drain()
    except BaseException as e:  # cancelled at a rebalance, or failing: the replay must find the old states
        try:
            await in_flight.close(e)
        finally:
            devices.rollback()
            features.rollback()
            scoring.reset()  # read from the files again, which hold what was stored (or is to be redone)
            unstored.reset()
        raise
    finally:
        await asyncio.to_thread(sink.close)


def _erase(
    marker: EraseMarker,
    pipeline: Pipeline,
    devices: MutableMapping[str, DeviceState],
    features: MutableMapping[str, DeviceFeatures],
    scoring: PartitionScoring,
) -> None:
    """An erasure marker in the device-keyed stream: forget the subjects, the device and its open sessions."""
    pipeline.suppressed.update(marker.subjects)
    devices.pop(marker.key, None)
    features.pop(marker.key, None)
    scoring.forget(set(marker.ids))


@dataclass
class _ScoredPartition:
    """One input partition's rows since the last group was taken: its scoring stage and outputs, the new
    ``events`` rows, and those of them to check against the warehouse again (see insert_absent)."""

    stage: ScoringStage
    first: int
    last: int
    update: ScoringUpdate
    fresh: list[EventRow]
    check: list[EventRow]


class _Scored:
    """What the sessionize stage has scored and published but not stored yet (one group, see
    :class:`~streams.batches.InFlight`): per input partition a :class:`_ScoredPartition`, and the inputs to
    acknowledge and refusals to count once it is stored."""

    def __init__(self) -> None:
        self.parts: dict[int, _ScoredPartition] = {}
        self.events: list[Any] = []
        self.refused: list[ConsentRefusalRow] = []

    def add(
        self,
        partition: int,
        stage: ScoringStage,
        offsets: list[int],
        update: ScoringUpdate,
        fresh: list[EventRow],
        *,
        check: list[EventRow],
    ) -> None:
        part = self.parts.get(partition)
        if part is None:
            self.parts[partition] = _ScoredPartition(stage, offsets[0], offsets[-1], update, fresh, check)
            return
        if part.stage is not stage:  # reread from its file with this group pending: never drained, so stop
            msg = f"partition {partition}'s scoring stage was reloaded while its scored rows were not stored"
            raise RuntimeError(msg)
        part.last = offsets[-1]
        part.update.extend(update)
        part.fresh.extend(fresh)
        part.check.extend(check)

    def end_batch(self, batch: list[Any], refused: list[ConsentRefusalRow]) -> None:
        self.events.extend(batch)
        self.refused.extend(refused)

    def sources(self, ids: set[str]) -> dict[str, str]:
        """``message_id -> source`` of the rows not stored yet among ``ids``."""
        return {r.message_id: r.source for part in self.parts.values() for r in part.fresh if r.message_id in ids}

    def take(
        self, scoring: PartitionScoring, *, changelogs: list[Callable[[OutputProducer], None]], topic: str
    ) -> _StoreSessionized:
        """Close the group: each partition's checkpoint is taken now (the state as of its last row), with the
        group's effects under one token per table (the partition's offset range), and the group is emptied."""
        stored = []
        for partition, part in self.parts.items():
            token = f"{topic}:{partition}:{part.first}-{part.last}"
            effects = effects_of(part.update.tables(), token)
            checkpoint = scoring.snapshot(partition, part.stage, part.last, effects)
            stored.append(_StoredPartition(partition, part.last, checkpoint, effects, part.fresh, part.check, token))
        group = _StoreSessionized(
            stored,
            refused=self.refused,
            refusals_token=f"{topic}:refusals:{_batch_range(self.events)}",
            changelogs=changelogs,
            events=self.events,
        )
        self.parts, self.events, self.refused = {}, [], []
        return group


@dataclass(frozen=True, slots=True)
class _StoredPartition:
    """One partition's share of a group as it is stored: its scoring checkpoint (as of ``offset``, with the
    ``effects`` it redoes), and the ``events`` rows."""

    partition: int
    offset: int
    checkpoint: bytes
    effects: list[Effect]
    fresh: list[EventRow]
    check: list[EventRow]
    token: str


@dataclass(frozen=True, slots=True)
class _StoreSessionized:
    """The slow half of a group of sessionize batches (see :class:`~streams.batches.InFlight`)."""

    parts: list[_StoredPartition]
    refused: list[ConsentRefusalRow]
    refusals_token: str
    changelogs: list[Callable[[OutputProducer], None]]
    events: list[Any]

    async def run(
        self, stream: faust.Stream[bytes], sink: ClickHouseSink, scoring: PartitionScoring, producer: OutputProducer
    ) -> None:
        """Per partition the scoring checkpoint (the redo log of its effects), the effects, the ``events``
        rows; then refusals and the flush. Only then is the group done: checkpoint markers, the device
        states' changelogs (else a restart would skip its inputs as seen), acknowledgements."""
        for part in self.parts:
            await asyncio.to_thread(scoring.write, part.partition, part.checkpoint)
            await _make(sink, part.effects)
            store = partial(
                sink.insert_absent, "events", part.fresh, key="message_id", token=part.token, check=part.check
            )
            await _retrying(store, table="events", token=part.token)
        await _store_refusals(sink, self.refused, token=self.refusals_token)
        await producer.flush()
        for part in self.parts:
            scoring.done(part.partition, part.offset)
        for send in self.changelogs:
            send(producer)
        await producer.flush()
        for event in self.events:
            await stream.ack(event)


class _SessionizedBatch:
    """What a sessionize batch produced, before it is stored: valid rows by partition (also published to
    ``people`` with the full IP, and to ``events``), refused inputs, and late rows to settle."""

    def __init__(self, producer: OutputProducer, outputs: _Outputs, *, people_topic: str, valid_topic: str) -> None:
        self.producer = producer
        self.outputs = outputs
        self.people_topic = people_topic
        self.valid_topic = valid_topic
        self.tables = _PartitionTables()
        self.refused: list[ConsentRefusalRow] = []
        self.late: list[tuple[Any, EventRow, bytes | str]] = []

    def add(self, message: Any, out: EventRow | FailedEvent | Refused | None, raw: bytes | str, *, late: bool) -> None:
        if out is None:  # a replay of an input whose effects were all made before its state was saved
            return
        if isinstance(out, FailedEvent):
            self.outputs.fail(out)
        elif isinstance(out, Refused):
            self.refused.append(ConsentRefusalRow.of(out))
        elif late:  # settled against the warehouse at the end of the batch
            self.late.append((message, out, raw))
        else:
            self._accept(message, out)

    def _accept(self, message: Any, row: EventRow) -> None:
        self.producer.produce(self.people_topic, key=None, value=row.to_json())
        row.ip = truncate_ip(row.ip)  # identity has used the full address; storage gets the network
        self.tables.add(message, row)
        self.producer.produce(self.valid_topic, key=row.device_key.encode(), value=row.to_json())

    async def settle_late(
        self,
        sink: ClickHouseSink,
        devices: MutableMapping[str, DeviceState],
        unstored: Callable[[set[str]], dict[str, str]],
    ) -> None:
        """Accept the late rows that are new and fail the duplicates (see :func:`settle_late`), against the
        warehouse, this batch's rows and the earlier rows not stored yet (``unstored``, by id)."""
        if not self.late:
            return
        rows = [row for _, row, _ in self.late]
        stored = await asyncio.to_thread(sink.stored_message_ids, "events", rows)
        known = unstored({r.message_id for r in rows}) | self.tables.sources(rows) | stored
        kept, duplicates = settle_late([(row, raw) for _, row, raw in self.late], known, devices)
        message_of = {id(row): message for message, row, _ in self.late}
        for row in kept:
            self._accept(message_of[id(row)], row)
        for failed in duplicates:
            self.outputs.fail(failed)
        self.late.clear()


async def _score_partition(
    scoring: PartitionScoring,
    *,
    partition: int,
    rows: list[EventRow],
    offsets: list[int],
    fresh: list[EventRow],
    features: _TableWrites[DeviceFeatures],
) -> tuple[ScoringStage, ScoringUpdate]:
    """Score the batch's new rows of one partition (not already stored, and past the scoring checkpoint)
    with the partition's stage."""
    stage, done = scoring.get(partition)
    new = {r.message_id for r in fresh}
    todo = [r for r, o in zip(rows, offsets, strict=True) if o > done and r.message_id in new]
    return stage, stage.process_batch(todo, features, clock=lambda: datetime.now(UTC))


Topics = dict[str, tuple[str, str, Callable[[Any], Any] | None]]
# Tables whose rows are also published: the topic (before the prefix), the field that keys the message, and
# how a row becomes the message (high-value alerts take the one shape every alert has on the topic).
_PUBLISHED: Topics = {
    "scores": ("scores", "session_id", None),
    "alerts": ("alerts", "person_id", None),
    "high_value_alerts": ("alerts", "person_id", HighValueAlert.as_alert),
    "identity_links": ("identity.links", "person_id", None),
    "attribution_credits": ("attribution", "person_id", None),
}


def published_topics(settings: Settings) -> Topics:
    """Table -> (topic name, key field, row converter) of the tables whose rows are also published."""
    return {table: (settings.topic(topic), key, convert) for table, (topic, key, convert) in _PUBLISHED.items()}


def _publish(producer: OutputProducer, tables: Mapping[str, list[Any]], topics: Topics) -> None:
    """Publish the rows of the tables that have a topic (``tables``: table name -> rows)."""
    for table, rows in tables.items():
        if table in topics:
            name, key, convert = topics[table]
            for row in map(convert, rows) if convert else rows:
                producer.produce(name, key=getattr(row, key).encode(), value=row.to_json())


async def _make(
    sink: ClickHouseSink, effects: list[Effect], publish: tuple[OutputProducer, Topics] | None = None
) -> None:
    """Insert each effect (its token makes a repeat a no-op); with ``publish``, publish them first (a redo)."""
    if publish is not None:
        producer, topics = publish
        _publish(producer, {effect.table: effect.rows for effect in effects}, topics)
    for effect in effects:
        await _insert_retrying(sink, effect.table, effect.rows, effect.token)


async def _people_loop(
    stream: faust.Stream[bytes],
    *,
    pipeline: Pipeline,
    settings: Settings,
    people_name: str,
    output: Callable[[], OutputProducer],
) -> None:
    """The person-level stage on its one partition, computed in a child process (:mod:`streams.people_process`)
    and checkpointed here with each batch's effects before they are made (see :mod:`streams.checkpoint`).
    Rows at or below the checkpoint's offset are not applied twice, and effects a kill interrupted are made
    on restart. Only the worker that owns the partition starts the process, with its first batch (a killed
    owner's last batch is delivered again, so its effects are redone then)."""
    checkpoint = Checkpoint[object](settings.data_dir / "people-checkpoint.pickle")
    topics = published_topics(settings)
    async with contextlib.AsyncExitStack() as stack:
        sink = await asyncio.to_thread(_open_sink, settings)
        stack.push_async_callback(asyncio.to_thread, sink.close)
        people: PeopleProcess | None = None
        last_offset = -1
        async for batch in take_batches(stream, settings.batch_size, 0.5):
            if people is None:
                people = await PeopleProcess.start(settings, checkpoint.path)
                stack.push_async_callback(asyncio.to_thread, people.close)
                last_offset = await _restored(people, checkpoint, sink, output(), topics)
            fresh = [e for e in batch if e.message.offset > last_offset]
            if not fresh:
                continue
            for event in fresh:
                if event.value.startswith(ERASE_MARKER):
                    pipeline.suppressed.update(EraseMarker.from_json(event.value).subjects)
            first, last_offset = fresh[0].message.offset, fresh[-1].message.offset
            effects, state = await people.batch(
                [e.value for e in fresh], last=last_offset, token=f"{people_name}:0:{first}-{last_offset}"
            )
            producer = output()
            _publish(producer, {effect.table: effect.rows for effect in effects}, topics)
            await asyncio.to_thread(checkpoint.write, state)
            await _make(sink, effects)
            await producer.flush()
            checkpoint.done(last_offset)


async def _restored(
    people: PeopleProcess,
    checkpoint: Checkpoint[object],
    sink: ClickHouseSink,
    producer: OutputProducer,
    topics: Topics,
) -> int:
    """Make (and publish) the effects the checkpoint's last batch may not have made; its offset (-1: none)."""
    if people.offset >= 0:
        log.info("person-level state restored", path=str(checkpoint.path), offset=people.offset)
    if people.redo:
        await _make(sink, people.redo, (producer, topics))
        await producer.flush()
        checkpoint.done(people.offset)
    return people.offset


class _Outputs:
    """The agents' shared librdkafka producer, created on first use inside the running worker."""

    def __init__(self, *, bootstrap: str, failed_topic: str, linger_ms: float) -> None:
        self.bootstrap = bootstrap
        self.linger_ms = linger_ms
        self.failed_topic = failed_topic
        self._producer: OutputProducer | None = None

    def producer(self) -> OutputProducer:
        if self._producer is None:
            self._producer = OutputProducer(bootstrap=self.bootstrap, linger_ms=self.linger_ms)
        return self._producer

    def fail(self, out: FailedEvent) -> None:
        self.producer().produce(self.failed_topic, key=out.source.encode(), value=out.model_dump_json().encode())


class _TableWrites(MutableMapping[str, V]):
    """A table seen by a batch: reads and writes go to its store at once, and its changelog gets one
    message per key per batch (the last state), on the partition of that key's input, in ``codec``.

    The store is this process's memory, and the stages change states in place. A batch that does not finish
    (Faust cancels the agent at a rebalance and restarts it in the same process) must not leave its changes
    behind: the restarted agent replays the batch, and a state that already remembers an input would skip it
    as done. So the first access of a key in a batch keeps the key's state as it was (its wire form), and
    :meth:`rollback` puts those back. :meth:`end_batch` ends a batch; its changelog is sent once the batch's
    effects are made, and until then a rollback undoes it too (the next batch may have begun meanwhile).
    """

    def __init__(self, table: Any, *, codec: str, revive: Callable[[Any], V]) -> None:
        self.table = table
        self.changelog = table.changelog_topic.get_topic_name()
        self.codec = codec
        self.revive = revive
        self.partition = 0
        self._touched: dict[str, int] = {}
        self._before: dict[str, Any] = {}
        self._unsent: list[dict[str, Any]] = []  # the ``_before`` of ended batches whose changelog is not sent

    def _keep(self, key: str) -> None:
        if key not in self._before:
            value = self.table.data.get(key)
            # A dict is the decoded JSON recovery hands back (never changed in place); an object is copied.
            self._before[key] = value if value is None or isinstance(value, dict) else orjson.loads(value.to_json())

    def __getitem__(self, key: str) -> V:
        self._keep(key)
        value = self.table.data[key]
        if isinstance(value, dict):  # recovered from the changelog: Faust's recovery hands back decoded JSON
            value = self.table.data[key] = self.revive(value)
        return cast(V, value)

    def __setitem__(self, key: str, value: V) -> None:
        self._keep(key)
        self.table.data[key] = value
        self._touched[key] = self.partition

    def __delitem__(self, key: str) -> None:
        self._keep(key)
        del self.table.data[key]
        self._touched[key] = self.partition

    def rollback(self) -> None:
        """Undo the unfinished batches: every key they read or wrote gets its state from before the first."""
        data = self.table.data
        for layer in [self._before, *reversed(self._unsent)]:  # newest first, so the oldest state stays
            for key, before in layer.items():
                if before is None:
                    data.pop(key, None)
                else:
                    data[key] = before  # revived on the next read
        self._before.clear()
        self._touched.clear()
        self._unsent.clear()

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.data)

    def __len__(self) -> int:
        return len(self.table.data)

    def end_batch(self) -> Callable[[OutputProducer], None]:
        """End the batch: its changelog messages (one per key, the state as this batch left it) are encoded
        now, and the returned function sends them once the batch's effects are made; the caller flushes the
        producer before it acknowledges the batch's inputs.

        They go through librdkafka, encoded as Faust's recovery reads them (``json`` keys, values in the
        table's codec), not through ``Table.send_changelog``: at 1,000 events/s Faust's per-message send path
        held the event loop for 120-140 ms once a second, and every event behind it waited."""
        data = self.table.data
        messages = [
            (partition, codecs.dumps("json", key), codecs.dumps(self.codec, data[key]) if key in data else None)
            for key, partition in self._touched.items()  # a value of None is a tombstone: the key was erased
        ]
        before = self._before
        self._unsent.append(before)
        self._before, self._touched = {}, {}

        def send(producer: OutputProducer) -> None:
            for partition, key, value in messages:
                producer.produce(self.changelog, key=key, value=value, partition=partition)
            self._unsent = [layer for layer in self._unsent if layer is not before]

        return send


class PartitionScoring:
    """The scoring state of each input partition (:class:`~streams.scoring.ScoringStage`) and the last
    offset it includes, checkpointed per partition with the batch's effects before they are made (see
    :mod:`streams.checkpoint`). A replayed row at or below that offset was scored already."""

    def __init__(self, pipeline: Pipeline, data_dir: Path) -> None:
        self.pipeline = pipeline
        self.data_dir = data_dir
        self._stages: dict[int, tuple[ScoringStage, int]] = {}
        self._redo: dict[int, list[Effect]] = {}

    def _checkpoint(self, partition: int) -> Checkpoint[ScoringStage]:
        return Checkpoint(self.data_dir / f"scoring-p{partition}.pickle")

    def get(self, partition: int) -> tuple[ScoringStage, int]:
        if partition not in self._stages:
            restored = self._checkpoint(partition).load()
            if restored is None:
                self._stages[partition] = (self.pipeline.scoring_stage(), -1)
            else:
                self._stages[partition] = (restored.state, restored.offset)
                self._redo[partition] = restored.redo
        stage, offset = self._stages[partition]
        stage.reload_challenger()
        return stage, offset

    def redo(self, partition: int) -> list[Effect]:
        """The effects of the partition's checkpointed batch that a kill may have interrupted (once)."""
        self.get(partition)
        return self._redo.pop(partition, [])

    def loaded(self, partition: int) -> bool:
        """Whether the partition's stage is in memory (else :meth:`get` reads its checkpoint file)."""
        return partition in self._stages

    def snapshot(self, partition: int, stage: ScoringStage, offset: int, effects: list[Effect]) -> bytes:
        """The checkpoint of the partition's ``stage`` as of ``offset``, to :meth:`write` when its turn comes."""
        if self._stages.get(partition, (None, 0))[0] is stage:
            self._stages[partition] = (stage, offset)
        return Checkpoint.dumps(stage, offset, effects)

    def write(self, partition: int, data: bytes) -> None:
        self._checkpoint(partition).write(data)

    def done(self, partition: int, offset: int) -> None:
        self._checkpoint(partition).done(offset)

    def reset(self) -> None:
        self._stages.clear()  # a partition that comes back is read from its file again
        self._redo.clear()

    def forget(self, ids: set[str]) -> None:
        for stage, _ in self._stages.values():
            stage.forget(ids)


def _serve_collector(app: faust.App, settings: Settings) -> None:
    """With ``worker_collector`` set, run the HTTP collector in the worker's loop, started and stopped with it."""
    if not settings.worker_collector:
        return
    from streams.collector import RunningCollector, parse_write_keys  # noqa: PLC0415 - only when enabled

    class CollectorService(mode.Service):
        running: RunningCollector | None = None

        async def on_start(self) -> None:
            self.running = await RunningCollector.start(
                settings,
                parse_write_keys(settings.write_keys),
                host=settings.collector_host,
                port=settings.collector_port,
                delivery_timeout=10.0,
            )

        async def on_stop(self) -> None:
            if self.running is not None:
                await self.running.stop()

    app.service(CollectorService)


def _open_sink(settings: Settings) -> ClickHouseSink:
    sink = ClickHouseSink(dsn=settings.clickhouse_dsn)
    sink.migrate()
    sink.apply_retention(settings.model_dump(include={"retention_days", "failed_retention_days"}))
    return sink


async def _store_refusals(sink: ClickHouseSink, rows: list[ConsentRefusalRow], *, token: str) -> None:
    """Refused inputs not counted yet (by ``source``): a batch replayed after a crash counts once."""
    if rows:
        store = partial(sink.insert_absent, "consent_refusals", rows, key="source", token=token)
        await _retrying(store, table="consent_refusals", token=token)


def _batch_range(batch: Sequence[Any]) -> str:
    """A batch's input coordinates, ``p:first-last`` per partition: a token that a replay reproduces."""
    spans: dict[int, list[int]] = {}
    for event in batch:
        span = spans.setdefault(event.message.partition, [event.message.offset, event.message.offset])
        span[1] = event.message.offset
    return ",".join(f"{p}:{a}-{b}" for p, (a, b) in sorted(spans.items()))


async def _privacy_loop(
    stream: faust.Stream[bytes],
    *,
    pipeline: Pipeline,
    settings: Settings,
    parsed_name: str,
    people_name: str,
    output: Callable[[], OutputProducer],
) -> None:
    """Erasure requests: delete in ClickHouse, then tell every stage that holds state about the person.

    Markers go to ``events.parsed`` keyed by each linked id (as a device key, so the partition that holds
    the device's state gets it, in order with that device's events) and to ``people`` (the person-level stage).
    Rows of the person that were in flight during the first delete are caught by a second one after the
    stages have had three batch intervals to apply the markers and store what they scored before them (the
    device stage stores a group at most ``batch_seconds`` after scoring it); both deletes are idempotent.
    """
    sink = await asyncio.to_thread(_open_sink, settings)
    try:
        # take_events acknowledges after the body has run (events() would hold the last one back).
        async for batch in stream.take_events(10, within=1.0):
            for event in batch:
                request = ErasureRequest.model_validate_json(event.value)
                report = await asyncio.to_thread(
                    erase, sink, request, subject=pipeline.pii.subject, bound_seconds=settings.erasure_bound_seconds
                )
                subjects = [pipeline.pii.subject(i) for i in report.ids]
                pipeline.suppressed.update(subjects)
                producer = output()
                for key in [*report.ids, *(f"user:{i}" for i in report.ids)]:
                    marker = EraseMarker(key=key, ids=report.ids, subjects=subjects)
                    producer.produce(parsed_name, key=key.encode(), value=marker.to_json())
                producer.produce(
                    people_name, key=b"erase", value=EraseMarker(key="", ids=report.ids, subjects=subjects).to_json()
                )
                await producer.flush()
                # the device stage stores a row at most batch_seconds after scoring it, plus the insert
                await asyncio.sleep(settings.batch_seconds * 3)
                await asyncio.to_thread(
                    erase, sink, request, subject=pipeline.pii.subject, bound_seconds=settings.erasure_bound_seconds
                )
    finally:
        await asyncio.to_thread(sink.close)


async def _failed_loop(stream: faust.Stream[bytes], *, settings: Settings, topic: str) -> None:
    """The failed stream into ``failed_events``: one insert per partition and batch, token = offset range."""
    sink = await asyncio.to_thread(_open_sink, settings)
    try:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            groups: dict[int, list[Any]] = defaultdict(list)
            for event in batch:
                groups[event.message.partition].append(event)
            for partition, events in groups.items():
                rows = {f.source: f for f in (FailedEvent.model_validate_json(e.value) for e in events)}
                # An input's failure can be published twice (ingest re-runs a batch after a crash) at two
                # offsets; ``source`` names the input, so one already stored is not stored again. Failures
                # are rare, so checking every batch costs little.
                token = f"{topic}:{partition}:{events[0].message.offset}-{events[-1].message.offset}"
                store = partial(sink.insert_absent, "failed_events", list(rows.values()), key="source", token=token)
                await _retrying(store, table="failed_events", token=token)
    finally:
        await asyncio.to_thread(sink.close)


async def _spend_loop(stream: faust.Stream[bytes], *, settings: Settings, outputs: _Outputs) -> None:
    """Marketing spend records into ``marketing_spend`` (token = offset range); an invalid record goes to the
    failed stream with its bytes and the reason, like an invalid event."""
    sink = await asyncio.to_thread(_open_sink, settings)
    try:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            groups: dict[int, list[tuple[int, SpendRow]]] = defaultdict(list)
            for event in batch:
                message = event.message
                try:
                    record = MarketingSpend.model_validate_json(event.value)
                except ValidationError as e:
                    first = e.errors(include_url=False)[0]
                    where = ".".join(map(str, first["loc"])) or "record"
                    outputs.fail(
                        FailedEvent(
                            message_id="",
                            stage="validate",
                            error=f"invalid spend record: {where}: {first['msg']}",
                            raw=event.value,
                            source=source_of(message),
                            received_at=datetime.fromtimestamp(message.timestamp, UTC),
                        )
                    )
                    continue
                groups[message.partition].append((message.offset, SpendRow.of(record, source=source_of(message))))
            for partition, rows in groups.items():
                token = f"{settings.topic('spend')}:{partition}:{rows[0][0]}-{rows[-1][0]}"
                await _insert_retrying(sink, "marketing_spend", [row for _, row in rows], token)
            await outputs.producer().flush()
    finally:
        await asyncio.to_thread(sink.close)


class UnstoredRows:
    """Drops rows already in ``events`` from the first batches of a partition after (re)assignment.

    A crash between a batch's insert and the save of the state that remembers it replays that batch, and
    the replay's batch boundaries differ, so its insert token differs too. Those replayed inputs are a
    prefix of the partition's stream after the committed offset, so the rows are checked against the table
    until a batch whose last row was not yet stored; from then on nothing is checked (no cost).
    """

    def __init__(self) -> None:
        self.checking: dict[int, bool] = {}

    def reset(self) -> None:
        self.checking.clear()

    def checks(self, partition: int) -> bool:
        """Whether the partition's next batch is looked up in the warehouse."""
        return self.checking.get(partition, True)

    async def filter(self, sink: ClickHouseSink, partition: int, rows: list[EventRow]) -> tuple[list[EventRow], bool]:
        """``rows`` without those already stored, and whether any was looked up."""
        if not self.checks(partition):
            return rows, False
        stored = await asyncio.to_thread(sink.stored_message_ids, "events", rows)
        if rows[-1].message_id not in stored:
            self.checking[partition] = False
        if stored:
            log.info("rows already stored", partition=partition, rows=len(stored))
        return [r for r in rows if r.message_id not in stored], True


class _PartitionTables:
    """A sessionize batch's valid rows grouped by input partition, each partition scored and stored on its own."""

    def __init__(self) -> None:
        self._groups: dict[int, tuple[list[int], list[EventRow]]] = {}

    def add(self, message: Any, row: EventRow) -> None:
        offsets, rows = self._groups.setdefault(message.partition, ([], []))
        offsets.append(message.offset)
        rows.append(row)

    def sources(self, rows: list[EventRow]) -> dict[str, str]:
        """``message_id -> source`` of the rows added so far that share an id with ``rows``."""
        ids = {r.message_id for r in rows}
        return {r.message_id: r.source for _, group in self._groups.values() for r in group if r.message_id in ids}

    def by_partition(self) -> Iterator[tuple[int, list[EventRow], list[int]]]:
        """``(partition, rows, offsets)`` in offset order."""
        for partition, (offsets, rows) in self._groups.items():
            order: Sequence[int] = range(len(offsets))
            if any(a > b for a, b in itertools.pairwise(offsets)):  # late rows were settled after the rest
                order = sorted(order, key=offsets.__getitem__)
            yield partition, [rows[i] for i in order], [offsets[i] for i in order]


async def _insert_retrying(sink: ClickHouseSink, table: str, rows: list[object], token: str) -> None:
    """Insert until it succeeds: never ack what is not stored; a retry carries the same token."""
    if rows:
        await _retrying(lambda: sink.insert(table, rows, token=token), table=table, token=token)


async def _retrying(write: Callable[[], object], *, table: str, token: str) -> None:
    """Run ``write`` in a thread until it succeeds (backing off on :class:`SinkError`)."""
    while True:
        try:
            await asyncio.to_thread(write)
        except SinkError as e:
            delay = e.retry_after or 5.0
            log.warning("warehouse insert failed; retrying", table=table, token=token, error=str(e), delay=delay)
            await asyncio.sleep(delay)
        else:
            return
