"""The latency benchmark: the p99 of the events sent in each window, and the probe of when events can be read."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.pipeline import _readable_probe, _window_p99, bench_broker_floor, bench_latency, traffic


def test_a_stall_shows_in_its_own_window_only() -> None:
    steady = [(1000.0 * t / 100, 10.0 + t % 7) for t in range(2000)]  # 100 events/s for 20 s
    stalled = [(at, 500.0 if 7000 <= at < 7100 else latency) for at, latency in steady]
    assert _window_p99(steady, 5.0) == [16.0, 16.0, 16.0, 16.0]
    assert _window_p99(list(reversed(stalled)), 5.0) == [16.0, 500.0, 16.0, 16.0]  # arrival order does not matter
    assert _window_p99([], 5.0) == []


@pytest.mark.integration
def test_the_probe_notes_when_each_new_event_became_readable(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1)]).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
    producer.produce(topic, orjson.dumps({"messageId": "before"}))  # already there: not part of the run
    producer.flush(30)
    sent = {}
    with _readable_probe(kafka_bootstrap, topic, tmp_path, on=True) as readable:
        for i in range(20):
            sent[f"m{i}"] = time.time() * 1000
            producer.produce(topic, orjson.dumps({"messageId": f"m{i}"}))
        producer.produce(topic, b"not json either way")
        producer.flush(30)
        time.sleep(1.0)
        assert readable == {}  # filled in when the block ends
    assert set(readable) == set(sent)
    assert all(0 <= readable[m] - sent[m] < 10_000 for m in sent)
    with _readable_probe(kafka_bootstrap, topic, tmp_path, on=False) as off:
        pass
    assert off == {}


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_latency_run_after_a_backlog_meets_the_state_and_is_scored(kafka_bootstrap: str) -> None:
    """The worker works through the backlog first; the run's events come later in event time, so they are
    scored (events older than the backlog's would be late and never scored, and the run would measure nothing)."""
    figures = bench_latency(traffic(3000), kafka_bootstrap, rate=50, seconds=4, linger_ms=1, backlog=2000)
    assert figures["backlog_events"] == 2000
    assert figures["scored_events"] >= 50, figures  # of the 200 sent: pages and track calls, not pings


@pytest.mark.integration
def test_the_broker_floor_reads_every_event_it_sent(kafka_bootstrap: str) -> None:
    figures = bench_broker_floor(traffic(500), kafka_bootstrap, rate=100, seconds=2)
    assert (figures["sent"], figures["read"]) == (200, 200)
    assert (
        0
        <= figures["send_to_readable_ms_p50"]
        <= figures["send_to_readable_ms_p99"]
        <= figures["send_to_readable_ms_max"]
    )
