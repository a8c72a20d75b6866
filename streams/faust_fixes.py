"""Corrections to faust-streaming that exactly-once effects depend on, and three for its speed.

The first three were found by the crash and erasure tests, which lost an input or stalled a partition now
and then (see the notes on issue #8); the fixes are small subclasses that :class:`streams.app.RevstreamApp`
installs.

1. **Messages dropped after a rebalance.** When table recovery ends, Faust resumes the stream partitions,
   seeks them to their committed offsets and then calls ``flow_control.resume()`` again. ``resume`` clears
   every stream queue, also when the flow was already running; messages fetched during the seek are in
   those queues, and the fetcher has already moved past them, so they are never delivered. Clearing belongs
   to the transition from suspended to running (the queues then hold messages from before the rebalance,
   which the seek fetches again); :class:`FlowControl` clears only then. The messages delivered just before
   the seek are then delivered twice, which every stage tolerates (its effects are idempotent).
2. **Commits past a gap.** ``Consumer._new_offset`` commits the first run of consecutive acknowledged
   offsets, and only holds back when that run starts more than one past the committed offset: with
   committed offset 2 and offset 3 acknowledged but 2 never delivered, it commits 4 and the input at 2 is
   lost (faust-streaming/faust#606). :class:`Consumer` holds back whenever the run does not start at the
   committed offset, so an undelivered message shows as lag instead of vanishing.
3. **Records of paused partitions drained.** The fetcher hands aiokafka Faust's live set of active
   partitions; when recovery pauses the last of them while the fetch waits, aiokafka reads the empty set as
   "every partition" and returns records of paused stream partitions, which Faust then discards. The seek at
   the end of recovery repairs positions only for partitions with a committed offset above 0, so an input
   at the start of a partition nothing was ever committed on (the first erasure request on ``privacy``) was
   never delivered. :class:`Consumer` fetches with a copy of the set, and seeks partitions without a
   committed offset to their beginning when Faust seeks the others to theirs.
4. **Four tasks per message.** The fetcher hands every message to the stream queues through
   ``wait_first(deliver(message), suspend_flow.wait())``, so that a delivery blocked on a full queue gives
   way when the flow is suspended. ``wait_first`` wraps each of its awaitables, and the service's stopped
   and crashed events, in a task, waits for the first, and cancels the rest: about a sixth of the worker's
   CPU with three topics per event. A delivery to a queue with room never blocks, so :class:`Consumer`
   first runs the delivery inline up to its first suspension; only a delivery that suspends (a full queue)
   takes the general path, where the suspension can still interrupt it.
5. **Every library's debug records built at WARNING.** At a log level of WARNING or above, Faust's
   :class:`faust.Worker` adds a terminal spinner's handler to the root logger and sets the root logger to
   DEBUG "so that it spins for every log message": aiokafka, Faust and asyncio then build a record for
   every debug call (about 4% of the aiokafka consumer thread at 1,000 events/s), only for the spinner to
   drop them, so a quieter worker ran slower. :class:`Worker` (what ``revstream worker`` runs) has no
   spinner, and the root logger keeps the configured level.
6. **Full garbage collections of everything ever imported.** Python's cyclic collector scans every tracked
   object in a full collection, and a started worker holds ~220,000 (the functions, classes and modules of
   Faust, aiokafka, River, XGBoost, SciPy, NumPy; the restored state). A full collection took 100-140 ms
   every few seconds at 1,000 events/s, holding the GIL, so every thread stopped and every event in flight
   waited. None of those objects is ever garbage, so once the worker has started (tables recovered)
   :class:`Worker` collects once and moves them to the permanent generation (``gc.freeze``): full
   collections then took 8-11 ms. Frozen objects are still freed when their last reference goes; only a
   reference cycle among them would outlive its use, and they are the program and its long-lived state.
"""

from __future__ import annotations

import contextvars
import gc
from collections.abc import Coroutine, Generator, Mapping
from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka
from faust.types import TP
from mode.services import WaitArgT, WaitResults
from mode.utils.queues import FlowControlEvent
from mode.utils.times import Seconds


class FlowControl(FlowControlEvent):
    """Flow control that clears the stream queues only when the flow actually resumes (fix 1)."""

    def resume(self) -> None:
        if self.is_active():
            return
        super().resume()


class Consumer(aiokafka.Consumer):
    """The aiokafka consumer without commits past an unacknowledged offset (fix 2), without draining
    paused partitions (fix 3), and without tasks for a delivery that does not block (fix 4)."""

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Mapping[TP, list[Any]]:
        frozen = None if active_partitions is None else set(active_partitions)
        return await super()._getmany(frozen, timeout)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        for tp, offset in committed.items():
            if not offset and not self._is_changelog_tp(tp):  # nothing committed yet (or 0): from the start
                await self._seek(tp, 0)
        return committed

    async def wait_first(self, *coros: WaitArgT, timeout: Seconds | None = None) -> WaitResults:
        """The fetcher's ``wait_first(delivery, suspended)`` without tasks when the delivery does not block (fix 4)."""
        delivery = coros[0] if len(coros) == 2 else None
        if timeout is not None:
            return await super().wait_first(*coros, timeout=timeout)
        if not isinstance(delivery, Coroutine) or self.should_stop:
            return await super().wait_first(*coros)
        try:
            # In a copy of the context, as the task it would otherwise run in.
            suspended_on = contextvars.copy_context().run(delivery.send, None)
        except StopIteration as done:
            other = coros[1]
            if isinstance(other, Coroutine):
                other.close()  # never started
            return WaitResults([delivery], [done.value], False)
        return await super().wait_first(_Resumed(delivery, suspended_on), coros[1])

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        if acked and committed is not None and min(acked) > committed:
            return None  # the message at ``committed`` is not acknowledged yet
        return super()._new_offset(tp)


class Worker(faust.Worker):
    """Faust's worker without the terminal spinner and its DEBUG root logger (fix 5), which freezes what
    start-up made once it has started (fix 6)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        gc.collect()
        gc.freeze()


class Transport(aiokafka.Transport):
    """Faust's aiokafka transport with :class:`Consumer`."""

    Consumer: ClassVar[Any] = Consumer


class _Resumed:
    """The rest of ``coro``, which has run up to a suspension on ``suspended_on``, as an awaitable."""

    def __init__(self, coro: Coroutine[Any, Any, Any], suspended_on: Any) -> None:
        self.coro = coro
        self.suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.suspended_on
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:  # thrown in (a cancellation): passed on to the coroutine
                try:
                    pending = coro.throw(e)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as done:
                    return done.value
