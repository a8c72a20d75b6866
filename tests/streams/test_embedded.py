"""The embedded runner on the real ClickHouse engine: every input lands once, replays write nothing twice."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

import pytest

from schemas.errors import SinkError
from sinks import ClickHouseSink
from streams.embedded import EmbeddedRunner, ndjson_lines
from streams.pipeline import Pipeline
from streams.settings import Settings
from tests.conftest import segment

BROKEN = [
    b"{not json",
    b"\xff\xfe\x00",
    segment(messageId=None),
    segment(anonymousId=None),
    segment(timestamp=12),
    segment(type="track", event="Order Completed", properties={"order_id": "o", "revenue": "abc"}),
    b'{"type":"page","messageId":"x","anonymousId":"a","context":{"padding":"' + b"x" * 40_000 + b'"}}',
]


def mixed_input() -> bytes:
    good = [segment(messageId=f"m{i}", anonymousId=f"d{i % 7}") for i in range(200)]
    duplicates = [good[3], good[150]]
    return b"\n".join(good + BROKEN + duplicates) + b"\n\n"


class SlowSink(ClickHouseSink):
    """A warehouse slower than the pipeline: each batch's inserts start 0.2 s late."""

    def insert_all(self, buffers: Mapping[str, Sequence[object]], *, token: str) -> int:
        time.sleep(0.2)
        return super().insert_all(buffers, token=token)


def run(
    dsn: str, data: bytes, batch_size: int = 64, sink_type: type[ClickHouseSink] = ClickHouseSink
) -> tuple[int, int, int]:
    with sink_type(dsn=dsn) as sink:
        sink.migrate()
        runner = EmbeddedRunner(
            pipeline=Pipeline(Settings()), sink=sink, batch_size=batch_size, write_behind=sink_type is SlowSink
        )
        summary = runner.run(ndjson_lines(io.BytesIO(data), "input"))
        assert summary.inputs == summary.valid + summary.failed_total
        return sink.query(  # type: ignore[no-any-return]
            "SELECT (SELECT count() FROM events), (SELECT uniqExact(message_id) FROM events),"
            " (SELECT count() FROM failed_events)"
        ).result_rows[0]


def test_every_input_lands_exactly_once(warehouse_dsn: str) -> None:
    events, unique, failed = run(warehouse_dsn, mixed_input())
    assert (events, unique, failed) == (200, 200, len(BROKEN) + 2)


def test_failed_events_keep_bytes_stage_and_source(warehouse_dsn: str) -> None:
    run(warehouse_dsn, mixed_input())
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        got = sink.query("SELECT source, stage, raw = {raw:String} FROM failed_events WHERE source = 'input:201'",
                         {"raw": BROKEN[0].decode()}).result_rows  # fmt: skip
        stages = dict(sink.query("SELECT stage, count() FROM failed_events GROUP BY stage").result_rows)
    assert got == [("input:201", "parse", True)]
    assert stages == {"parse": 2, "validate": 4, "size": 1, "dedupe": 2}


def test_replaying_the_same_file_writes_nothing_twice(warehouse_dsn: str) -> None:
    data = mixed_input()
    first = run(warehouse_dsn, data)
    second = run(warehouse_dsn, data)
    assert first == second == (200, 200, len(BROKEN) + 2)


