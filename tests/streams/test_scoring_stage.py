"""The scoring stage hot-loads the challenger that ``revstream train`` writes, looking at the file once a second."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from models.scoring.challenger import train_challenger
from streams.scoring import CHALLENGER_CHECK_SECONDS, ScoringStage
from tests.models.test_challenger import synthetic


def test_a_new_or_retrained_challenger_is_loaded_within_the_check_interval(tmp_path: Path) -> None:
    path = tmp_path / "challenger.ubj"
    stage = ScoringStage(challenger_path=path)
    stage.reload_challenger(now=0.0)
    assert stage.challenger is None  # no file yet
    rows, labels = synthetic(500)
    first = train_challenger(rows, labels, rounds=5, nthread=1)
    first.save(path)
    stage.reload_challenger(now=CHALLENGER_CHECK_SECONDS / 2)
    assert stage.challenger is None  # not looked at again yet
    stage.reload_challenger(now=CHALLENGER_CHECK_SECONDS)
    assert stage.challenger is not None
    assert stage.challenger.model_version == first.model_version

    second = train_challenger(rows, labels, rounds=12, nthread=1)
    second.save(path)
    os.utime(path, (1e9, 1e9))  # a different mtime even on a coarse clock
    stage.reload_challenger(now=1.5 * CHALLENGER_CHECK_SECONDS)
    assert stage.challenger.model_version == first.model_version
    stage.reload_challenger(now=2 * CHALLENGER_CHECK_SECONDS)
    assert stage.challenger.model_version == second.model_version != first.model_version

    restored = pickle.loads(pickle.dumps(stage))  # a checkpoint: the file is the source of truth
    assert restored.challenger is None
    restored.reload_challenger(now=0.0)  # a restored stage looks at once, whatever the clock says
    assert restored.challenger is not None
    assert restored.challenger.model_version == second.model_version
