"""``take_batches``: batches grow with the backlog, and a batch is acknowledged only after its body ran.

Driven through Faust's agent test context (an in-memory channel, no broker).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

import faust
from faust.types import EventT

from streams.batches import take_batches

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