def test_simulated_traffic_lands_once_with_true_channels_and_orders(warehouse_dsn: str) -> None:
    """Simulator traffic with noise: counts, failures, session channels and orders agree with its truth."""
    from models.simulator import SimulationConfig, simulate

    sim = simulate(SimulationConfig(users=300, days=7, seed=5, malformed_rate=0.02))
    lines = list(sim.collected_events())
    truth = sim.truth()
    # A deployment that does not gate analytics on consent: every line is valid or failed, none refused.
    ungated = Settings(consent_purposes="analytics=not-asked;marketing=marketing", consent_required=False)
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        runner = EmbeddedRunner(pipeline=Pipeline(ungated), sink=sink, batch_size=1000)
        summary = runner.run((f"sim:{n}", line) for n, line in enumerate(lines, start=1))
        channel_of = dict(sink.query("SELECT message_id, channel FROM events").result_rows)
        orders = dict(sink.query("SELECT order_id, revenue FROM events WHERE event = 'Order Completed'").result_rows)
        stored = sink.query("SELECT (SELECT count() FROM events) + (SELECT count() FROM failed_events)").result_rows
        buyers = sink.query("SELECT uniqExact(person_id) FROM events WHERE event = 'Order Completed'").result_rows
        valued = sink.query(
            "SELECT count(), countIf(frequency >= 1), min(p_alive) >= 0, max(p_alive) <= 1 FROM customer_value FINAL"
        ).result_rows
    malformed = truth["malformed"]["counts"]
    assert summary.inputs == len(lines) == stored[0][0]
    assert summary.failed["dedupe"] == malformed["duplicate"]
    assert summary.failed_total == truth["summary"]["invalid_lines"] + malformed["duplicate"]
    sessions = [s for s in truth["sessions"] if s["first_message_id"] in channel_of]
    assert len(sessions) >= 0.98 * len(truth["sessions"])
    agree = sum(channel_of[s["first_message_id"]] == s["channel"] for s in sessions)
    assert agree == len(sessions)
    true_orders = {o["order_id"]: o["revenue"] for o in truth["orders"]}
    assert orders.keys() <= true_orders.keys()
    assert len(orders) >= len(true_orders) - malformed["wrong_type"]
    assert all(abs(orders[k] - true_orders[k]) < 0.01 for k in orders)
    assert valued == [(buyers[0][0], buyers[0][0], True, True)]  # one current value per buyer


def test_consent_refuses_analytics_denied_people_and_counts_them(warehouse_dsn: str) -> None:
    """Simulated consent: nobody who denied analytics is stored; refusals are counted per day and purpose."""
    from models.simulator import SimulationConfig, simulate

    sim = simulate(SimulationConfig(users=200, days=5, seed=11))
    truth = sim.truth()
    settings = Settings(consent_required=True)
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        runner = EmbeddedRunner(pipeline=Pipeline(settings), sink=sink, batch_size=500)
        summary = runner.run((f"sim:{n}", line) for n, line in enumerate(sim.collected_events(), start=1))
        stored = {r[0] for r in sink.query("SELECT DISTINCT anonymous_id FROM events").result_rows}
        counted = sink.query("SELECT sum(refused) FROM consent_refusals WHERE purpose = 'analytics'").result_rows
        consent_column = sink.query("SELECT DISTINCT mapKeys(consent) FROM events").result_rows
    steady = [p for p in truth["persons"].values() if p["consent_after"] is None and not p["erased"]]
    denied = [p for p in steady if p["consent"] is None or not p["consent"]["categoryPreferences"]["analytics"]]
    granted = [p for p in steady if p not in denied]
    assert denied
    assert granted
    assert not any(d in stored for p in denied for d in p["devices"])  # no banner = denied when required
    assert sum(d in stored for p in granted for d in p["devices"]) >= 0.5 * sum(len(p["devices"]) for p in granted)
    assert summary.refused["analytics"] == counted[0][0] > 0
    assert summary.inputs == summary.valid + summary.failed_total + summary.refused["analytics"]
    assert consent_column == [(["analytics", "marketing", "personalisation"],)]


def _at(day: int) -> dict[str, str]:
    stamp = f"2026-11-{day:02d}T10:00:00.000Z"
    return {"timestamp": stamp, "sentAt": stamp, "receivedAt": stamp}


@pytest.mark.parametrize("sink_type", [ClickHouseSink, SlowSink])
def test_a_resend_older_than_the_device_memory_is_recorded_as_a_duplicate(
    warehouse_dsn: str, sink_type: type[ClickHouseSink]
) -> None:
    """The device forgets ids after its 7-day dedupe window; the warehouse settles resends older than that,
    after the batch in flight is stored (with the slow sink, the original would not be there yet)."""
    old = segment(messageId="old", **_at(1))
    later = [segment(messageId=f"later{i}", **_at(12)) for i in range(4)]
    resent = segment(messageId="old", **{**_at(12), "timestamp": "2026-11-01T10:00:00.000Z"})  # sent again
    new_but_late = segment(messageId="late-new", **_at(2))
    # batches of 3: the original is stored two batches before its resend; the last batch holds two resends
    data = b"\n".join([old, *later, resent, new_but_late, resent])
    events, unique, failed = run(warehouse_dsn, data, batch_size=3, sink_type=sink_type)
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        rows = sink.query("SELECT message_id, source, error FROM failed_events ORDER BY source").result_rows
    assert (events, unique) == (6, 6)
    assert rows == [
        ("old", "input:6", "duplicate messageId, first seen at input:1"),
        ("old", "input:8", "duplicate messageId, first seen at input:1"),
    ]
    assert failed == 2


