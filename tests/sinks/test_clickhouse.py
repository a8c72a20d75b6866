"""The sink against the real ClickHouse engine (chDB), and its retry logic with a failing client double."""

from __future__ import annotations

import dataclasses
import gc
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from schemas import ConfigError, FailedEvent, SinkError
from schemas.records import EXAMPLE_ROW
from sinks import MIGRATIONS, ClickHouseSink, connect
from sinks.clickhouse import TABLE_COLUMNS


def rows(n: int, prefix: str = "m") -> list[object]:
    return [dataclasses.replace(EXAMPLE_ROW, message_id=f"{prefix}{i}", source=f"f:{i}") for i in range(n)]


def test_migrations_are_recorded_and_applied_once(warehouse_dsn: str) -> None:
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        assert sink.migrate() == [m.version for m in MIGRATIONS]
        assert sink.migrate() == []
        tables = {
            r[0] for r in sink.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows
        }
    assert {"events", "failed_events", "schema_migrations"} <= tables


def test_sinks_opened_at_once_apply_each_migration_once(warehouse_dsn: str) -> None:
    """A worker's agents open their sinks together at start-up."""

    def migrate() -> list[int]:
        with ClickHouseSink(dsn=warehouse_dsn) as sink:
            return sink.migrate()

    with ThreadPoolExecutor(4) as pool:
        applied = sorted(v for versions in pool.map(lambda _: migrate(), range(4)) for v in versions)
    assert applied == [m.version for m in MIGRATIONS]
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        recorded = sink.query("SELECT version, count() FROM schema_migrations GROUP BY version ORDER BY 1")
        assert recorded.result_rows == [(m.version, 1) for m in MIGRATIONS]


def test_rows_round_trip_with_types(warehouse_dsn: str) -> None:
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        sink.write("events", rows(3))
        failed = FailedEvent(
            message_id="", stage="parse", error="bad", raw=b"\xff{", source="f:9", received_at=datetime.now(UTC)
        )
        sink.write("failed_events", [failed])
        assert sink.flush(token="f:0-9") == 4
        got = sink.query("SELECT message_id, event_at, revenue, consent FROM events ORDER BY message_id").result_rows
        raw = sink.query("SELECT hex(raw) FROM failed_events").result_rows
    assert [r[0] for r in got] == ["m0", "m1", "m2"]
    assert got[0][1].replace(tzinfo=UTC) == EXAMPLE_ROW.event_at
    assert got[0][2:] == (42.5, {"analytics": True})
    assert raw == [("FF7B",)]  # the original bytes, not a lossy decoding


def test_same_token_is_stored_once_other_token_twice(warehouse_dsn: str) -> None:
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        batch = rows(100)
        sink.insert("events", batch, token="t:0:0-99")
        sink.insert("events", batch, token="t:0:0-99")  # a retry after an ambiguous failure
        assert sink.query("SELECT count() FROM events").result_rows == [(100,)]
        sink.insert("events", batch, token="t:0:100-199")  # the control: no token match, rows double
        assert sink.query("SELECT count(), uniqExact(message_id) FROM events").result_rows == [(200, 100)]


def test_an_insert_leaves_no_rows_for_the_cyclic_collector(warehouse_dsn: str) -> None:
    """clickhouse-connect's insert context is a reference cycle: the rows it holds must not wait for the
    collector (embedded mode collects once per batch: 52-63 ms per 20,000 inputs with them, 8-27 ms without)."""
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        batch = rows(1000)
        gc.collect()
        gc.disable()
        try:
            sink.insert("events", batch, token="t:0:0-999")
            unreachable = gc.collect()
        finally:
            gc.enable()
        assert sink.query("SELECT count() FROM events").result_rows == [(1000,)]
    assert unreachable < 100  # the context's own few objects; 1,000 row tuples and more when they are kept


