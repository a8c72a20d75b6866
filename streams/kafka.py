"""Kafka plumbing outside Faust: topic creation and a fast producer for files and the simulator."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from schemas.errors import ConfigError
from streams.settings import Settings

TOPICS = ("events.raw", "events.parsed", "events", "events.failed")


def ensure_topics(settings: Settings, *, timeout: float = 30.0) -> list[str]:
    """Create revstream's topics with ``settings.partitions`` partitions; returns the ones created."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as e:
        msg = f"cannot reach Kafka at {settings.kafka_bootstrap}: {e.args[0].str() if e.args else e}"
        raise ConfigError(msg) from e
    wanted = [settings.topic(t) for t in TOPICS if settings.topic(t) not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=settings.partitions, replication_factor=1) for name in wanted]
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                msg = f"cannot create topic {name}: {e}"
                raise ConfigError(msg) from e
    return wanted


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
) -> int:
    """Produce raw events keyed by device, wait for every delivery; returns the number delivered."""
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
                producer.produce(name, value=raw, key=device_key(raw), on_delivery=delivered)
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
