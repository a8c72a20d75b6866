"""The CLI in-process: clear one-line errors for bad flags, paths and DSNs; replay and sql on chDB."""

from __future__ import annotations

from pathlib import Path

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
