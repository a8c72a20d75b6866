"""Embedded mode: the pipeline in one process, from a file, stdin or the simulator, into chDB.

Input arrives as ``(source, raw)`` pairs where ``source`` is ``name:line``. Rows are flushed every
``batch_size`` inputs with the token ``name:first-last``, so replaying the same file into the same
warehouse writes nothing twice.

With more than one CPU to run on, a batch's inserts run in a writer thread while the next batch is parsed
and scored (``write_behind``); one batch is in flight at a time, and a failed insert ends the run at the
next flush (or at the end). chDB releases the GIL while its engine writes the parts, about half of an
insert's time, so that half overlaps with the pipeline's Python work: 100k events ran 8-45% faster in
alternating runs on 2 cores. On one core there is nothing to overlap and the hand-offs cost about 3%, so
the inserts are then made in line.
Anything that reads the warehouse (late rows) waits for the batch in flight first.
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from models.ingest import DeviceState, settle_late
from models.privacy import truncate_ip
from models.scoring import DeviceFeatures
from schemas.privacy import ConsentRefusalRow
from schemas.records import EventRow, FailedEvent, Refused
from sinks.clickhouse import ClickHouseSink
from sinks.erasure import suppressed_subjects
from streams.pipeline import Pipeline


@dataclass
class RunSummary:
    """What a run did: every input is counted once, as valid, as failed (by stage) or as refused (by purpose)."""

    inputs: int = 0
    valid: int = 0
    alerts: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


def ndjson_lines(stream: BinaryIO, name: str) -> Iterator[tuple[str, bytes]]:
    """``(name:line, bytes)`` for every non-blank line; line numbers count from 1 and include blanks.

    >>> import io
    >>> list(ndjson_lines(io.BytesIO(b'{"a":1}\\n\\n{"b":2}\\n'), "f"))
    [('f:1', b'{"a":1}'), ('f:3', b'{"b":2}')]
    """
    for number, line in enumerate(stream, start=1):
        raw = line.rstrip(b"\r\n")
        if raw.strip():
            yield f"{name}:{number}", raw


PROGRESS_EVERY = 1000
"""Inputs between two advances of ``run``'s progress callback (a batch is 20,000 by default: seconds of work)."""


