"""A stateful stage's checkpoint, saved together with the warehouse inserts of its last batch.

A stage that learns (scoring, the person-level stage) must make each input's effects once, although a
killed worker replays its uncommitted inputs. Its state file remembers the last input offset it includes,
and a replayed input at or below that offset is skipped. That alone leaves a gap: when the inserts run
before the save, a kill between the two replays the inputs, and the replay's batch boundaries (so its
insert tokens) differ, so the outputs are stored twice; when they run after it, a kill between the two
loses them.

So the checkpoint is a one-batch redo log: the state after the batch, its last offset and the batch's
:class:`Effect` s are saved in one atomic rename *before* the effects are made, and a small ``.done``
marker records the offset once they all are. (The scoring stage's "batch" is a group of consecutive
batches, stored while the next ones are scored: its state is pickled with :meth:`Checkpoint.dumps` when
the group closes and written by :meth:`Checkpoint.write` once the previous group's effects are made.)
A restart that finds the marker behind the checkpoint makes the effects again with their original tokens:
ClickHouse drops an insert whose token it has already seen, and makes the ones the kill prevented. The
topics are published again (at least once, as everywhere).

The files are this worker's own state in its data directory, never data from a topic, so pickle is safe.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Effect:
    """One warehouse insert of a batch (``rows`` into ``table`` with ``token``), published where the table
    has a topic."""

    table: str
    rows: list[Any]
    token: str


def effects_of(tables: dict[str, list[Any]], token: str) -> list[Effect]:
    """A batch's inserts, one per non-empty table, each with the batch token and its table name."""
    return [Effect(table, rows, f"{token}:{table}") for table, rows in tables.items() if rows]


@dataclass(frozen=True, slots=True)
class Restored(Generic[S]):
    state: S
    offset: int
    redo: list[Effect]
    """The effects of the last batch when the marker does not show them made (else empty)."""


class Checkpoint(Generic[S]):
    """``path`` holds ``(state, offset, effects)``; ``path.done`` the offset whose effects are all made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done_path = path.with_suffix(".done")

    def load(self) -> Restored[S] | None:
        if not self.path.exists():
            return None
        with self.path.open("rb") as f:
            state, offset, *rest = pickle.load(f)  # noqa: S301 - our own file, see the module docstring
        effects: list[Effect] = rest[0] if rest else []  # a checkpoint from before the redo log has none
        redo = effects if effects and self._done() != offset else []
        if redo:
            log.info("redoing the effects of the last checkpointed batch", path=str(self.path), offset=offset)
        return Restored(state, int(offset), redo)

    def save(self, state: S, offset: int, effects: list[Effect]) -> None:
        """Atomically replace the checkpoint (temporary file, then rename)."""
        self.write(self.dumps(state, offset, effects))

    @staticmethod
    def dumps(state: S, offset: int, effects: list[Effect]) -> bytes:
        """The checkpoint's bytes: taken while ``state`` is as the batch left it, written by :meth:`write`
        once the previous batch's effects are made (a stage that goes on meanwhile changes its state)."""
        return pickle.dumps((state, offset, effects), protocol=pickle.HIGHEST_PROTOCOL)

    def write(self, data: bytes) -> None:
        """Atomically replace the checkpoint with ``data`` from :meth:`dumps` (temporary file, then rename)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(self.path)

    def done(self, offset: int) -> None:
        """Every effect of the batch ending at ``offset`` is made. A torn write reads as "not done", which
        only costs a redo that ClickHouse de-duplicates."""
        self.done_path.write_text(str(offset))

    def _done(self) -> int:
        try:
            return int(self.done_path.read_text())
        except (OSError, ValueError):
            return -1
