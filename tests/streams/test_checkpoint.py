"""The one-batch redo log (:mod:`streams.checkpoint`): effects saved with the state are made again after a
kill, on the real ClickHouse engine, and stored once."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.scores import EXAMPLE_SCORE, Score
from sinks import ClickHouseSink
from streams.app import _make
from streams.checkpoint import Checkpoint, Effect


def scores(n: int, prefix: str) -> list[Score]:
    return [dataclasses.replace(EXAMPLE_SCORE, message_id=f"{prefix}{i}") for i in range(n)]


def test_effects_are_redone_until_marked_done(tmp_path: Path) -> None:
    checkpoint: Checkpoint[dict[str, int]] = Checkpoint(tmp_path / "stage.pickle")
    assert checkpoint.load() is None
    effects = [Effect("scores", scores(2, "m"), "t:0:0-9:scores")]
    checkpoint.save({"seen": 10}, 9, effects)
    restored = checkpoint.load()
    assert restored is not None
    assert (restored.state, restored.offset, restored.redo) == ({"seen": 10}, 9, effects)
    checkpoint.done(9)
    restored = checkpoint.load()
    assert restored is not None
    assert restored.redo == []
    checkpoint.save({"seen": 12}, 11, effects)  # the next batch, not yet marked
    restored = checkpoint.load()
    assert restored is not None
    assert restored.redo == effects


def test_a_torn_marker_means_redo_and_an_old_checkpoint_has_nothing_to_redo(tmp_path: Path) -> None:
    checkpoint: Checkpoint[str] = Checkpoint(tmp_path / "stage.pickle")
    checkpoint.save("state", 4, [Effect("scores", scores(1, "m"), "tok")])
    checkpoint.done_path.write_text("")  # killed while writing the marker
    restored = checkpoint.load()
    assert restored is not None
    assert len(restored.redo) == 1
    with checkpoint.path.open("wb") as f:  # written before the redo log existed: (state, offset)
        pickle.dump(("old", 3), f)
    restored = checkpoint.load()
    assert restored is not None
    assert (restored.state, restored.offset, restored.redo) == ("old", 3, [])


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[ClickHouseSink]:
    with ClickHouseSink(dsn=f"chdb://{tmp_path / 'wh'}") as sink:
        sink.migrate()
        yield sink


def _count(sink: ClickHouseSink, table: str) -> int:
    return int(sink.query(f"SELECT count() FROM {table}").result_rows[0][0])


def test_a_redo_after_a_partial_batch_stores_every_effect_once(sink: ClickHouseSink, tmp_path: Path) -> None:
    """Killed after the first of a batch's two inserts: the redo skips the first (same token) and makes the
    second. Replaying the inputs instead (a new batch cut, so a new token) would store the first twice."""
    from schemas.alerts import EXAMPLE_ALERT

    effects = [Effect("scores", scores(5, "m"), "t:0:0-9:scores"), Effect("alerts", [EXAMPLE_ALERT], "t:0:0-9:alerts")]
    checkpoint: Checkpoint[str] = Checkpoint(tmp_path / "stage.pickle")
    checkpoint.save("state", 9, effects)
    sink.insert("scores", effects[0].rows, token=effects[0].token)  # ... and then the kill
    restored = checkpoint.load()
    assert restored is not None
    asyncio.run(_make(sink, restored.redo))
    assert (_count(sink, "scores"), _count(sink, "alerts")) == (5, 1)
    asyncio.run(_make(sink, restored.redo))  # killed again before the marker: redone again, still once
    assert (_count(sink, "scores"), _count(sink, "alerts")) == (5, 1)
    sink.insert("scores", effects[0].rows, token="t:0:0-12:scores")  # the replay a redo log avoids
    assert _count(sink, "scores") == 10
