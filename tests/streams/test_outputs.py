"""The agents' output producer waits as long as their batches do (``REVSTREAM_LINGER_MS``)."""

from __future__ import annotations

import pytest

from streams.app import _Outputs
from streams.settings import load_settings


def test_the_output_producer_lingers_as_the_setting_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVSTREAM_LINGER_MS", "7")
    settings = load_settings()
    outputs = _Outputs(bootstrap="127.0.0.1:1", failed_topic="f", linger_ms=settings.linger_ms)
    assert outputs.producer().config["linger.ms"] == 7


def test_batches_and_the_producer_linger_1_ms_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REVSTREAM_LINGER_MS", raising=False)
    assert load_settings().linger_ms == 1
