"""Privacy end to end in embedded mode: PII hashing, erasure from every table, replay after erasure."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sinks.clickhouse import ClickHouseSink
from streams.cli import main
from tests.conftest import segment

ORDER = {
    "type": "track",
    "event": "Order Completed",
    "properties": {"order_id": "o-1", "revenue": 30.0, "currency": "USD", "email": "Ann@Example.com"},
}


def _lines(tmp_path: Path) -> Path:
    events = [
        segment(messageId="m1", anonymousId="dev-ann"),
        segment(messageId="m2", anonymousId="dev-ann", userId="ann"),
        segment(messageId="m3", anonymousId="dev-ann", userId="ann", **ORDER),
        segment(messageId="m4", anonymousId="dev-ann-phone", userId="ann", traits={"phone": "+1 (555) 010-9999"}),
        segment(messageId="m5", anonymousId="dev-bob"),
        b'{"anonymousId": "dev-ann", "broken": ',  # a failed event that names her device
    ]
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"\n".join(events) + b"\n")
    return path


def _sql(dsn: str, query: str) -> list[tuple[object, ...]]:
    with ClickHouseSink(dsn=dsn) as sink:
        return list(sink.query(query).result_rows)


def test_pii_is_hashed_before_any_table(tmp_path: Path, warehouse_dsn: str) -> None:
    assert main(["replay", str(_lines(tmp_path)), "--dsn", warehouse_dsn]) == 0
    stored = _sql(warehouse_dsn, "SELECT properties, traits FROM events WHERE message_id IN ('m3', 'm4')")
    text = orjson.dumps(stored).decode()
    for plain in ("Example.com", "ann@example.com", "555"):
        assert plain not in text
    [(email,)] = _sql(warehouse_dsn, "SELECT JSONExtractString(properties, 'email') FROM events WHERE message_id='m3'")
    assert str(email).startswith("h1:")


def test_erase_removes_every_row_and_replay_does_not_bring_them_back(
    tmp_path: Path, warehouse_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _lines(tmp_path)
    assert main(["replay", str(path), "--dsn", warehouse_dsn]) == 0
    assert _sql(warehouse_dsn, "SELECT count() FROM customer_value WHERE person_id = 'u:ann'") == [(1,)]
    capsys.readouterr()

    assert main(["erase", "ann", "--dsn", warehouse_dsn]) == 0
    out = capsys.readouterr().out
    assert "erased 'ann' and 3 linked ids" in out  # her two devices and her person id u:ann
    assert _sql(warehouse_dsn, "SELECT message_id FROM events ORDER BY 1") == [("m5",)]
    assert _sql(warehouse_dsn, "SELECT count() FROM failed_events") == [(0,)]
    assert _sql(warehouse_dsn, "SELECT count() FROM customer_value") == [(0,)]
    log = _sql(warehouse_dsn, "SELECT table, rows_removed, subjects FROM erasure_log ORDER BY table")
    removed = {table: n for table, n, _ in log}
    assert removed["events"] == 4
    assert removed["failed_events"] == 1
    assert removed["customer_value"] == 1
    assert "ann" not in orjson.dumps([s for _, _, s in log]).decode()  # hashes only

    # Physically gone, not just hidden: no part holds the id any more.
    assert _sql(warehouse_dsn, "SELECT count() FROM system.mutations WHERE NOT is_done") == [(0,)]

    # Replaying the same file, or the same person under new message ids, stores nothing of theirs.
    assert main(["replay", str(path), "--dsn", warehouse_dsn]) == 0
    assert "5 refused (erased 5)" in capsys.readouterr().out  # the broken line too: it names her device
    later = tmp_path / "later.ndjson"
    later.write_bytes(segment(messageId="m9", anonymousId="dev-ann-phone") + b"\n")
    assert main(["replay", str(later), "--dsn", warehouse_dsn]) == 0
    assert _sql(warehouse_dsn, "SELECT message_id FROM events ORDER BY 1") == [("m5",)]
    assert _sql(warehouse_dsn, "SELECT count() FROM failed_events") == [(0,)]


def test_erase_of_an_unknown_id_is_harmless(warehouse_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["erase", "nobody", "--dsn", warehouse_dsn]) == 0
    assert "nothing stored" in capsys.readouterr().out
