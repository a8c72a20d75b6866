"""The latency benchmark's windows: the p99 of the events sent in each window, in sending order."""

from __future__ import annotations

from benchmarks.pipeline import _window_p99


def test_a_stall_shows_in_its_own_window_only() -> None:
    steady = [(1000.0 * t / 100, 10.0 + t % 7) for t in range(2000)]  # 100 events/s for 20 s
    stalled = [(at, 500.0 if 7000 <= at < 7100 else latency) for at, latency in steady]
    assert _window_p99(steady, 5.0) == [16.0, 16.0, 16.0, 16.0]
    assert _window_p99(list(reversed(stalled)), 5.0) == [16.0, 500.0, 16.0, 16.0]  # arrival order does not matter
    assert _window_p99([], 5.0) == []
