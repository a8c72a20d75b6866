"""The journey views on the real ClickHouse engine: funnel, transitions, drop-off and the bottleneck."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from sinks import ClickHouseSink
from streams.cli import main
from streams.embedded import EmbeddedRunner, ndjson_lines
from streams.pipeline import Pipeline
from streams.settings import Settings
from tests.conftest import segment

STEPS = ("Product Viewed", "Product Added", "Checkout Started")


def _session(device: str, anonymous_id: str, start: datetime, *, orders: bool) -> list[bytes]:
    """A landing page, then product, cart and checkout, and an order when ``orders``: one minute apart."""
    context = {"device": {"type": device}, "page": {"url": "https://shop.example/", "path": "/"}}
    names = [*STEPS, "Order Completed"] if orders else list(STEPS)
    lines = [segment(anonymousId=anonymous_id, context=context, **_times(start))]
    for minute, name in enumerate(names, start=1):
        props = {"order_id": f"o-{anonymous_id}", "revenue": 20.0} if name == "Order Completed" else {}
        lines.append(
            segment(type="track", event=name, properties=props, anonymousId=anonymous_id, context=context,
                    **_times(start + timedelta(minutes=minute)))
        )  # fmt: skip
    return lines


def _times(at: datetime) -> dict[str, str]:
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"timestamp": stamp, "sentAt": stamp, "receivedAt": stamp}


def _load(dsn: str, lines: list[bytes]) -> None:
    with ClickHouseSink(dsn=dsn) as sink:
        sink.migrate()
        EmbeddedRunner(pipeline=Pipeline(Settings()), sink=sink).run(ndjson_lines(io.BytesIO(b"\n".join(lines)), "j"))


def test_a_collapsed_step_is_the_bottleneck_of_its_segment_and_only_there(
    warehouse_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seven days of 2 orders in 4 checkouts on mobile and desktop, then a day where mobile checkouts all fail."""
    lines: list[bytes] = []
    for day in range(1, 9):
        for device in ("mobile", "desktop"):
            for i in range(4):
                start = datetime(2026, 11, day, 9 + i, tzinfo=UTC)
                converts = i < 2 and not (day == 8 and device == "mobile")
                lines += _session(device, f"{device}-{day}-{i}", start, orders=converts)
    _load(warehouse_dsn, lines)
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        steps = sink.query(
            "SELECT device_type, step, entered, continued, drop_off, baseline_drop_off, lost_sessions, is_bottleneck"
            " FROM journey_steps WHERE day = '2026-11-08' AND channel = 'all' ORDER BY device_type, step_index"
        ).result_rows
        transitions = dict(sink.query(
            "SELECT (from_step, to_step), sessions FROM journey_transitions"
            " WHERE day = '2026-11-08' AND device_type = 'mobile' AND channel = 'direct'"
        ).result_rows)  # fmt: skip
        funnel = sink.query(
            "SELECT sessions, product, cart, checkout, orders FROM journey_funnel"
            " WHERE day = '2026-11-07' AND device_type = 'all' AND channel = 'all'"
        ).result_rows
    by_segment = {(device, step): rest for device, step, *rest in steps}
    assert by_segment["mobile", "checkout"] == [4, 0, 1.0, 0.5, 2.0, True]
    assert by_segment["all", "checkout"] == [8, 2, 0.75, 0.5, 2.0, True]
    assert by_segment["desktop", "checkout"] == [4, 2, 0.5, 0.5, 0.0, False]
    bottlenecks = {(device, step) for (device, step), rest in by_segment.items() if rest[-1]}
    assert bottlenecks == {("mobile", "checkout"), ("all", "checkout")}
    assert transitions == {
        ("landing", "product"): 4,
        ("product", "cart"): 4,
        ("cart", "checkout"): 4,
        ("checkout", "exit"): 4,
    }
    assert funnel == [(8, 8, 8, 8, 4)]
    assert main(["journeys", "--dsn", warehouse_dsn, "--device", "mobile"]) == 0  # the latest day: 2026-11-08
    printed = [line for line in capsys.readouterr().out.splitlines() if "bottleneck" in line]
    assert len(printed) == 1
    assert printed[0].split()[1] == "checkout"


def test_funnel_and_transitions_agree_with_the_events_on_simulated_traffic(warehouse_dsn: str) -> None:
    """An independent count in Python of each session's path, from the stored events."""
    from models.simulator import SimulationConfig, simulate

    _load(warehouse_dsn, list(simulate(SimulationConfig(users=200, days=6, seed=8)).collected_events()))
    codes = {"Product Viewed": 2, "Product Added": 3, "Checkout Started": 4, "Order Completed": 5}
    names = {1: "landing", 2: "product", 3: "cart", 4: "checkout", 5: "order", 0: "exit"}
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        rows = sink.query("SELECT session_id, event_at, event FROM events ORDER BY session_id, event_at").result_rows
        funnel = sink.query(
            "SELECT sum(sessions), sum(product), sum(cart), sum(checkout), sum(orders) FROM journey_funnel"
            " WHERE device_type = 'all' AND channel = 'all'"
        ).result_rows[0]
        transitions = dict(sink.query(
            "SELECT (from_step, to_step), sum(sessions) FROM journey_transitions"
            " WHERE device_type = 'all' AND channel = 'all' GROUP BY from_step, to_step"
        ).result_rows)  # fmt: skip
    paths: dict[str, list[int]] = {}
    for session, _, event in sorted(rows, key=lambda r: (r[0], r[1], codes.get(r[2], 0))):
        path = paths.setdefault(session, [1])
        code = codes.get(event, 0)
        if code and path[-1] != code:
            path.append(code)
    deepest = Counter(max(p) for p in paths.values())
    reached = [sum(n for d, n in deepest.items() if d >= k) for k in range(1, 6)]
    want: Counter[tuple[str, str]] = Counter()
    for path in paths.values():
        for a, b in zip(path, [*path[1:], 0], strict=True):
            want[names[a], names[b]] += 1
    assert list(funnel) == reached
    assert reached[4] > 0  # some sessions ordered: the whole funnel is exercised
    assert transitions == dict(want)
