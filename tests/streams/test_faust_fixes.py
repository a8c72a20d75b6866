"""The fixes in :mod:`streams.faust_fixes`, driven without a broker."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
from collections import defaultdict
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP
from mode.utils.locks import Event as MEvent
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from streams.faust_fixes import Consumer, FlowControl, Worker

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


def waiting_consumer() -> Consumer:
    c = Consumer.__new__(Consumer)  # only the service's stop/crash events are used by wait_first
    c._stopped = MEvent()
    c._crashed = MEvent()
    c._loop = asyncio.get_running_loop()
    return c


def test_a_delivery_to_a_queue_with_room_runs_without_tasks() -> None:
    async def run() -> tuple[Any, int, int]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        created = 0

        def count(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
            nonlocal created
            created += 1
            return asyncio.Task(coro, loop=loop)

        asyncio.get_running_loop().set_task_factory(count)
        suspended = asyncio.Event()
        result = await waiting_consumer().wait_first(queue.put("message"), suspended.wait())
        return result, queue.qsize(), created

    (_, results, stopped), queued, tasks = asyncio.run(run())
    assert (results, stopped, queued, tasks) == ([None], False, 1, 0)


def test_a_blocked_delivery_gives_way_to_a_suspension_and_finishes_when_there_is_room() -> None:
    async def run() -> tuple[bool, list[str], bool, str]:
        loop = asyncio.get_running_loop()
        consumer = waiting_consumer()
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        queue.put_nowait("queued before")
        suspended = asyncio.Event()
        loop.call_later(0.05, suspended.set)
        suspension = suspended.wait()
        first = await consumer.wait_first(queue.put("blocked"), suspension)
        held = [queue.get_nowait()]  # the blocked put was cancelled: only what was there before
        queue.put_nowait("queued before")
        loop.call_later(0.05, queue.get_nowait)  # room, while the next delivery waits
        second = await consumer.wait_first(queue.put("delivered"), asyncio.Event().wait())
        return first.done == [suspension], held, second.stopped, queue.get_nowait()

    assert asyncio.run(run()) == (True, ["queued before"], False, "delivered")


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_quiet_worker_keeps_the_root_logger_at_its_level(root_logger: logging.Logger) -> None:
    def root_level_after_setup(worker_class: type[faust.Worker]) -> int:
        app = faust.App("log-level-test", broker="memory://", store="memory://", web_enabled=False)
        loop = asyncio.new_event_loop()
        try:
            worker = worker_class(
                app, loglevel="warning", quiet=True, redirect_stdouts=False, loop=loop, stdout=io.StringIO()
            )
            worker._setup_logging()
        finally:
            loop.close()
        return root_logger.level

    assert root_level_after_setup(faust.Worker) == logging.DEBUG  # Faust's own: every debug call builds a record
    assert root_level_after_setup(Worker) == logging.WARNING
    assert not any(type(h).__name__ == "SpinnerHandler" for h in root_logger.handlers)


def test_a_started_worker_leaves_what_start_up_made_out_of_garbage_collections() -> None:
    app = faust.App("freeze-test", broker="memory://", store="memory://", web_enabled=False)
    loop = asyncio.new_event_loop()
    state = {"devices": [{"seen": ["m1"]}]}  # long-lived state made while starting (e.g. a recovered table)
    try:
        worker = Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False, loop=loop, stdout=io.StringIO())
        assert any(o is state for o in gc.get_objects())  # scanned by every full collection
        loop.run_until_complete(worker.on_startup_finished())
        assert gc.get_freeze_count() > 0
        assert not any(o is state for o in gc.get_objects())  # in the permanent generation: never scanned
        later = {"devices": []}
        assert any(o is later for o in gc.get_objects())  # what the running worker makes is still collected
    finally:
        gc.unfreeze()
        loop.close()
