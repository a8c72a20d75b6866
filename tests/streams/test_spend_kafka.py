"""Marketing spend through the workers' ``spend`` topic: real broker, real worker process, embedded ClickHouse."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sinks import ClickHouseSink
from streams.cli import main
from tests.streams.kafka_harness import Deployment, wait_drained, worker

pytestmark = pytest.mark.integration

RECORDS = [
    {"date": "2026-11-01", "channel": "paid_search", "campaign": "brand", "cost": 120.5, "clicks": 40},
    {"date": "2026-11-01", "channel": "email", "campaign": "nl", "cost": 10.0},
    {"date": "2026-11-02", "channel": "paid_search", "campaign": "brand", "cost": 99.0, "currency": "EUR"},
]


def test_spend_records_land_once_and_invalid_ones_fail_with_their_bytes(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = Deployment.new(kafka_bootstrap, tmp_path, partitions=2)
    for key, value in deployment.env.items():
        if key.startswith("REVSTREAM_"):
            monkeypatch.setenv(key, value)
    invalid = b'{"date": "2026-11-02", "channel": "display", "cost": -3}'
    spend = tmp_path / "spend.ndjson"
    spend.write_bytes(b"\n".join([*(orjson.dumps(r) for r in RECORDS), invalid, b""]))
    assert main(["spend", str(spend), "--kafka"]) == 0
    log = tmp_path / "worker.log"
    with worker(deployment, log) as proc:
        wait_drained(deployment, proc, log)
    with ClickHouseSink(dsn=deployment.dsn) as sink:
        stored = sink.query("SELECT day, channel, campaign, cost, currency FROM marketing_spend ORDER BY ALL")
        failed = sink.query("SELECT stage, error, raw, source FROM failed_events").result_rows
    assert [(str(d), ch, ca, cost, cur) for d, ch, ca, cost, cur in stored.result_rows] == [
        ("2026-11-01", "email", "nl", 10.0, "USD"),
        ("2026-11-01", "paid_search", "brand", 120.5, "USD"),
        ("2026-11-02", "paid_search", "brand", 99.0, "EUR"),
    ]
    assert len(failed) == 1
    stage, error, raw, source = failed[0]
    assert (stage, raw.encode() if isinstance(raw, str) else raw) == ("validate", invalid)
    assert error.startswith("invalid spend record: cost:")
    assert source.startswith(f"{deployment.prefix}.spend:")
