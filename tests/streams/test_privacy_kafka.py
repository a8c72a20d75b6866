"""Consent and erasure end to end in Kafka mode: real broker, real worker processes, embedded ClickHouse."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks import ClickHouseSink
from streams.cli import main
from streams.kafka import ensure_topics, produce
from streams.settings import Settings
from tests.conftest import segment
from tests.streams.kafka_harness import Deployment, wait_drained, worker

pytestmark = pytest.mark.integration

GRANTED = {"consent": {"categoryPreferences": {"analytics": True, "marketing": True}}}
DENIED = {"consent": {"categoryPreferences": {"analytics": False, "marketing": True}}}
ORDER = {"type": "track", "event": "Order Completed", "properties": {"order_id": "o-ann", "revenue": 40.0}}


def traffic() -> list[bytes]:
    ctx = {"ip": "203.0.113.9", "page": {"url": "https://shop.example/", "path": "/"}}
    return [
        segment(messageId="a1", anonymousId="ann-phone", context={**ctx, **GRANTED}),
        segment(messageId="a2", anonymousId="ann-phone", userId="ann", context={**ctx, **GRANTED}),
        segment(messageId="a3", anonymousId="ann-laptop", userId="ann", context={**ctx, **GRANTED}, **ORDER),
        segment(messageId="b1", anonymousId="bob-phone", context={**ctx, **GRANTED}),
        segment(messageId="c1", anonymousId="cid-phone", context={**ctx, **DENIED}),
        segment(messageId="c2", anonymousId="cid-phone", context=ctx),  # no consent object: the device's last
    ]


def rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with ClickHouseSink(dsn=dsn) as sink:
        return list(sink.query(sql).result_rows)


def test_consent_and_erasure_through_the_worker(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = Deployment.new(kafka_bootstrap, tmp_path, partitions=2)
    for key, value in deployment.env.items():
        if key.startswith("REVSTREAM_"):
            monkeypatch.setenv(key, value)
    settings = Settings(brokers=deployment.bootstrap, topic_prefix=deployment.prefix, partitions=2)
    ensure_topics(settings)
    lines = traffic()
    assert produce(settings, lines) == len(lines)
    log = tmp_path / "worker.log"
    with worker(deployment, log) as proc:
        wait_drained(deployment, proc, log)
    dsn = deployment.dsn
    assert rows(dsn, "SELECT message_id FROM events ORDER BY 1") == [("a1",), ("a2",), ("a3",), ("b1",)]
    assert rows(dsn, "SELECT purpose, sum(refused) FROM consent_refusals GROUP BY purpose") == [("analytics", 2)]
    assert rows(dsn, "SELECT count() FROM customer_value WHERE person_id = 'u:ann'") == [(1,)]
    assert rows(dsn, "SELECT count() > 0 FROM attribution_credits WHERE person_id = 'u:ann'") == [(True,)]

    assert main(["erase", "ann", "--kafka"]) == 0
    with worker(deployment, log) as proc:
        wait_drained(deployment, proc, log)
        assert proc.poll() is None
    for table in ("events", "customer_value", "attribution_credits", "identity_links"):
        where = "person_id = 'u:ann' OR position(person_id, 'ann') > 0"
        assert rows(dsn, f"SELECT count() FROM {table} WHERE {where}") == [(0,)], table
    assert rows(dsn, "SELECT message_id FROM events ORDER BY 1") == [("b1",)]
    assert rows(dsn, "SELECT count() FROM erasure_log WHERE table = 'events' AND rows_removed = 3") == [(1,)]

    # Replaying ann's old events (new offsets, same bytes) brings nothing back; they are counted as erased.
    assert produce(settings, lines[:3]) == 3
    with worker(deployment, log) as proc:
        wait_drained(deployment, proc, log)
    assert rows(dsn, "SELECT message_id FROM events ORDER BY 1") == [("b1",)]
    # Counted once per input, also when a batch is redelivered after a rebalance.
    assert rows(dsn, "SELECT sum(refused), uniqExact(source) FROM consent_refusals WHERE purpose = 'erased'") == [
        (3, 3)
    ]


def test_an_agent_error_stops_the_worker_without_committing(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A marker that cannot be read makes the sessionize agent raise: the process exits (70) and the
    offset of the bad message stays uncommitted, so whatever restarts the worker sees it again."""
    from tests.streams.kafka_harness import lag

    deployment = Deployment.new(kafka_bootstrap, tmp_path, partitions=1)
    settings = Settings(brokers=deployment.bootstrap, topic_prefix=deployment.prefix, partitions=1)
    ensure_topics(settings)
    assert produce(settings, [b'{"erase_key": broken'], topic="events.parsed") == 1
    log = tmp_path / "worker.log"
    with worker(deployment, log) as proc:
        assert proc.wait(timeout=120) == 70
    assert "agent crashed; stopping the worker without committing" in log.read_text()
    assert lag(deployment) == 1
