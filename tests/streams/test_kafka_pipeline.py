"""Kafka mode end to end: a real broker, a real ``revstream worker`` process, the real ClickHouse engine.

Also the parity test: the same input through Kafka mode and embedded mode gives the same warehouse rows.
"""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sinks import ClickHouseSink
from streams.embedded import EmbeddedRunner, ndjson_lines
from streams.kafka import delete_topics, ensure_topics, produce
from streams.pipeline import Pipeline
from streams.settings import Settings
from tests.conftest import segment
from tests.streams.kafka_harness import Deployment, read_topic, wait_drained, worker

pytestmark = pytest.mark.integration

BROKEN = [
    b"{not json",
    b"\xff\xfe\x00",
    segment(messageId=None),
    segment(anonymousId=None, userId=None),
    segment(timestamp=12),
    segment(type="track", event="Order Completed", properties={"order_id": "o", "revenue": "abc"}),
    b'{"type":"page","messageId":"big","anonymousId":"a","context":{"padding":"' + b"x" * 40_000 + b'"}}',
]


def traffic() -> list[bytes]:
    """Several devices, sessions split by inactivity, orders, broken events and resent duplicates."""
    lines = []
    for i in range(600):
        device, minute = f"dev{i % 40}", (i // 40) * 7
        stamp = f"2026-11-01T{10 + minute // 60:02d}:{minute % 60:02d}:00.000Z"
        fields: dict[str, object] = {"messageId": f"m{i}", "anonymousId": device, "timestamp": stamp, "sentAt": stamp}
        if i % 50 == 0:
            fields.update(type="track", event="Order Completed", properties={"order_id": f"o{i}", "revenue": 10 + i})
        if i < 40:
            fields["context"] = {"campaign": {"source": "google", "medium": "cpc", "name": "brand"}}
        lines.append(segment(**fields))
    return lines + BROKEN + [lines[5], lines[300]]


EVENT_COLUMNS = "* EXCEPT (source)"


def warehouse_rows(sink: ClickHouseSink) -> tuple[list[tuple[object, ...]], ...]:
    events = sink.query(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY message_id").result_rows
    failed = sink.query("SELECT message_id, stage, hex(raw) FROM failed_events ORDER BY stage, hex(raw)").result_rows
    # Order-independent value columns: the value model's clock depends on the order orders arrive in.
    values = sink.query(
        "SELECT person_id, frequency, monetary FROM customer_value FINAL ORDER BY person_id"
    ).result_rows
    # Which events were scored, by which model (the A/B arm is a hash of the session), and who is who:
    # neither depends on how partitions interleave. The scores themselves do (each partition learns apart).
    scored = sink.query("SELECT message_id, model FROM scores ORDER BY message_id").result_rows
    persons = sink.query("SELECT id, person_id FROM persons ORDER BY id").result_rows
    return events, failed, values, scored, persons


def test_worker_ingests_exactly_once_and_matches_embedded_mode(kafka_bootstrap: str, tmp_path: Path) -> None:
    deployment = Deployment.new(kafka_bootstrap, tmp_path)
    env_settings = Settings(
        brokers=deployment.bootstrap, topic_prefix=deployment.prefix, partitions=deployment.partitions
    )
    ensure_topics(env_settings)
    lines = traffic()
    assert produce(env_settings, lines) == len(lines)

    log = tmp_path / "worker.log"
    with worker(deployment, log) as proc:
        wait_drained(deployment, proc, log)

    with ClickHouseSink(dsn=deployment.dsn) as sink:
        counts = sink.query(
            "SELECT (SELECT count() FROM events), (SELECT uniqExact(message_id) FROM events),"
            " (SELECT count() FROM failed_events), (SELECT uniqExact(session_id) FROM events)"
        ).result_rows[0]
        stages = dict(sink.query("SELECT stage, count() FROM failed_events GROUP BY stage").result_rows)
        kafka_rows = warehouse_rows(sink)
        published = {
            "scores": sink.query("SELECT session_id, message_id, model FROM scores").result_rows,
            "attribution": sink.query(
                "SELECT person_id, model, conversion_id, touch_index FROM attribution_credits"
            ).result_rows,
            "alerts": sink.query("SELECT person_id, alert_id, kind FROM alerts").result_rows
            + sink.query("SELECT person_id, '', 'high_value' FROM high_value_alerts").result_rows,
        }
    assert counts[:3] == (600, 600, len(BROKEN) + 2)
    # The output topics carry what the tables hold (keyed by session or person), nothing else.
    fields = {
        "scores": ("message_id", "model"),
        "attribution": ("model", "conversion_id", "touch_index"),
        "alerts": ("alert_id", "kind"),
    }
    for topic, columns in fields.items():
        messages = [(k, orjson.loads(v)) for k, v in read_topic(kafka_bootstrap, f"{deployment.prefix}.{topic}")]
        on_topic = {(key.decode(), *(m[c] for c in columns)) for key, m in messages if key is not None}
        assert len(on_topic) == len(messages), topic  # every message keyed, none twice
        if topic == "alerts":  # one shape for every kind; the high-value table has no alert_id column
            on_topic = {(p, "" if kind == "high_value" else i, kind) for p, i, kind in on_topic}
        assert on_topic == {tuple(row) for row in published[topic]}, topic
    assert published["scores"]
    assert published["attribution"]
    assert published["alerts"]
    assert stages == {"parse": 2, "validate": 4, "size": 1, "dedupe": 2}

    embedded_dsn = f"chdb://{deployment.data_dir / 'warehouse'}?database=embedded"
    with ClickHouseSink(dsn=embedded_dsn) as sink:
        sink.migrate()
        runner = EmbeddedRunner(pipeline=Pipeline(Settings()), sink=sink, batch_size=100)
        runner.run(ndjson_lines(io.BytesIO(b"\n".join(lines)), "input"))
        embedded_rows = warehouse_rows(sink)
    assert kafka_rows[0] == embedded_rows[0]
    assert kafka_rows[1] == embedded_rows[1]
    assert kafka_rows[2] == embedded_rows[2]
    assert kafka_rows[3] == embedded_rows[3]
    assert len(kafka_rows[3]) > 300
    assert kafka_rows[4] == embedded_rows[4]
    assert [(p, f) for p, f, _ in kafka_rows[2]] == [("a:dev0", 3), ("a:dev10", 3), ("a:dev20", 3), ("a:dev30", 3)]
    assert counts[3] == len({row[6] for row in embedded_rows[0]})


def test_worker_can_serve_the_collector(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``revstream worker --collector``: events posted to the worker's HTTP API land in ClickHouse."""
    import base64
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    deployment = Deployment.new(kafka_bootstrap, tmp_path)
    settings = Settings(brokers=deployment.bootstrap, topic_prefix=deployment.prefix, partitions=deployment.partitions)
    ensure_topics(settings)
    env = {**deployment.env, "REVSTREAM_WORKER_COLLECTOR": "true", "REVSTREAM_COLLECTOR_PORT": str(port)}
    log = tmp_path / "worker.log"
    body = b'{"batch": [' + b",".join(segment(messageId=f"http{i}") for i in range(3)) + b"]}"
    auth = "Basic " + base64.b64encode(b"any-key:").decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/batch",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": auth},
    )
    with worker(deployment, log, env=env) as proc:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        wait_drained(deployment, proc, log)
    with ClickHouseSink(dsn=deployment.dsn) as sink:
        got = sink.query("SELECT message_id FROM events ORDER BY message_id").result_rows
    assert got == [("http0",), ("http1",), ("http2",)]


def test_delete_topics_removes_only_the_prefix_and_its_app(kafka_bootstrap: str) -> None:
    mine = Settings(brokers=kafka_bootstrap, topic_prefix="deltest", app_id="deltest", partitions=1)
    other = Settings(brokers=kafka_bootstrap, topic_prefix="deltestkeep", app_id="deltestkeep", partitions=1)
    ensure_topics(mine)
    ensure_topics(other)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic("deltest-devices-changelog", num_partitions=1)]).values():
        future.result(30)
    deleted = delete_topics(mine)
    assert "deltest.events.raw" in deleted
    assert "deltest-devices-changelog" in deleted
    assert not any(t.startswith("deltestkeep") for t in deleted)
    left = set(admin.list_topics(timeout=30).topics)
    assert not left & set(deleted)
    assert other.topic("events.raw") in left
    assert delete_topics(mine) == []
    delete_topics(other)