class EmbeddedRunner:
    """Drive :class:`Pipeline` over inputs and write to ``sink``; device state lives in a dict."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        sink: ClickHouseSink,
        batch_size: int = 20_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        write_behind: bool | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.sink = sink
        self.batch_size = batch_size
        self.write_behind = _usable_cpus() > 1 if write_behind is None else write_behind
        self.clock = clock
        self.devices: dict[str, DeviceState] = {}
        self.features: dict[str, DeviceFeatures] = {}
        self.scoring = pipeline.scoring_stage()
        pipeline.suppressed |= suppressed_subjects(sink)

    _end = False
    _writer: ThreadPoolExecutor | None = None
    _writing: Future[int] | None = None

    def run(self, inputs: Iterable[tuple[str, bytes]], *, progress: Callable[[int], None] | None = None) -> RunSummary:
        """Every input through the pipeline into the sink; ``progress(n)`` is called as inputs are processed,
        every :data:`PROGRESS_EVERY` and for the rest at the end (its calls sum to the inputs)."""
        with _young_gc_only(), ExitStack() as stack:
            if self.write_behind:
                self._writer = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="revstream-sink"))
            try:
                return self._run(inputs, progress)
            finally:
                self._stored()
                self._writer = None

    def _stored(self) -> None:
        """Wait until the batch in flight is in the warehouse; its insert's failure is raised here."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _run(self, inputs: Iterable[tuple[str, bytes]], progress: Callable[[int], None] | None) -> RunSummary:
        self._end = False
        summary = RunSummary()
        parse, sessionize, devices = self.pipeline.parse, self.pipeline.sessionize, self.devices
        is_late = self.pipeline.is_late
        valid: list[EventRow] = []
        late: list[tuple[EventRow, bytes]] = []
        failed: list[FailedEvent] = []
        refused: list[ConsentRefusalRow] = []
        first = last = ""
        for source, raw in inputs:
            first = first or source
            last = source
            out: EventRow | FailedEvent | Refused | None
            out, carried = parse(raw, source=source, received_at=self.clock())
            if isinstance(out, EventRow):
                out = sessionize(out, carried, devices)
            if isinstance(out, FailedEvent):
                failed.append(out)
                summary.failed[out.stage] += 1
            elif isinstance(out, Refused):
                refused.append(ConsentRefusalRow.of(out))
                summary.refused[out.purpose] += 1
            elif out is None:  # the same input twice: done the first time
                summary.valid += 1
            elif is_late(out, devices):  # settled against the warehouse at the flush
                late.append((out, carried))
            else:
                self._accept(out, valid, summary)
            summary.inputs += 1
            if summary.inputs % self.batch_size == 0:
                self._settle(late, valid, failed, summary)
                self._flush(valid, failed, refused, first, last)
                first = ""
            if progress is not None and summary.inputs % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
        # End of input: every open session is over, so it is labelled and written too.
        self._end = True
        if first:
            self._settle(late, valid, failed, summary)
            self._flush(valid, failed, refused, first, last)
        if progress is not None and summary.inputs % PROGRESS_EVERY:
            progress(summary.inputs % PROGRESS_EVERY)
        return summary

    def _accept(self, row: EventRow, valid: list[EventRow], summary: RunSummary) -> None:
        """A new valid row: the person-level stage, then the batch (with its IP truncated)."""
        update = self.pipeline.people.process(row)
        row.ip = truncate_ip(row.ip)  # identity has used the full address; storage gets the network
        valid.append(row)
        summary.valid += 1
        for table, rows in update.tables().items():
            if rows:
                self.sink.write(table, rows)
        summary.alerts += len(update.alerts)

    def _settle(
        self, late: list[tuple[EventRow, bytes]], valid: list[EventRow], failed: list[FailedEvent], summary: RunSummary
    ) -> None:
        """Resends too old for the device's memory: the warehouse says whether each is new (see :func:`settle_late`)."""
        if not late:
            return
        self._stored()
        ids = {row.message_id for row, _ in late}
        pending = {r.message_id: r.source for r in valid if r.message_id in ids}
        kept, duplicates = settle_late(
            late, pending | self.sink.stored_message_ids("events", [r for r, _ in late]), self.devices
        )
        for row in kept:
            self._accept(row, valid, summary)
        failed += duplicates
        summary.failed["dedupe"] += len(duplicates)
        summary.valid += len(late) - len(kept) - len(duplicates)  # replays of stored inputs
        late.clear()

    def _flush(
        self,
        valid: list[EventRow],
        failed: list[FailedEvent],
        refused: list[ConsentRefusalRow],
        first: str,
        last: str,
    ) -> None:
        scored = self.scoring.process_batch(valid, self.features, clock=self.clock)
        if self._end:
            self.scoring.expire(datetime.max.replace(tzinfo=UTC), scored)
            scored.metrics += self.scoring.learner.report(at=self.clock())
        for table, rows in scored.tables().items():
            if rows:
                self.sink.write(table, rows)
        self.sink.write("events", valid)
        self.sink.write("failed_events", failed)
        self.sink.write("consent_refusals", refused)
        buffers = self.sink.take()
        valid.clear()
        failed.clear()
        refused.clear()
        self._stored()
        token = f"{first}-{last.rsplit(':', 1)[-1]}"
        if self._writer is None:
            self.sink.insert_all(buffers, token=token)
        else:
            self._writing = self._writer.submit(self.sink.insert_all, buffers, token=token)
        del buffers  # inserted in line, the rows are freed now rather than scanned by the collection
        gc.collect(1)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may run on (taskset, containers)
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


@contextmanager
def _young_gc_only() -> Iterator[None]:
    """Pause automatic cyclic GC for a run; the runner collects the young generations at each flush.

    Ingest allocates a few dozen short-lived objects per event while the device state grows; automatic
    collections then rescan that state over and over. Measured on 50k events: parse 112 us/event with the
    collector on, 42 us with it paused. Rows hold no reference cycles, so reference counting frees them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
