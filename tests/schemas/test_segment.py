from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import MAX_EVENT_BYTES, EventError, IdentifyEvent, TrackEvent, parse_batch, parse_event
from tests.conftest import segment

ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
# hypothesis takes naive bounds and attaches the zone itself
stamps = st.datetimes(
    min_value=datetime(2001, 1, 1),  # noqa: DTZ001
    max_value=datetime(2099, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(
    message_id=ids, anonymous_id=ids, name=ids, at=stamps, extra=st.dictionaries(ids, st.integers(-(2**63), 2**63 - 1))
)
def test_track_round_trips_and_keeps_unknown_properties(
    message_id: str, anonymous_id: str, name: str, at: datetime, extra: dict[str, int]
) -> None:
    raw = orjson.dumps(
        {
            "type": "track",
            "event": name,
            "messageId": message_id,
            "anonymousId": anonymous_id,
            "timestamp": iso(at),
            "properties": extra,
            "futureField": {"kept": True},
        }
    )
    event = parse_event(raw)
    assert isinstance(event, TrackEvent)
    assert (event.message_id, event.anonymous_id, event.event, event.timestamp) == (message_id, anonymous_id, name, at)
    assert event.properties == extra
    assert event.model_extra == {"futureField": {"kept": True}}
    again = parse_event(event.model_dump_json(by_alias=True, exclude_none=True))
    assert again == event


@given(at=stamps, skew=st.integers(-86_400_000, 86_400_000), transit=st.integers(0, 60_000))
def test_clock_skew_is_corrected_as_segment_does(at: datetime, skew: int, transit: int) -> None:
    client = at + timedelta(milliseconds=skew)
    sent = client + timedelta(milliseconds=transit)
    received = at + timedelta(milliseconds=transit)
    event = parse_event(segment(timestamp=iso(client), sentAt=iso(sent)))
    assert event.event_at(received) == at


@pytest.mark.parametrize(
    ("raw", "stage", "fragment"),
    [
        (b"{not json", "parse", "not valid JSON"),
        (b"\xff\xfe", "parse", "not valid JSON"),
        (b"[1, 2]", "validate", "JSON object"),
        (segment(type="teleport"), "validate", "type"),
        (segment(messageId=None), "validate", "messageId"),
        (segment(anonymousId=None), "validate", "anonymousId or userId"),
        (segment(timestamp=12), "validate", "ISO 8601"),
        (segment(timestamp="1970-01-01T00:00:00Z"), "validate", "outside 2000-2100"),
        (segment(type="track", event="Order Completed", properties={"order_id": "o", "revenue": "abc"}),
         "validate", "properties.revenue"),
        (segment(type="track", event="Order Completed", properties={"revenue": 5}), "validate", "order_id"),
        (segment(type="track", event="Order Completed", properties={"order_id": "o"}), "validate", "revenue or total"),
        (segment(type="track", event="Product Added", properties={"price": 1e300}), "validate", "price"),
        (segment(context={"padding": "x" * MAX_EVENT_BYTES}), "size", "32 KB"),
    ],
)  # fmt: skip
def test_invalid_events_name_stage_and_cause(raw: bytes, stage: str, fragment: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(raw)
    assert info.value.stage == stage
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_either_parse_or_raise_event_error(raw: bytes) -> None:
    stage = None
    try:
        parse_event(raw)
    except EventError as e:
        stage = e.stage
    assert stage in {None, "parse", "validate"}


def test_order_revenue_is_normalised() -> None:
    with_total = parse_event(
        segment(
            type="track",
            event="Order Completed",
            properties={"order_id": 12, "total": 110, "shipping": 7.5, "tax": 2.5},
        )
    )
    assert isinstance(with_total, TrackEvent)
    commerce = with_total.commerce
    assert commerce is not None
    assert (commerce.order_id, commerce.normalised_revenue, commerce.normalised_currency) == ("12", 100.0, "USD")  # type: ignore[attr-defined]
    explicit = parse_event(
        segment(type="track", event="Order Completed", properties={"order_id": "a", "revenue": 9, "currency": "eur"})
    )
    assert explicit.commerce.normalised_revenue == 9  # type: ignore[union-attr]
    assert explicit.commerce.normalised_currency == "EUR"  # type: ignore[union-attr]


def test_identify_alias_group_screen_parse() -> None:
    identify = parse_event(segment(type="identify", userId="u1", traits={"email": "a@b.c"}))
    assert isinstance(identify, IdentifyEvent)
    assert identify.traits == {"email": "a@b.c"}
    assert parse_event(segment(type="alias", previousId="device-1", userId="u1")).type == "alias"
    assert parse_event(segment(type="group", groupId="g1")).type == "group"
    assert parse_event(segment(type="screen", name="Home")).type == "screen"
    with pytest.raises(EventError, match="previousId"):
        parse_event(segment(type="alias", userId="u1"))


def test_batch_limit_and_shape() -> None:
    assert len(parse_batch(orjson.dumps({"batch": [{"type": "page"}] * 3}))) == 3
    with pytest.raises(EventError, match="500 KB") as info:
        parse_batch(b'{"batch": [' + b'{"a": 1},' * 60_000 + b"{}]}")
    assert info.value.stage == "size"
    with pytest.raises(EventError, match='"batch" array'):
        parse_batch(b'{"events": []}')
