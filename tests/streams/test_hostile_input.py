"""Property: whatever bytes arrive, the pipeline never raises and each input has exactly one outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.ingest import DeviceState
from schemas.records import EventRow, FailedEvent, Refused
from streams.pipeline import Pipeline
from streams.settings import Settings
from tests.conftest import segment

PIPELINE = Pipeline(Settings())
NOW = datetime(2026, 11, 1, 10, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ("type", "messageId", "anonymousId", "userId", "timestamp", "sentAt", "event", "properties", "context")


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    event: dict[str, Any] = orjson.loads(segment(messageId=draw(st.sampled_from(["m1", "m2", "m3"]))))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            event.pop(name, None)
        else:
            event[name] = draw(json_values)
    raw = orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS) if draw(st.booleans()) else segment()
    if draw(st.booleans()):  # flip, cut or pad bytes
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=8)) + raw[cut + draw(st.integers(0, 3)) :]
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_events(), min_size=1, max_size=8))
def test_every_input_has_exactly_one_outcome(inputs: list[bytes]) -> None:
    devices: dict[str, DeviceState] = {}
    outcomes = []
    for i, raw in enumerate(inputs):
        out, carried = PIPELINE.parse(raw, source=f"h:{i}", received_at=NOW)
        if isinstance(out, EventRow):
            out = PIPELINE.sessionize(out, carried, devices)
        assert isinstance(out, EventRow | FailedEvent | Refused)
        if isinstance(out, FailedEvent):
            assert out.raw == raw  # the original bytes, for a fix and a replay
        if isinstance(out, EventRow):
            orjson.loads(out.to_json())  # what is valid can be stored
        outcomes.append(out)
    assert len(outcomes) == len(inputs)