class FlakyClient:
    """A client double whose first ``failures`` inserts raise ``error``; records every attempt."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.attempts: list[dict[str, Any]] = []
        self.describes: list[str] = []

    def query(self, sql: str, **_: Any) -> SimpleNamespace:
        """``DESCRIBE TABLE t``: every column a String."""
        table = sql.rsplit(maxsplit=1)[-1]
        self.describes.append(table)
        return SimpleNamespace(result_rows=[(c, "String", "") for c in TABLE_COLUMNS[table]])

    def insert(self, table: str, data: list[Any], **kwargs: Any) -> None:
        self.attempts.append({"table": table, "rows": len(data), **kwargs})
        if len(self.attempts) <= self.failures:
            raise self.error

    def close(self) -> None:
        pass


def test_connection_errors_retry_with_backoff_and_the_same_token() -> None:
    client = FlakyClient(2, OperationalError("connection reset"))
    sleeps: list[float] = []
    sink = ClickHouseSink(client=client, backoff=0.5, sleep=sleeps.append)  # type: ignore[arg-type]
    sink.insert("events", rows(5), token="tok")
    assert sleeps == [0.5, 1.0]
    assert [a["settings"]["insert_deduplication_token"] for a in client.attempts] == ["tok"] * 3
    assert all(a["settings"]["async_insert"] == 0 for a in client.attempts)


def test_column_types_are_read_once_per_table() -> None:
    client = FlakyClient(0, OperationalError("unused"))
    sink = ClickHouseSink(client=client)  # type: ignore[arg-type]
    for token in ("a", "b", "c"):
        sink.insert("events", rows(2), token=token)
    sink.insert("failed_events", [], token="d")
    assert client.describes == ["events", "failed_events"]
    assert client.attempts[-2]["column_type_names"] == ["String"] * len(TABLE_COLUMNS["events"])


def test_a_table_missing_a_column_names_it_and_the_fix(tmp_path: Path) -> None:
    with ClickHouseSink(dsn=f"chdb://{tmp_path / 'wh'}") as sink:
        sink.command("CREATE TABLE events (message_id String) ENGINE = MergeTree ORDER BY message_id")
        with pytest.raises(SinkError, match="table events has no column 'type': run the migrations"):
            sink.insert("events", rows(1), token="t")


def test_retries_give_up_with_sink_error_and_backpressure_hint() -> None:
    client = FlakyClient(99, OperationalError("refused"))
    sink = ClickHouseSink(client=client, retries=3, backoff=0.1, sleep=lambda _: None)  # type: ignore[arg-type]
    with pytest.raises(SinkError, match="after 4 attempts") as info:
        sink.insert("events", rows(1), token="tok")
    assert info.value.retry_after == pytest.approx(0.8)
    assert len(client.attempts) == 4


def test_schema_errors_are_not_retried() -> None:
    client = FlakyClient(99, DatabaseError("Code: 16. DB::Exception: No such column"))
    sink = ClickHouseSink(client=client, sleep=lambda _: pytest.fail("must not sleep"))  # type: ignore[arg-type]
    with pytest.raises(SinkError, match="No such column"):
        sink.insert("events", rows(1), token="tok")
    assert len(client.attempts) == 1


def test_flush_clears_buffers_even_when_the_insert_fails() -> None:
    client = FlakyClient(99, DatabaseError("Code: 16. boom"))
    sink = ClickHouseSink(client=client, sleep=lambda _: None)  # type: ignore[arg-type]
    sink.write("events", rows(3))
    with pytest.raises(SinkError):
        sink.flush(token="t")
    client.failures = 0
    assert sink.flush(token="t2") == 0


@pytest.mark.parametrize(
    ("dsn", "fragment"),
    [
        ("mysql://x", "unsupported ClickHouse DSN"),
        ("chdb:///proc/forbidden/x", "cannot create the embedded ClickHouse directory"),
        ("chdb:///tmp/x?database=bad-name", "invalid database name"),
        ("http://127.0.0.1:1/db", "cannot connect to ClickHouse"),
    ],
)
def test_bad_dsns_are_one_line_config_errors(dsn: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        connect(dsn)
    assert "\n" not in str(info.value)


def test_a_warehouse_held_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "held"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, sinks; s = sinks.connect('chdb://{path}'); print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"open\n"
        with pytest.raises(ConfigError, match="open in another process"):
            connect(f"chdb://{path}")
    finally:
        holder.communicate(b"", timeout=30)


class LostAnswerClient:
    """The real chDB client, except that the first insert's answer is lost after the server stored it
    (a connection reset on the way back): the ambiguous failure a retry has to survive."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.inserts = 0

    def insert(self, table: str, data: list[Any], **kwargs: Any) -> None:
        self.client.insert(table, data, **kwargs)
        self.inserts += 1
        if self.inserts == 1:
            msg = "connection reset by peer after the insert was sent"
            raise OperationalError(msg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.mark.parametrize(("window", "stored"), [(True, 100), (False, 200)])
def test_an_ambiguous_insert_is_retried_and_stored_once(warehouse_dsn: str, window: bool, stored: int) -> None:
    """With ``non_replicated_deduplication_window`` the retry (same token) is a no-op; the control table
    without it stores the batch twice, which is why every table of ours sets it."""
    with ClickHouseSink(dsn=warehouse_dsn) as setup:
        setup.migrate()
        if not window:
            setup.command("CREATE TABLE events_plain AS events ENGINE = MergeTree ORDER BY message_id")
            setup.command("EXCHANGE TABLES events AND events_plain")
        client = LostAnswerClient(setup.client)
        sink = ClickHouseSink(client=client, backoff=0.0, sleep=lambda _: None)
        sink.insert("events", rows(100), token="events.parsed:0:0-99")
        assert client.inserts == 2  # the failure, then the retry
        assert setup.query("SELECT count(), uniqExact(message_id) FROM events").result_rows == [(stored, 100)]


def test_insert_absent_stores_each_key_once_also_within_a_batch(warehouse_dsn: str) -> None:
    """A refused input redelivered inside one batch (two copies of its source) is counted once."""
    from datetime import date

    from schemas.privacy import ConsentRefusalRow

    def row(source: str) -> ConsentRefusalRow:
        return ConsentRefusalRow(day=date(2026, 11, 1), purpose="analytics", refused=1, source=source)

    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        first = sink.insert_absent(
            "consent_refusals", [row("t:0:1"), row("t:0:1"), row("t:0:2")], key="source", token="a"
        )
        again = sink.insert_absent("consent_refusals", [row("t:0:2"), row("t:0:3")], key="source", token="b")
        total = sink.query("SELECT sum(refused), count() FROM consent_refusals").result_rows
    assert [r.source for r in first] == ["t:0:1", "t:0:2"]
    assert [r.source for r in again] == ["t:0:3"]
    assert total == [(3, 3)]
