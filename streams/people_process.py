"""The Kafka worker's person-level stage, run in a child process.

Why a process: the stage's work (identity, attribution, value, churn) and its checkpoint pickle grow with
the number of persons it knows. In the worker's process both held the GIL, so every event waiting for a
score waited behind them. After the worker had worked through 60,000 events, event-to-score p99 at 1,000
events/s was 292-396 ms with the stage in the worker's process and 97-256 ms with it here (lower in 5 of 5
alternating pairs; 97-406 ms over all eight runs of this code, median 209 against 311; README, Benchmarks).
In a child process the stage runs on another core.

The split: the worker keeps every piece of I/O. It reads the ``people`` topic, publishes, writes the
checkpoint file and makes the warehouse inserts, so one process still owns an embedded (chDB) warehouse.
The child owns the :class:`~streams.people.PeopleStage` and does the work. Each batch of row bytes goes
in; the batch's effects and the checkpoint's bytes (see :mod:`streams.checkpoint`) come out.

Errors: an exception in the child comes back as its traceback, and the worker raises it; a child that dies
closes its pipe. Either way the agent fails and the worker exits without committing. When the worker dies,
the child reads the end of its pipe and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import traceback
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from schemas.privacy import ERASE_MARKER, EraseMarker
from schemas.records import EventRow
from streams.checkpoint import Checkpoint, Effect, effects_of
from streams.logs import configure
from streams.people import PeopleStage, PeopleUpdate
from streams.settings import Settings


class PeopleProcessError(RuntimeError):
    """The person-level process failed (its traceback is the message) or exited."""


class PeopleProcess:
    """A child process holding the person-level stage, restored from the checkpoint at ``path``.

    Started with :meth:`start`, which leaves the checkpoint's offset (-1 without a file) in ``offset`` and
    the effects to make again in ``redo``. One call at a time.
    """

    def __init__(self, process: Any, conn: Connection) -> None:
        self._process = process
        self._conn = conn
        self.offset = -1
        self.redo: list[Effect] = []

    @classmethod
    async def start(cls, settings: Settings, path: Path) -> PeopleProcess:
        context = multiprocessing.get_context("spawn")  # no fork: the worker runs threads and an event loop
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs, settings, path), name="revstream-people", daemon=True)
        process.start()
        theirs.close()
        people = cls(process, ours)
        people.offset, people.redo = await asyncio.to_thread(people._receive)
        return people

    async def batch(self, values: list[bytes], *, last: int, token: str) -> tuple[list[Effect], bytes]:
        """Process the ``people`` messages ``values`` (rows and erase markers) up to offset ``last``.

        Returns the batch's effects (tokens ``{token}:{table}``) and the checkpoint that includes them, to
        be written before they are made."""
        return await asyncio.to_thread(self._call, (values, last, token))

    def _call(self, request: tuple[list[bytes], int, str]) -> Any:
        """Send a request and wait for its answer (in a thread: a big batch fills the pipe)."""
        try:
            self._conn.send(request)
        except OSError as e:
            raise self._exited() from e
        return self._receive()

    def _receive(self) -> Any:
        try:
            ok, payload = self._conn.recv()
        except (EOFError, OSError) as e:
            raise self._exited() from e
        if not ok:
            raise PeopleProcessError(payload)
        return payload

    def _exited(self) -> PeopleProcessError:
        return PeopleProcessError(f"the person-level process exited (code {self._process.exitcode})")

    def close(self, timeout: float = 10.0) -> None:
        """Ask the child to exit, and kill it if it has not within ``timeout`` seconds."""
        with contextlib.suppress(OSError):  # already gone
            self._conn.send(None)
        self._conn.close()
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _serve(conn: Connection, settings: Settings, path: Path) -> None:
    """The child: restore the stage, then answer batches until the worker says stop or goes away."""
    # The worker decides when the child ends (Ctrl-C or a service manager signal the whole group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure(level=settings.log_level, json=settings.log_json)  # a fresh interpreter: log like the worker
    try:
        restored = Checkpoint[PeopleStage](path).load()
        stage = PeopleStage(settings) if restored is None else restored.state
        conn.send((True, (-1, []) if restored is None else (restored.offset, restored.redo)))
        while True:
            request = conn.recv()
            if request is None:
                return
            values, last, token = request
            conn.send((True, _process(stage, values, last, token)))
    except EOFError:
        return  # the worker went away
    except BaseException:  # reported to the worker, which fails with it (printing it here too would repeat it)
        with contextlib.suppress(OSError):  # the worker may be gone
            conn.send((False, traceback.format_exc()))


def _process(stage: PeopleStage, values: list[bytes], last: int, token: str) -> tuple[list[Effect], bytes]:
    update = PeopleUpdate()
    for value in values:
        if value.startswith(ERASE_MARKER):
            stage.forget(EraseMarker.from_json(value).ids, at=datetime.now(UTC))
        else:
            update.extend(stage.process(EventRow.from_json(value)))
    effects = effects_of(update.tables(), token)
    return effects, Checkpoint.dumps(stage, last, effects)
