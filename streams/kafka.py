"""Kafka plumbing outside Faust: topic creation, and librdkafka producers for files, the simulator, agents."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future

import orjson
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from schemas.errors import ConfigError
from streams.settings import Settings

TOPICS = (
    "events.raw",
    "events.parsed",
    "events",
    "events.failed",
    "people",
    "alerts",
    "scores",
    "identity.links",
    "attribution",
    "privacy",
    "spend",
    "budget",
)
# The topics the worker itself consumes (``events``, ``alerts``, ``scores``, ``identity.links``,
# ``attribution`` and ``budget`` are for downstream systems).
CONSUMED_TOPICS = ("events.raw", "events.parsed", "events.failed", "people", "privacy", "spend")
# Topics whose consumer keeps one model of the whole customer base: one partition, so the result does not
# depend on the number of workers.
SINGLE_PARTITION_TOPICS = frozenset({"people", "privacy"})


def _topics(settings: Settings, timeout: float) -> tuple[AdminClient, set[str]]:
    """An admin client and the broker's topic names; a broker that does not answer is a ConfigError."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    try:
        return admin, set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as e:
        msg = f"cannot reach Kafka at {settings.kafka_bootstrap}: {e.args[0].str() if e.args else e}"
        raise ConfigError(msg) from e


def ensure_topics(settings: Settings, *, timeout: float = 30.0) -> list[str]:
    """Create revstream's topics with ``settings.partitions`` partitions; returns the ones created."""
    admin, existing = _topics(settings, timeout)
    wanted = [settings.topic(t) for t in TOPICS if settings.topic(t) not in existing]
    single = {settings.topic(t) for t in SINGLE_PARTITION_TOPICS}
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(name, num_partitions=1 if name in single else settings.partitions, replication_factor=1)
            for name in wanted
        ]
    )
    _settled(futures, timeout, done_already="TOPIC_ALREADY_EXISTS", action="create")
    return wanted


def delete_topics(settings: Settings, *, timeout: float = 60.0) -> list[str]:
    """Delete the topics of ``settings``' prefix and its app's Faust topics (changelogs, assignor); returns them.

    For benchmarks and tests that make a fresh prefix per run: hundreds of leftover topics on one broker
    slow every later run down.
    """
    admin, existing = _topics(settings, timeout)
    ours = sorted(t for t in existing if t.startswith((f"{settings.topic_prefix}.", f"{settings.app_id}-")))
    if not ours:
        return []
    futures = admin.delete_topics(ours, operation_timeout=timeout)
    _settled(futures, timeout, done_already="UNKNOWN_TOPIC_OR_PART", action="delete")
    return ours


def _settled(futures: Mapping[str, Future[None]], timeout: float, *, done_already: str, action: str) -> None:
    """Wait for per-topic admin results; an error naming ``done_already`` means another client did it first."""
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as e:
            if done_already not in str(e):
                msg = f"cannot {action} topic {name}: {e}"
                raise ConfigError(msg) from e


def device_key(raw: bytes) -> bytes | None:
    """The partition key a collector would use: the event's anonymousId, else userId, else none.

    >>> device_key(b'{"anonymousId":"a1"}'), device_key(b'not json')
    (b'a1', None)
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    key = data.get("anonymousId") or (f"user:{data['userId']}" if data.get("userId") else None)
    return key.encode() if isinstance(key, str) else None


def produce(
    settings: Settings,
    lines: Iterable[bytes],
    *,
    topic: str = "events.raw",
    progress: Callable[[int], None] | None = None,
    key: Callable[[bytes], bytes | None] = device_key,
) -> int:
    """Produce ``lines`` (keyed by device by default), wait for every delivery; returns the number delivered."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
    errors: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    name = settings.topic(topic)
    sent = 0
    for raw in lines:
        while True:
            try:
                producer.produce(name, value=raw, key=key(raw), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
            if progress is not None:
                progress(10_000)
    remaining = producer.flush(60)
    if progress is not None:
        progress(sent % 10_000)
    if remaining or errors:
        msg = f"{remaining + len(errors)} of {sent} events were not delivered to {name}: {(errors or ['timeout'])[0]}"
        raise ConfigError(msg)
    return sent


class OutputProducer:
    """librdkafka producer for an agent's outputs, flushed once per input batch.

    Faust's own per-message send path (a Python future and buffer entry per message) capped the worker at a
    few hundred events/s here; librdkafka batches in C. The agent flushes after each input batch and only
    then lets Faust acknowledge the inputs, so outputs are durable before their input offsets are committed.
    """

    def __init__(self, *, bootstrap: str, linger_ms: float = 1.0) -> None:
        self.config = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "compression.type": "lz4",
            # Only failures call back into Python: a callback per delivered message took the GIL from the
            # event loop once per message, from the thread that flushes.
            "delivery.report.only.error": True,
        }
        self._producer = Producer(self.config)
        self._errors: list[str] = []

    def _delivered(self, err: object, _msg: object) -> None:
        if err is not None:
            self._errors.append(str(err))

    def produce(self, topic: str, *, key: bytes | None, value: bytes | None, partition: int = -1) -> None:
        """Queue a message (on ``partition``, or the key's partition by default; a ``None`` value is a tombstone)."""
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, partition=partition, on_delivery=self._delivered)
            except BufferError:
                self._producer.poll(0.05)
            else:
                return

    async def flush(self, timeout: float = 60.0) -> None:
        """Wait until every message is delivered; raise :class:`ConfigError` naming the first failure."""
        remaining = await asyncio.to_thread(self._producer.flush, timeout)
        if remaining or self._errors:
            first = self._errors[0] if self._errors else f"{remaining} messages not delivered in {timeout}s"
            self._errors.clear()
            msg = f"could not deliver agent output to Kafka: {first}"
            raise ConfigError(msg)
