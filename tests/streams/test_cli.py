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
