"""``take_batches``: batches grow with the backlog, and a batch is acknowledged only after its body ran.
``InFlight``: one batch's effects at a time, in order, and a failure among them ends the owner.

Driven through Faust's agent test context (an in-memory channel, no broker).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

import faust
import pytest
from faust.types import EventT

from streams.batches import InFlight, take_batches

MAX = 100


def run_agent(n: int, *, fail_on_batch: int | None = None) -> tuple[list[list[EventT[Any]]], list[list[bool]]]:
    """Put ``n`` values while the agent's first batch waits, then let it drain them.

    Returns the batches and, per batch, whether each of its events was acknowledged while the body ran.
    """
    batches: list[list[EventT[Any]]] = []
    acked_during: list[list[bool]] = []

    async def main() -> None:
        # Made inside the running loop, so that the app uses it (and opens no loop of its own).
        app = faust.App(f"batches-{n}-{fail_on_batch}", store="memory://", loop=asyncio.get_running_loop())
        topic = app.topic("values", value_type=bytes)
        all_put = asyncio.Event()

        @app.agent(topic)
        async def agent(stream: faust.StreamT[Any]) -> None:
            async for batch in take_batches(cast(faust.Stream[Any], stream), MAX, 0.001):
                batches.append(batch)
                acked_during.append([e.message.acked for e in batch])
                await all_put.wait()  # the first body holds the stream back while everything is put: a backlog
                if len(batches) == fail_on_batch:
                    msg = "the body failed"
                    raise RuntimeError(msg)

        app.flow_control.resume()
        async with agent.test_context() as context:
            for value in range(n):
                await context.put(str(value).encode(), wait=False)
            all_put.set()
            for _ in range(200):
                await asyncio.sleep(0.01)
                if sum(map(len, batches)) >= n or (fail_on_batch and len(batches) >= fail_on_batch):
                    break
        # Acknowledging made the app's consumer, which opened an event loop for its thread; never started here.
        cast(Any, app.consumer)._thread.thread_loop.close()

    asyncio.run(main())
    return batches, acked_during


def test_a_backlog_is_taken_in_full_batches_once_each_in_order_and_acknowledged_after_the_body() -> None:
    batches, acked_during = run_agent(350)
    values = [int(e.value) for e in itertools.chain.from_iterable(batches)]
    assert values == list(range(350))
    sizes = [len(b) for b in batches]
    # The linger is 1 ms, but the backlog is queued: every batch between the first and the last is full
    # (Faust's take_events closes a batch after the linger, at a few dozen events here).
    assert max(sizes) == MAX
    assert all(size == MAX for size in sizes[1:-1]), sizes
    assert len(batches) <= 5, sizes
    assert not any(itertools.chain.from_iterable(acked_during))  # nothing acknowledged while its body ran
    assert all(e.message.acked for e in itertools.chain.from_iterable(batches[:-1]))


def test_the_batch_whose_body_raised_is_not_acknowledged() -> None:
    batches, _ = run_agent(250, fail_on_batch=2)
    assert len(batches) == 2
    first, failed = batches
    assert all(e.message.acked for e in first)
    assert not any(e.message.acked for e in failed)  # it is delivered again after the restart


class Owner:
    """A stage that scores batches and leaves their effects to :class:`InFlight`, logging what happens."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.log: list[str] = []
        self.release: dict[int, asyncio.Event] = {}
        self.in_flight = InFlight(self.take, full=lambda: len(self.pending) >= 3)

    def take(self) -> Any:
        if not self.pending:
            return None
        group, self.pending = self.pending, []
        self.log.append(f"take {group}")
        return self.store(group)

    async def store(self, group: list[int]) -> None:
        self.log.append(f"store {group}")
        await self.release.setdefault(group[-1], asyncio.Event()).wait()
        self.log.append(f"stored {group}")

    async def batch(self, n: int) -> None:
        self.in_flight.begin_batch()
        self.log.append(f"score {n}")
        self.pending.append(n)
        await self.in_flight.end_batch()

    async def let(self, n: int) -> None:
        self.release.setdefault(n, asyncio.Event()).set()
        for _ in range(3):
            await asyncio.sleep(0)


def test_effects_are_made_one_group_at_a_time_in_order_and_grow_while_one_is_in_flight() -> None:
    async def main() -> list[str]:
        owner = Owner()
        await owner.batch(0)  # a trickle: its own group, in flight at once
        await asyncio.sleep(0)
        await owner.batch(1)  # scored while group [0] is stored ...
        await owner.batch(2)  # ... and so is this one: they wait together
        await owner.let(0)  # [0] stored while the owner waits for its next batch: [1, 2] goes at once
        await owner.batch(3)
        await owner.batch(4)
        fifth = asyncio.create_task(owner.batch(5))  # the pending group is full: the owner waits for [1, 2]
        await asyncio.sleep(0.01)
        owner.log.append("owner waiting" if not fifth.done() else "owner went on")
        await owner.let(2)
        await fifth
        await owner.let(5)
        await owner.in_flight.drain()
        return owner.log

    log = asyncio.run(asyncio.wait_for(main(), 5))
    assert log == [
        "score 0", "take [0]", "store [0]",
        "score 1", "score 2",
        "stored [0]", "take [1, 2]", "store [1, 2]",
        "score 3", "score 4", "score 5", "owner waiting",
        "stored [1, 2]", "take [3, 4, 5]", "store [3, 4, 5]", "stored [3, 4, 5]",
    ]  # fmt: skip


def test_no_group_is_taken_while_the_owner_is_in_a_batch() -> None:
    async def main() -> list[str]:
        owner = Owner()
        await owner.batch(0)
        owner.in_flight.begin_batch()  # batch 1 half done (a state change in progress) ...
        owner.pending.append(1)
        await owner.let(0)  # ... when [0] is stored: nothing is taken until the batch ends
        owner.log.append("batch 1 ends")
        await owner.in_flight.end_batch()
        await owner.let(1)
        return owner.log

    log = asyncio.run(asyncio.wait_for(main(), 5))
    assert log == [
        "score 0",
        "take [0]",
        "store [0]",
        "stored [0]",
        "batch 1 ends",
        "take [1]",
        "store [1]",
        "stored [1]",
    ]


def test_a_failure_in_flight_stops_the_owner_with_that_failure() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        msg = "insert refused"
        raise ValueError(msg)

    async def owner() -> None:
        groups = [fails()]
        in_flight = InFlight(lambda: groups.pop() if groups else None)
        try:
            await in_flight.end_batch()
            await asyncio.sleep(10)  # waiting for the next batch
        except BaseException as e:
            await in_flight.close(e)
            raise

    with pytest.raises(ValueError, match="insert refused"):
        asyncio.run(asyncio.wait_for(owner(), 5))


def test_closing_cancels_the_effects_in_flight() -> None:
    made: list[str] = []

    async def slow() -> None:
        await asyncio.sleep(10)
        made.append("slow")

    async def main() -> None:
        groups = [slow()]
        in_flight = InFlight(lambda: groups.pop() if groups else None)
        await in_flight.end_batch()
        await asyncio.sleep(0)
        await in_flight.close()
        await asyncio.sleep(0)

    asyncio.run(asyncio.wait_for(main(), 5))
    assert made == []