def test_a_restarted_worker_recovers_device_states_from_their_changelog(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The worker writes the ``devices`` changelog itself; a new worker process rebuilds the table from it.
    Resent events are then still duplicates, and a device's next event continues its open session."""
    deployment = Deployment.new(kafka_bootstrap, tmp_path, partitions=2)
    settings = Settings(brokers=deployment.bootstrap, topic_prefix=deployment.prefix, partitions=deployment.partitions)
    ensure_topics(settings)

    def event(i: int, device: str, minute: int) -> bytes:
        stamp = f"2026-11-01T10:{minute:02d}:00.000Z"
        return segment(messageId=f"m{i}", anonymousId=device, timestamp=stamp, sentAt=stamp)

    first = [event(i, f"dev{i % 4}", i) for i in range(12)]
    later = [first[1], first[6], event(12, "dev0", 14), event(13, "dev3", 15)]
    log = tmp_path / "worker.log"
    for lines in (first, later):  # one worker process each: the second starts with nothing in memory
        assert produce(settings, lines) == len(lines)
        with worker(deployment, log) as proc:
            wait_drained(deployment, proc, log)

    changelog = read_topic(kafka_bootstrap, f"{deployment.prefix}-devices-changelog")
    assert {orjson.loads(key) for key, _ in changelog if key is not None} == {f"dev{d}" for d in range(4)}
    with ClickHouseSink(dsn=deployment.dsn) as sink:
        sessions = dict(sink.query("SELECT message_id, session_id FROM events").result_rows)
        dedupes = sink.query("SELECT count() FROM failed_events WHERE stage = 'dedupe'").result_rows[0][0]
    assert len(sessions) == 14
    assert dedupes == 2  # m1 and m6 were remembered across the restart
    assert sessions["m12"] == sessions["m8"]  # dev0's session (m0, m4, m8, m12: minutes apart) went on
    assert sessions["m13"] == sessions["m11"]
