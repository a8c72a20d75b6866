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
  cancelled: those events are delivered again (the stages' effects are idempotent). With
  ``acknowledge=False`` the caller acknowledges them itself, later (see :class:`InFlight`).

:class:`InFlight` lets a stage work on the next batch while the slow effects of the last ones (warehouse
inserts, checkpoint file, producer flush) are still being made: one group of batches at a time, in order.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import faust
from faust.types import ChannelT, EventT
from mode.utils.locks import Event


async def take_batches(
    stream: faust.Stream[Any], max_: int, linger: float, *, acknowledge: bool = True
) -> AsyncIterator[list[EventT[Any]]]:
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
            if acknowledge:
                for event in batch:
                    await stream.ack(event)
    finally:
        stream.enable_acks = acks
        stream._processors.remove(collect)


class InFlight:
    """Effects made in a task while the owner goes on with the next batch, grouped when they cannot keep up.

    The owner (the task that makes this object) scores a batch and publishes what reacts in real time; what
    is slow (warehouse inserts, a checkpoint file, a producer flush) waits in the owner's pending group.
    ``take()``, called only between batches, closes that group and returns the coroutine that makes its
    effects (or None when nothing is pending). One group is in flight at a time, so effects are made in input
    order; while one is in flight the next group grows, so under load a group spans several batches and the
    per-group costs (a state snapshot, one insert per table) are paid less often, while a trickle still gets
    a group per batch. The owner calls :meth:`end_batch` after each batch; a group that finishes while the
    owner waits for its next batch starts the pending one at once. ``full()`` says when the owner should
    rather wait than add to the pending group. With ``every``, groups are taken at most that often (unless
    full, or drained): a stage whose group costs a state snapshot pays it a few times a second however fast
    its groups are stored.

    If making effects fails, the owner is cancelled wherever it is, and :meth:`close` raises that failure
    rather than the cancellation, so the agent ends with the real error.
    """

    def __init__(
        self,
        take: Callable[[], Coroutine[Any, Any, None] | None],
        *,
        full: Callable[[], bool] = lambda: False,
        every: float = 0.0,
    ) -> None:
        self._take = take
        self._full = full
        self._every = every
        self._taken_at = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._owner = asyncio.current_task()
        self._failure: BaseException | None = None
        self._between_batches = True

    def begin_batch(self) -> None:
        """The owner starts changing state: no group may be taken until :meth:`end_batch`."""
        self._between_batches = False

    async def end_batch(self) -> None:
        """The owner is between batches: start the pending group now unless one is in flight (or the pending
        group is full, then wait for the one in flight first)."""
        self._between_batches = True
        if self._full():
            await self.wait()
            self._start(force=True)
        else:
            self._start()

    async def wait(self) -> None:
        """Until the group in flight (if any) is made; raises what made it fail. Takes no new group."""
        if self._task is not None:
            await self._task

    async def drain(self) -> None:
        """Until every pending effect is made (call it between batches, before the owner reads what they write)."""
        await self.wait()
        while self._start(force=True):
            await self.wait()

    async def close(self, error: BaseException | None = None) -> None:
        """Cancel the group in flight (its batches are not acknowledged, so they are delivered again), then
        raise the failure of a group's effects if there was one (chained to ``error``, what stopped the owner)."""
        if self._timer is not None:
            self._timer.cancel()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._failure is not None:
            raise self._failure from error

    def _start(self, *, force: bool = False) -> bool:
        """Take the pending group unless a group is in flight (or, unless forced, one was taken less than
        ``every`` ago: then a timer takes it); whether one is in flight now."""
        if self._task is None:
            loop = asyncio.get_running_loop()
            wait = self._taken_at + self._every - loop.time()
            if wait > 0 and not force:
                if self._timer is None:
                    self._timer = loop.call_later(wait, self._due)
                return False
            effects = self._take()
            if effects is None:
                return False
            self._taken_at = loop.time()
            self._task = asyncio.create_task(effects)
            self._task.add_done_callback(self._done)
        return True

    def _due(self) -> None:
        self._timer = None
        if self._between_batches:
            self._start()

    def _done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            if self._failure is None:
                self._failure = error
                if self._owner is not None:
                    self._owner.cancel()
        elif self._between_batches:
            self._start()
