"""The CLI in-process: clear one-line errors for bad flags, paths and DSNs; replay and sql on chDB."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from streams.cli import main
from tests.conftest import segment


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["replay", "/no/such/file.ndjson"], 1, "no such file: /no/such/file.ndjson"),
        (["replay", "/"], 1, "not a file: /"),
        (["demo", "--users", "many"], 2, "argument --users: expected a whole number"),
        (["demo", "--malformed-rate", "2"], 2, "expected a number between 0 and 1"),
        (["simulate", "--out", "/no/dir/x.ndjson"], 1, "--out: directory does not exist"),
        (["sql", "SELECT 1", "--dsn", "ftp://x"], 1, "unsupported ClickHouse DSN"),
        (["journeys", "--day", "yesterday"], 2, "argument --day: expected a date as YYYY-MM-DD"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        ([], 2, "the following arguments are required: COMMAND"),
    ],
)
def test_user_errors_are_one_line(
    argv: list[str], code: int, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        result = main(argv)
    except SystemExit as e:
        result = int(e.code or 0)
    err = capsys.readouterr().err
    assert result == code
    assert fragment in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_invalid_environment_setting_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REVSTREAM_PARTITIONS", "zero")
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert "invalid setting partitions (REVSTREAM_PARTITIONS)" in err
    assert err.count("\n") == 1


def test_replay_then_sql(tmp_path: Path, warehouse_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join([segment(messageId="a"), segment(messageId="b"), b"oops"]) + b"\n")
    assert main(["replay", str(data), "--dsn", warehouse_dsn, "--log-level", "WARNING"]) == 0
    assert "3 events: 2 valid, 1 failed (parse 1)" in capsys.readouterr().out
    assert main(["sql", "SELECT message_id FROM events ORDER BY 1", "--dsn", warehouse_dsn, "--format", "tsv"]) == 0
    assert capsys.readouterr().out == "message_id\na\nb\n"
    assert main(["sql", "SELECT nope FROM events", "--dsn", warehouse_dsn]) == 1
    assert "query failed: Code: 47" in capsys.readouterr().err


def test_train_fits_a_challenger_that_the_next_run_scores_with(
    tmp_path: Path, warehouse_dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.simulator import SimulationConfig, simulate

    monkeypatch.setenv("REVSTREAM_DATA_DIR", str(tmp_path / "data"))
    first, second = tmp_path / "first.ndjson", tmp_path / "second.ndjson"
    for path, seed in ((first, 1), (second, 2)):
        path.write_bytes(b"\n".join(simulate(SimulationConfig(users=300, days=14, seed=seed)).collected_events()))
    assert main(["train", "--dsn", warehouse_dsn]) == 1
    assert "not enough history to train: 0 labelled sessions" in capsys.readouterr().err

    assert main(["replay", str(first), "--dsn", warehouse_dsn]) == 0
    capsys.readouterr()
    assert main(["train", "--dsn", warehouse_dsn, "--min-sessions", "100", "--rounds", "50"]) == 0
    out = capsys.readouterr().out
    assert "challenger xgb-" in out
    assert (tmp_path / "data" / "challenger.ubj").exists()

    assert main(["replay", str(second), "--dsn", warehouse_dsn]) == 0
    query = "SELECT model, count() FROM scores WHERE startsWith(message_id, '') GROUP BY model ORDER BY model"
    assert main(["sql", query, "--dsn", warehouse_dsn, "--format", "tsv"]) == 0
    models = dict(line.split("\t") for line in capsys.readouterr().out.splitlines()[-2:])
    assert int(models["propensity_xgb"]) > 0  # the A/B share of sessions got the challenger's score
    assert int(models["propensity_online"]) > 5 * int(models["propensity_xgb"])


@pytest.mark.integration
def test_spend_and_budget(
    tmp_path: Path,
    warehouse_dsn: str,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from models.channels import CHANNELS
    from models.simulator import SimulationConfig, simulate

    sim = simulate(SimulationConfig(users=600, days=21, seed=4))
    events, spend = tmp_path / "events.ndjson", tmp_path / "spend.ndjson"
    events.write_bytes(b"\n".join(sim.collected_events()))
    spend.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in sim.spend()) + b'{"date": "2026-11-02"}\n')
    assert main(["replay", str(events), "--dsn", warehouse_dsn]) == 0
    capsys.readouterr()
    assert main(["spend", str(spend), "--dsn", warehouse_dsn]) == 1  # one invalid line, named; the rest load
    captured = capsys.readouterr()
    assert f"spend.ndjson:{len(sim.spend()) + 1}: channel: Field required" in captured.err
    assert f"{len(sim.spend())} spend records loaded, 1 invalid" in captured.out
    assert main(["spend", str(spend), "--dsn", warehouse_dsn]) == 1  # again: nothing twice
    capsys.readouterr()
    query = "SELECT count(), round(sum(cost), 2) FROM marketing_spend"
    assert main(["sql", query, "--dsn", warehouse_dsn, "--format", "tsv"]) == 0
    count, total = capsys.readouterr().out.splitlines()[1].split("\t")
    assert int(count) == len(sim.spend())
    assert float(total) == pytest.approx(sum(r["cost"] for r in sim.spend()), abs=0.05)

    last_day = max(r["date"] for r in sim.spend())
    today = {c: sum(r["cost"] for r in sim.spend() if r["date"] == last_day and r["channel"] == c) for c in CHANNELS}
    today = {c: v for c, v in today.items() if v > 0}
    pinned = sorted(today)[0]
    total = round(sum(today.values()) * 1.1, 2)
    argv = ["budget", "--total", str(total), "--max-change", "0.3", "--set", f"{pinned}=5", "--dsn", warehouse_dsn]
    assert main(argv) == 0
    assert "predicted revenue" in capsys.readouterr().out
    query = "SELECT channel, current_spend, recommended_spend FROM budget_recommendations FINAL"
    assert main(["sql", query, "--dsn", warehouse_dsn, "--format", "json"]) == 0
    recs = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(r["recommended_spend"] for r in recs) == pytest.approx(total, abs=0.05)
    for rec in recs:
        if rec["channel"] == pinned:
            assert rec["recommended_spend"] == pytest.approx(5)  # the override, exactly
        else:
            assert abs(rec["recommended_spend"] - rec["current_spend"]) <= 0.3 * rec["current_spend"] + 0.01

    prefix = f"cli{uuid.uuid4().hex[:8]}"  # --publish: the same plan, one record per channel, keyed by channel
    monkeypatch.setenv("REVSTREAM_BROKERS", kafka_bootstrap)
    monkeypatch.setenv("REVSTREAM_TOPIC_PREFIX", prefix)
    assert main([*argv, "--publish"]) == 0
    assert f"{len(recs)} recommendations sent to {prefix}.budget" in capsys.readouterr().out
    published = _consume(kafka_bootstrap, f"{prefix}.budget", len(recs))
    assert sorted(key for key, _ in published) == sorted(r["channel"] for r in recs)
    for key, value in published:
        record = orjson.loads(value)
        assert record["channel"] == key
        assert record["recommended_spend"] == pytest.approx(
            next(r for r in recs if r["channel"] == key)["recommended_spend"]
        )

    with pytest.raises(SystemExit) as exit_info:
        main(["budget", "--total", "-5", "--dsn", warehouse_dsn])
    assert exit_info.value.code == 2
    assert "expected an amount between 0 and 1e12" in capsys.readouterr().err


def _consume(bootstrap: str, topic: str, n: int) -> list[tuple[str, bytes]]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list[tuple[str, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(out) < n and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                out.append((message.key().decode(), message.value()))
    finally:
        consumer.close()
    return out
