"""The worker's view of a Faust table in a batch: changelog per batch, and rollback of an unfinished batch."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from models.ingest import DeviceState, RowBuilder, Sessionizer
from schemas.records import FailedEvent
from streams.app import _TableWrites
from tests.conftest import segment


class FakeTable:
    """Faust's table as the wrapper uses it: ``data`` (the store) and the changelog topic's name. It is also
    the producer the changelog is sent through (``produce``), recording what reached its changelog."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "app-devices-changelog")
        self.sent: list[tuple[int, str, object]] = []

    def produce(self, topic: str, *, key: bytes, value: bytes | None, partition: int) -> None:
        assert topic == "app-devices-changelog"
        self.sent.append((partition, orjson.loads(key), value))  # keys as Faust's ``json`` codec reads them


def _sessionize(devices: _TableWrites[DeviceState], raw: bytes, source: str) -> object:
    from datetime import UTC, datetime

    row = RowBuilder()(raw, source=source, received_at=datetime(2026, 11, 1, tzinfo=UTC))
    assert not isinstance(row, FailedEvent)
    state, out = Sessionizer()(row, raw, devices.get(row.device_key))
    devices[row.device_key] = state
    return out


def test_an_unfinished_batch_is_rolled_back_and_replays_as_new() -> None:
    table = FakeTable()
    devices = _TableWrites(table, codec="revstream_device_state", revive=DeviceState.from_obj)
    first, second = segment(messageId="m1", anonymousId="d1"), segment(messageId="m2", anonymousId="d1")
    _sessionize(devices, first, "t:0:1")
    devices.end_batch()(table)  # batch 1 done: its changelog sent
    assert [key for _, key, _ in table.sent] == ["d1"]

    _sessionize(devices, second, "t:0:2")  # batch 2: changes d1 in place and creates d2 ...
    _sessionize(devices, segment(messageId="m3", anonymousId="d2"), "t:0:3")
    devices.rollback()  # ... and is cancelled before its effects
    assert set(table.data) == {"d1"}
    assert set(devices["d1"].seen) == {"m1"}
    devices.end_batch()(table)
    assert len(table.sent) == 1  # nothing of the rolled-back batch reaches the changelog

    again = _sessionize(devices, second, "t:0:2")  # the replay: new, not skipped as done
    assert again is not None
    assert set(devices["d1"].seen) == {"m1", "m2"}


def test_an_ended_batch_sends_its_own_states_and_is_rolled_back_until_it_is_sent() -> None:
    table = FakeTable()
    devices = _TableWrites(table, codec="revstream_device_state", revive=DeviceState.from_obj)
    _sessionize(devices, segment(messageId="m1", anonymousId="d1"), "t:0:1")
    send_first = devices.end_batch()  # batch 1 scored; its effects are in flight ...
    _sessionize(devices, segment(messageId="m2", anonymousId="d1"), "t:0:2")  # ... while batch 2 changes d1
    _sessionize(devices, segment(messageId="m3", anonymousId="d2"), "t:0:3")
    send_first(table)
    (_, key, value), *rest = table.sent
    assert (key, rest) == ("d1", [])
    assert isinstance(value, bytes)
    assert set(DeviceState.from_json(value).seen) == {"m1"}  # as batch 1 left it, not batch 2's state

    send_second = devices.end_batch()
    devices.rollback()  # cancelled before batch 2's effects: batch 1 stays, batch 2 is undone
    assert set(table.data) == {"d1"}
    assert set(devices["d1"].seen) == {"m1"}
    del send_second

    table = FakeTable()
    devices = _TableWrites(table, codec="revstream_device_state", revive=DeviceState.from_obj)
    _sessionize(devices, segment(messageId="m4", anonymousId="d3"), "t:0:4")
    devices.end_batch()  # never sent (its effects were cancelled) ...
    _sessionize(devices, segment(messageId="m5", anonymousId="d3"), "t:0:5")
    devices.rollback()  # ... so both batches are undone
    assert table.data == {}
    assert table.sent == []
