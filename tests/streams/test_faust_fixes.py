"""The two consumer fixes in :mod:`streams.faust_fixes`, driven without a broker."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from streams.faust_fixes import Consumer, FlowControl

TOPIC = TP("events.raw", 0)


def queue_with_one_message(flow: FlowControlEvent) -> FlowControlQueue:
    queue: FlowControlQueue = FlowControlQueue(maxsize=10, flow_control=flow, clear_on_resume=True)
    queue.put_nowait("fetched during the seek")
    return queue


def test_resuming_a_running_flow_keeps_the_queued_messages() -> None:
    async def run() -> tuple[int, int]:
        ours, faust_default = FlowControl(), FlowControlEvent()
        ours.resume()
        faust_default.resume()
        kept, dropped = queue_with_one_message(ours), queue_with_one_message(faust_default)
        ours.resume()
        faust_default.resume()
        return kept.qsize(), dropped.qsize()

    assert asyncio.run(run()) == (1, 0)  # Faust's own event drops the message; ours keeps it


def test_resuming_after_a_suspension_still_clears() -> None:
    async def run() -> int:
        flow = FlowControl()
        flow.resume()
        queue = queue_with_one_message(flow)
        flow.suspend()
        flow.resume()
        return queue.qsize()

    assert asyncio.run(run()) == 0


def consumer(committed: int | None, acked: list[int]) -> Consumer:
    c = Consumer.__new__(Consumer)  # only the offset bookkeeping is used
    c._acked = defaultdict(list, {TOPIC: list(acked)})
    c._acked_index = defaultdict(set, {TOPIC: set(acked)})
    c._gap = defaultdict(list)
    c._committed_offset = defaultdict(lambda: None, {TOPIC: committed})
    return c


def test_no_commit_past_an_unacknowledged_offset() -> None:
    assert consumer(2, [3, 4])._new_offset(TOPIC) is None  # 2 was never acknowledged
    assert consumer(2, [2, 3, 5])._new_offset(TOPIC) == 4
    assert consumer(None, [0, 1])._new_offset(TOPIC) == 2
    assert consumer(2, [])._new_offset(TOPIC) is None


class FakeThread:
    """Stands in for Faust's consumer thread: records what the consumer asks of aiokafka."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self.seeks: list[tuple[TP, int]] = []
        self.asked: set[TP] = set()
        self.live: set[TP] = set()

    async def getmany(self, active_partitions: set[TP], timeout: float) -> dict[TP, list[object]]:
        self.asked = active_partitions
        self.live.clear()  # recovery pauses the last active partition while the fetch waits
        return {}

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return self.committed

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_a_fetch_asks_for_the_partitions_active_when_it_started() -> None:
    c = consumer(None, [])
    active = {TOPIC}
    c._thread = thread = FakeThread({})
    thread.live = active
    asyncio.run(c._getmany(active, 1.0))
    assert thread.asked == {TOPIC}  # not the emptied set, which aiokafka reads as every partition


def test_partitions_without_a_committed_offset_are_read_from_the_start() -> None:
    never, zero, some, changelog = TP("privacy", 0), TP("people", 0), TP("events.raw", 1), TP("x-devices-changelog", 0)
    c = consumer(None, [])
    c.app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={changelog.topic}))
    c._thread = thread = FakeThread({never: None, zero: 0, some: 5, changelog: None})
    asyncio.run(c.seek_to_committed())
    assert sorted(thread.seeks) == [(zero, 0), (never, 0)]