def _numbered(lines: list[bytes], on_line: dict[int, threading.Event]) -> Iterator[tuple[str, bytes]]:
    for number, line in enumerate(lines, start=1):
        if number in on_line:
            on_line[number].set()
        yield f"input:{number}", line


def test_a_batch_is_inserted_while_the_next_one_is_read(warehouse_dsn: str) -> None:
    lines = [segment(messageId=f"m{i}") for i in range(6)]
    reading_second = threading.Event()
    waits: list[bool] = []

    class WaitingSink(ClickHouseSink):
        def insert_all(self, buffers: Mapping[str, Sequence[object]], *, token: str) -> int:
            waits.append(reading_second.wait(10))  # a runner that inserts in line would never get there
            return super().insert_all(buffers, token=token)

    with WaitingSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        runner = EmbeddedRunner(pipeline=Pipeline(Settings()), sink=sink, batch_size=3, write_behind=True)
        summary = runner.run(_numbered(lines, {4: reading_second}))
        stored = sink.query("SELECT count() FROM events").result_rows[0][0]
    assert waits == [True, True]
    assert (summary.valid, stored) == (6, 6)


def test_a_failed_insert_ends_the_run(warehouse_dsn: str) -> None:
    class FailingSink(ClickHouseSink):
        def insert_all(self, buffers: Mapping[str, Sequence[object]], *, token: str) -> int:
            msg = "the warehouse refused the batch"
            raise SinkError(msg)

    lines = [segment(messageId=f"m{i}") for i in range(7)]
    read: list[int] = []

    def inputs() -> Iterator[tuple[str, bytes]]:
        for number, source_line in _numbered(lines, {}):
            read.append(int(number.rsplit(":", 1)[1]))
            yield number, source_line

    with FailingSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        runner = EmbeddedRunner(pipeline=Pipeline(Settings()), sink=sink, batch_size=3, write_behind=True)
        with pytest.raises(SinkError, match="refused the batch"):
            runner.run(inputs())
    assert max(read) == 6  # the second batch's flush found the first batch failed; nothing after it was read


@pytest.mark.parametrize(("cpus", "threads"), [({0}, {"MainThread"}), ({0, 1}, {"revstream-sink_0"})])
def test_inserts_are_made_behind_only_with_a_second_cpu(
    warehouse_dsn: str, monkeypatch: pytest.MonkeyPatch, cpus: set[int], threads: set[str]
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: cpus)
    used: set[str] = set()

    class ThreadSink(ClickHouseSink):
        def insert_all(self, buffers: Mapping[str, Sequence[object]], *, token: str) -> int:
            used.add(threading.current_thread().name)
            return super().insert_all(buffers, token=token)

    with ThreadSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        runner = EmbeddedRunner(pipeline=Pipeline(Settings()), sink=sink, batch_size=3)
        runner.run(_numbered([segment(messageId=f"m{i}") for i in range(7)], {}))
        assert sink.query("SELECT count() FROM events").result_rows[0][0] == 7
    assert used == threads


def test_progress_advances_every_thousand_inputs_within_a_batch(warehouse_dsn: str) -> None:
    """A batch is 20,000 inputs: the bar must not wait for a flush to move, and its steps sum to the input."""
    data = b"\n".join(segment(messageId=f"m{i}", anonymousId=f"d{i % 50}") for i in range(2500))
    steps: list[int] = []
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        runner = EmbeddedRunner(pipeline=Pipeline(Settings()), sink=sink, write_behind=False)
        summary = runner.run(ndjson_lines(io.BytesIO(data), "input"), progress=steps.append)
        stored = sink.query("SELECT count() FROM events").result_rows[0][0]
    assert runner.batch_size == 20_000
    assert steps == [1000, 1000, 500]
    assert summary.inputs == stored == 2500
