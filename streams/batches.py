"""Batches of a Faust stream's events that grow with the backlog, acknowledged only once they are processed.

Faust's ``Stream.take_events(max_, within)`` closes a batch ``within`` seconds after it opened, however many
messages are still queued, and it only starts moving queued messages into the next batch once the body is
done with the current one. Each message costs Faust's per-message machinery some tens of microseconds, so
with the worker's few-millisecond linger a batch held ~50 events even with thousands waiting (measured:
927 sessionize batches of 54 events on average while 30,000 events were queued), and every batch pays the
fixed cost of its warehouse inserts and checkpoint (100-400 ms): that capped the worker at ~500 events/s.

:func:`take_batches` keeps the linger for a trickle and lets batches grow under load:

* a batch opens at its first event and closes ``linger`` seconds later, when it holds ``max_`` events, or,
  if messages are still queued when the linger is over, once the queue is drained (or ``max_`` is reached);
* while the body works on a batch (its inserts run in threads), the next batch keeps filling, up to ``max_``;
* a batch's events are acknowledged after the body has run on it, never when the body raised or was
  cancelled: those events are delivered again (the stages' effects are idempotent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import faust
from faust.types import ChannelT, EventT
from mode.utils.locks import Event


async def take_batches(stream: faust.Stream[Any], max_: int, linger: float) -> AsyncIterator[list[EventT[Any]]]:
    """Yield lists of at most ``max_`` events from ``stream`` (see the module docstring)."""
    pending: list[EventT[Any]] = []
    started = Event()  # the open batch has its first event
    full = Event()  # the open batch has max_ events: the collector waits for it to be taken
    taken = Event()
    channel = cast(ChannelT[Any], stream.channel)
    queue = channel.queue

    async def collect(value: Any) -> Any:
        while len(pending) >= max_:
            taken.clear()
            if await stream.wait_for_stopped(taken):
                return value  # stopping: the message is not in a batch, so it is not acknowledged
        event = stream.current_event
        if event is None:
            msg = "a stream processor ran without a current event"
            raise RuntimeError(msg)
        pending.append(event)
        started.set()
        if len(pending) >= max_:
            full.set()
        return value

    acks = stream.enable_acks
    stream.enable_acks = False  # acknowledged here, after the body
    stream.add_processor(collect)
    # The stream is drained in the background, each message through ``collect``.
    stream._enable_passive(aiter(channel))
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(started)
            await stream.wait_for_stopped(full, timeout=linger)
            while not full.is_set() and queue.qsize() and not stream.should_stop:
                await stream.wait_for_stopped(full, timeout=linger)  # a backlog: take what is already queued
            if not pending:
                continue
            batch = pending[:]
            pending.clear()
            started.clear()
            full.clear()
            taken.set()
            yield batch
            for event in batch:
                await stream.ack(event)
    finally:
        stream.enable_acks = acks
        stream._processors.remove(collect)
