"""DeviceFeatures: every snapshot key on hand-built sessions, history windows, late events, JSON state."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models.scoring.features import NO_HISTORY_DAYS, NUMERIC_FEATURES, DeviceFeatures
from models.scoring.propensity import PropensityModel
from schemas.records import EXAMPLE_ROW, EventRow
from schemas.scores import FEATURE_COLUMNS

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def make_row(
    event: str = "",
    *,
    at: datetime = T0,
    session: str = "s1",
    type_: str | None = None,
    props: dict[str, Any] | None = None,
    **fields: Any,
) -> EventRow:
    """A valid sessionised row: a page call when ``event`` is empty, else a track call."""
    return replace(
        EXAMPLE_ROW,
        message_id=f"{session}-{event}-{at.isoformat()}",
        type=type_ or ("track" if event else "page"),
        event=event,
        session_id=session,
        event_at=at,
        order_id="",
        revenue=None,
        properties=orjson.dumps(props or {}).decode(),
        **fields,
    )


def test_every_session_key_on_a_hand_built_session() -> None:
    device = DeviceFeatures()
    steps = [
        (0, make_row()),
        (5, make_row("Product List Viewed")),
        (20, make_row(type_="page")),
        (21, make_row("Product Viewed")),
        (30, make_row("Scroll Depth Reached", props={"depth": 50})),
        (35, make_row("Scroll Depth Reached", props={"depth": 25})),
        (40, make_row("Product Added", props={"price": 20.0, "quantity": 2})),
        (45, make_row("Product Added", props={"price": 5.0})),
        (50, make_row("Product Removed", props={"price": 5.0, "quantity": 1})),
        (55, make_row("Products Searched", props={"query": "tent"})),
        (60, make_row("Element Clicked")),
        (61, make_row("Rage Click")),
        (62, make_row("Dead Click")),
        (63, make_row("JS Error")),
        (70, make_row("Page Engagement", props={"engagement_time_ms": 12_500})),
        (80, make_row("Checkout Started")),
        (90, make_row("Checkout Failed")),
        (120, make_row("Page Engagement", props={"engagement_time_ms": 2_500})),
    ]
    snap: dict[str, float] = {}
    for seconds, row in steps:
        snap = device.update(replace(row, event_at=T0 + timedelta(seconds=seconds)))
    expected = {
        "events": 18.0,
        "page_views": 2.0,
        "product_views": 1.0,
        "product_list_views": 1.0,
        "cart_adds": 2.0,
        "cart_removes": 1.0,
        "cart_value": 40.0,
        "checkout_starts": 1.0,
        "checkout_failures": 1.0,
        "searches": 1.0,
        "dwell_seconds": 120.0,
        "engaged_seconds": 15.0,
        "max_scroll_depth": 50.0,
        "clicks": 1.0,
        "rage_clicks": 1.0,
        "dead_clicks": 1.0,
        "errors": 1.0,
        "events_per_minute": 9.0,
        "seconds_since_last_event": 30.0,
        "visits_1h": 0.0,
        "visits_7d": 0.0,
        "visits_30d": 0.0,
        "orders_30d": 0.0,
        "orders_total": 0.0,
        "days_since_last_order": NO_HISTORY_DAYS,
        "days_since_last_visit": NO_HISTORY_DAYS,
        "cart_abandons_7d": 0.0,
        "channel=email": 1.0,
        "device=desktop": 1.0,
    }
    assert snap == expected
    assert all(isinstance(v, float) for v in snap.values())


def test_first_event_of_a_session() -> None:
    snap = DeviceFeatures().update(make_row(device_type="", channel="direct"))
    assert snap["events"] == 1.0
    assert snap["dwell_seconds"] == snap["seconds_since_last_event"] == 0.0
    assert snap["events_per_minute"] == 1.0  # at least one minute of dwell in the denominator
    assert snap["channel=direct"] == snap["device=unknown"] == 1.0
    assert set(snap) == {*NUMERIC_FEATURES, "channel=direct", "device=unknown"}


def test_history_windows_count_sessions_and_orders_before_this_session() -> None:
    device = DeviceFeatures()
    device.update(make_row(at=T0, session="a"))
    device.update(make_row("Product Added", at=T0 + timedelta(minutes=1), session="a", props={"price": 10}))
    bought = device.update(make_row("Order Completed", at=T0 + timedelta(minutes=5), session="a"))
    assert bought["orders_total"] == 0.0  # history is before the session: the order shows up next time
    b = device.update(make_row(at=T0 + timedelta(minutes=50), session="b"))
    assert (b["visits_1h"], b["visits_7d"], b["visits_30d"]) == (1.0, 1.0, 1.0)
    assert (b["orders_30d"], b["orders_total"]) == (1.0, 1.0)
    assert b["days_since_last_order"] == pytest.approx(45 / 1440)
    assert b["days_since_last_visit"] == pytest.approx(45 / 1440)
    assert b["cart_abandons_7d"] == 0.0  # session a added to the cart and ordered
    device.update(make_row("Product Added", at=T0 + timedelta(minutes=52), session="b", props={"price": 10}))
    c = device.update(make_row(at=T0 + timedelta(days=3), session="c"))
    assert (c["visits_1h"], c["visits_7d"], c["visits_30d"]) == (0.0, 2.0, 2.0)
    assert c["cart_abandons_7d"] == 1.0  # session b added and did not order
    assert c["days_since_last_order"] == pytest.approx(3 - 5 / 1440)
    d = device.update(make_row(at=T0 + timedelta(days=32), session="d"))
    assert (d["visits_7d"], d["visits_30d"], d["orders_30d"], d["orders_total"]) == (0.0, 1.0, 0.0, 1.0)
    assert d["cart_abandons_7d"] == 0.0
    assert d["days_since_last_visit"] == pytest.approx(29.0)


def test_history_is_bounded() -> None:
    device = DeviceFeatures(max_history=4)
    for i in range(10):
        snap = device.update(make_row(at=T0 + timedelta(hours=i), session=f"s{i}"))
    assert snap["visits_30d"] == 4.0
    assert len(device.visit_ms) <= 4


def test_late_event_of_an_earlier_session_changes_nothing() -> None:
    device = DeviceFeatures()
    device.update(make_row(at=T0, session="a"))
    current = device.update(make_row(at=T0 + timedelta(hours=2), session="b"))
    state = device.to_json()
    assert device.update(make_row("Product Added", at=T0 + timedelta(minutes=3), session="a")) == {}
    assert device.to_json() == state
    again = device.update(make_row(at=T0 + timedelta(hours=2, seconds=10), session="b"))
    assert again["events"] == current["events"] + 1


def test_out_of_order_event_within_the_session_moves_its_start() -> None:
    device = DeviceFeatures()
    device.update(make_row(at=T0 + timedelta(seconds=30)))
    snap = device.update(make_row("Product Viewed", at=T0))
    assert snap["dwell_seconds"] == 30.0
    assert snap["seconds_since_last_event"] == 0.0


@pytest.mark.parametrize("properties", ["not json", "[1, 2]", '{"price": "abc", "quantity": true}', "{}"])
def test_bad_properties_count_as_zero(properties: str) -> None:
    device = DeviceFeatures()
    row = replace(make_row("Product Added"), properties=properties)
    snap = device.update(row)
    assert (snap["cart_adds"], snap["cart_value"]) == (1.0, 0.0)
    assert device.update(replace(make_row("Page Engagement"), properties=properties))["engaged_seconds"] == 0.0


def test_update_never_mutates_the_row() -> None:
    device = DeviceFeatures()
    for row in (make_row(), make_row("Product Added", props={"price": 3, "quantity": 2}), make_row("Order Completed")):
        before = copy.deepcopy(row)
        device.update(row)
        assert row == before


def test_json_round_trip_resumes_exactly() -> None:
    rows = [
        make_row(at=T0, session="a"),
        make_row("Order Completed", at=T0 + timedelta(minutes=2), session="a"),
        make_row(at=T0 + timedelta(hours=3), session="b"),
        make_row("Product Added", at=T0 + timedelta(hours=3, minutes=1), session="b", props={"price": 9.5}),
        make_row("Scroll Depth Reached", at=T0 + timedelta(hours=3, minutes=2), session="b", props={"depth": 75}),
    ]
    later = [
        make_row("Product Removed", at=T0 + timedelta(hours=3, minutes=3), session="b", props={"price": 9.5}),
        make_row(at=T0 + timedelta(days=1), session="c"),
    ]
    original = DeviceFeatures()
    for row in rows:
        original.update(row)
    restored = DeviceFeatures.from_json(original.to_json())
    assert restored.to_json() == original.to_json()
    for row in later:
        assert restored.update(row) == original.update(row)
    assert orjson.loads(restored.to_json()) == orjson.loads(original.to_json())


def test_numeric_features_are_the_sessions_columns() -> None:
    assert FEATURE_COLUMNS == NUMERIC_FEATURES
    assert len(set(NUMERIC_FEATURES)) == len(NUMERIC_FEATURES)


_PROPERTY_EVENTS = ["Page Engagement", "Scroll Depth Reached", "Product Added"]
HOSTILE = st.one_of(
    st.sampled_from([1e308, -1e308, 1.7e308, 1e13, 1e30, -1, "1e308", None]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**18), max_value=10**18),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PROPERTY_EVENTS), HOSTILE), max_size=8))
@example([("Page Engagement", 1e308), ("Page Engagement", 1e308)])  # this once made an infinite engaged time
def test_absurd_property_numbers_leave_every_feature_finite(events: list[tuple[str, object]]) -> None:
    device, model = DeviceFeatures(), PropensityModel()
    key = {"Page Engagement": "engagement_time_ms", "Scroll Depth Reached": "depth", "Product Added": "price"}
    snapshot = device.update(make_row())
    for i, (event, value) in enumerate(events):
        snapshot = device.update(make_row(event, at=T0 + timedelta(seconds=i + 1), props={key[event]: value}))
        assert all(math.isfinite(v) for v in snapshot.values()), snapshot
        model.learn_one(snapshot, i % 2 == 0)
    assert 0.0 < model.predict_proba_one(snapshot)[True] < 1.0  # a non-finite input would have made it NaN
