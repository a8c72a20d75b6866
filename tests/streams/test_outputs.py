"""The agents' output producer: it lingers as their batches do, and a failed delivery fails its flush."""

from __future__ import annotations

import pytest

from streams.app import _Outputs
from streams.settings import load_settings


def test_the_output_producer_lingers_as_the_setting_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVSTREAM_LINGER_MS", "7")
    settings = load_settings()
    outputs = _Outputs(bootstrap="127.0.0.1:1", failed_topic="f", linger_ms=settings.linger_ms)
    assert outputs.producer().config["linger.ms"] == 7


def test_batches_and_the_producer_linger_1_ms_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REVSTREAM_LINGER_MS", raising=False)
    assert load_settings().linger_ms == 1


@pytest.mark.integration
def test_a_message_the_broker_refuses_fails_the_flush_and_delivered_ones_do_not(kafka_bootstrap: str) -> None:
    """Only failed deliveries report back (``delivery.report.only.error``); a failure still fails the flush,
    so a batch whose outputs did not all land is never acknowledged."""
    import asyncio
    import uuid

    from confluent_kafka.admin import AdminClient, NewTopic

    from schemas.errors import ConfigError
    from streams.kafka import OutputProducer

    topic = f"outputs-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1)]).values():
        future.result(timeout=30)
    producer = OutputProducer(bootstrap=kafka_bootstrap)
    reports: list[object] = []
    record = producer._delivered

    def delivered(err: object, msg: object) -> None:
        reports.append(err)
        record(err, msg)

    producer._delivered = delivered  # type: ignore[method-assign]
    for i in range(100):
        producer.produce(topic, key=b"k", value=b"%d" % i)
    asyncio.run(producer.flush(timeout=30))  # all delivered: no error, and no call back into Python
    assert reports == []
    # Not known to the producer yet, so the failure comes back as a delivery report: the broker creates the
    # topic on first use with one partition, and partition 3 does not exist.
    producer.produce(f"{topic}-unknown", key=b"k", value=b"lost", partition=3)
    with pytest.raises(ConfigError, match=r"could not deliver agent output to Kafka: .*[Uu]nknown"):
        asyncio.run(producer.flush(timeout=30))
    assert len(reports) == 1
