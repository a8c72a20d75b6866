from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from models.ingest import DeviceState, RowBuilder, Sessionizer
from schemas import EventRow, FailedEvent
from tests.conftest import segment

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(raw: bytes, source: str = "f:1") -> EventRow:
    row = RowBuilder()(raw, source=source, received_at=NOW)
    assert isinstance(row, EventRow)
    return row


def test_row_flattens_context_and_order() -> None:
    raw = segment(
        type="track",
        event="Order Completed",
        userId="u1",
        properties={"order_id": "o9", "total": 50, "tax": 5, "extra": [1]},
        context={
            "ip": "198.51.100.1",
            "userAgent": "UA",
            "locale": "de-DE",
            "campaign": {"source": "newsletter", "medium": "email", "name": "bf"},
            "page": {"url": "https://s/x", "path": "/x", "referrer": "", "title": "X"},
            "device": {"type": "mobile"},
            "os": {"name": "iOS"},
            "consent": {"categoryPreferences": {"analytics": True, "marketing": False}},
        },
    )
    row = build(raw)
    assert (row.event, row.user_id, row.person_id, row.order_id, row.revenue, row.currency) == (
        "Order Completed", "u1", "u1", "o9", 45.0, "USD",
    )  # fmt: skip
    assert (row.utm_medium, row.campaign, row.device_type, row.os_name, row.locale) == (
        "email", "bf", "mobile", "iOS", "de-DE",
    )  # fmt: skip
    assert row.consent == {"analytics": True, "marketing": False}
    assert orjson.loads(row.properties)["extra"] == [1]
    assert row.received_at == datetime(2026, 11, 1, 10, 0, 1, tzinfo=UTC)  # the event's own receivedAt wins


def test_received_at_is_stamped_when_absent_and_skew_corrected() -> None:
    raw = segment(receivedAt=None, timestamp="2026-11-01T11:00:00.000Z", sentAt="2026-11-01T11:00:10.000Z")
    row = build(raw)
    assert row.received_at == NOW
    assert row.event_at == NOW - timedelta(seconds=10)


def test_failures_keep_bytes_stage_and_message_id() -> None:
    raw = segment(messageId="keep-me", timestamp="yesterday")
    out = RowBuilder()(raw, source="f:7", received_at=NOW)
    assert isinstance(out, FailedEvent)
    assert (out.stage, out.message_id, out.raw, out.source) == ("validate", "keep-me", raw, "f:7")


def test_sessions_split_on_inactivity_and_late_events_rejoin() -> None:
    sessionize = Sessionizer(session_gap=timedelta(minutes=30))
    state = None
    times = [0, 10, 35, 80, 105]  # minutes: sessions [0, 10, 35] and [80, 105]
    ids = []
    for n, minute in enumerate(times):
        raw = segment(messageId=f"m{n}", timestamp=iso(NOW + timedelta(minutes=minute)), sentAt=None)
        state, out = sessionize(build(raw, f"f:{n}"), raw, state)
        assert isinstance(out, EventRow)
        ids.append(out.session_id)
    assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4]
    late = segment(messageId="late", timestamp=iso(NOW + timedelta(minutes=20)), sentAt=None)
    state, out = sessionize(build(late, "f:9"), late, state)
    assert isinstance(out, EventRow)
    assert out.session_id == ids[0]


def test_duplicates_fail_but_replays_of_the_same_input_are_already_done() -> None:
    sessionize = Sessionizer()
    raw = segment(messageId="dup")
    state, first = sessionize(build(raw, "t:0:5"), raw, None)
    state, replay = sessionize(build(raw, "t:0:5"), raw, state)
    state, duplicate = sessionize(build(raw, "t:0:6"), raw, state)
    assert isinstance(first, EventRow)
    assert replay is None
    assert isinstance(duplicate, FailedEvent)
    assert (duplicate.stage, duplicate.raw) == ("dedupe", raw)


def test_dedupe_memory_expires_after_the_window() -> None:
    sessionize = Sessionizer(dedupe_window=timedelta(days=1))
    state = None
    for day in range(5):
        raw = segment(messageId=f"m{day}", timestamp=iso(NOW + timedelta(days=day)), sentAt=None)
        state, _ = sessionize(build(raw), raw, state)
    assert state is not None
    assert list(state.seen) == ["m3", "m4"]


def test_session_channel_comes_from_the_landing_event() -> None:
    sessionize = Sessionizer()
    land = segment(messageId="a", context={"campaign": {"source": "google", "medium": "cpc", "name": "brand"}})
    state, first = sessionize(build(land), land, None)
    follow = segment(messageId="b", timestamp="2026-11-01T10:05:00.000Z")
    state, second = sessionize(build(follow, "f:2"), follow, state)
    assert isinstance(first, EventRow)
    assert isinstance(second, EventRow)
    assert (first.channel, second.channel, second.campaign) == ("paid_search", "paid_search", "brand")


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 24 * 60)), min_size=1, max_size=40))
def test_state_survives_a_changelog_round_trip(events: list[tuple[int, int]]) -> None:
    """Processing with a state that went through JSON (a Faust changelog) gives the same rows."""
    sessionize = Sessionizer()
    direct: DeviceState | None = None
    restored: DeviceState | None = None
    for n, (mid, minute) in enumerate(events):
        raw = segment(messageId=f"m{mid}", timestamp=iso(NOW + timedelta(minutes=minute)), sentAt=None)
        direct, a = sessionize(build(raw, f"f:{n}"), raw, direct)
        restored = DeviceState.from_json(restored.to_json()) if restored is not None else None
        restored, b = sessionize(build(raw, f"f:{n}"), raw, restored)
        assert a == b
    assert restored == direct
    assert pickle.loads(pickle.dumps(direct)) == direct
