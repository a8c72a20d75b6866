"""XGBoost challenger (train, save/load, batch scoring) and champion selection with a deterministic A/B split."""

from __future__ import annotations

import math
import pickle
import random
from datetime import timedelta
from pathlib import Path

import pytest

from models.scoring.challenger import CHALLENGER, ONLINE, Challenger, Champion, train_challenger
from models.scoring.features import DeviceFeatures
from models.scoring.propensity_learner import PropensityLearner
from tests.models.test_features import T0, make_row


def synthetic(n: int, seed: int = 0) -> tuple[list[dict[str, float]], list[bool]]:
    rng = random.Random(seed)
    rows, labels = [], []
    for _ in range(n):
        checkout = float(rng.random() < 0.2)
        views = float(rng.randint(0, 6))
        channel = rng.choice(("email", "direct", "paid_search"))
        rows.append({"checkout_starts": checkout, "product_views": views, f"channel={channel}": 1.0})
        labels.append(rng.random() < 0.02 + 0.5 * checkout + 0.03 * views + 0.1 * (channel == "email"))
    return rows, labels


@pytest.fixture(scope="module")
def challenger() -> Challenger:
    rows, labels = synthetic(2000)
    return train_challenger(rows, labels, rounds=40, nthread=1)


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_save_load_round_trip_gives_identical_predictions(challenger: Challenger, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    challenger.save(path)
    loaded = Challenger.load(path)
    rows, _ = synthetic(300, seed=1)
    assert loaded.predict_batch(rows) == challenger.predict_batch(rows)
    assert loaded.model_version == challenger.model_version
    assert loaded.feature_names == challenger.feature_names


def test_model_version_is_a_content_hash(challenger: Challenger) -> None:
    rows, labels = synthetic(2000)
    assert train_challenger(rows, labels, rounds=40, nthread=1).model_version == challenger.model_version
    assert train_challenger(rows, labels, rounds=41, nthread=1).model_version != challenger.model_version


def test_predictions_learn_the_signal_and_ignore_unknown_keys(challenger: Challenger) -> None:
    low, high = challenger.predict_batch([{}, {"checkout_starts": 1.0, "channel=email": 1.0}])
    assert low < 0.1
    assert high > 0.4
    assert challenger.predict_batch([{"never_seen": 5.0, "channel=tv": 1.0}]) == [low]
    assert challenger.predict_batch([]) == []
    assert "channel=email" in challenger.feature_names
    assert challenger.feature_names[0] == "events"


def test_batch_equals_one_at_a_time(challenger: Challenger) -> None:
    rows, _ = synthetic(50, seed=2)
    assert challenger.predict_batch(rows) == pytest.approx([challenger.predict_batch([r])[0] for r in rows])


def test_route_is_deterministic_and_respects_the_share() -> None:
    champion = Champion(challenger_share=0.2)
    ids = [f"{i:016x}" for i in range(20000)]
    arms = [champion.route(s) for s in ids]
    again = Champion(challenger_share=0.2)
    assert arms == [again.route(s) for s in ids]  # any worker, any restart
    assert arms.count("challenger") / len(ids) == pytest.approx(0.2, abs=0.01)
    other = Champion(challenger_share=0.2, salt="experiment-2")
    assert [other.route(s) for s in ids] != arms
    none, every = Champion(challenger_share=0.0), Champion(challenger_share=1.0)
    assert {none.route(s) for s in ids[:500]} == {"online"}
    assert {every.route(s) for s in ids[:500]} == {"challenger"}


def test_champion_is_judged_on_the_first_and_the_last_prediction() -> None:
    champion = Champion(window=100, min_labels=10, challenger_share=0.0)
    for i in range(100):  # the challenger is much better late, much worse early: it must not take over
        y = i % 10 == 0
        champion.record(f"s{i}", {ONLINE: (0.1, 0.3 if y else 0.05), CHALLENGER: (0.9, 0.9 if y else 0.01)}, y)
    assert champion.log_loss(CHALLENGER, "last") < champion.log_loss(ONLINE, "last")
    assert champion.champion == ONLINE


def test_champion_switches_to_the_challenger_when_its_log_loss_is_better() -> None:
    champion = Champion(window=200, min_labels=100, challenger_share=0.0)
    rng = random.Random(0)
    for i in range(99):
        y = rng.random() < 0.1
        champion.record(f"s{i}", {ONLINE: (0.1, 0.1), CHALLENGER: (0.1, 0.6 if y else 0.05)}, y)
    assert champion.champion == ONLINE  # not before min_labels
    champion.record("s99", {ONLINE: (0.1, 0.1), CHALLENGER: (0.1, 0.05)}, False)
    assert champion.champion == CHALLENGER
    assert champion.log_loss(CHALLENGER) < champion.log_loss(ONLINE)
    assert champion.published_model("any") == CHALLENGER
    for i in range(100, 400):  # the online model gets better: the champion goes back
        y = rng.random() < 0.1
        champion.record(f"s{i}", {ONLINE: (0.1, 0.9 if y else 0.01), CHALLENGER: (0.1, 0.1)}, y)
    assert champion.champion == ONLINE
    assert champion.switches == 2


def test_champion_does_not_flap_within_the_margin() -> None:
    champion = Champion(window=100, min_labels=10, margin=0.05, challenger_share=0.0)
    for i in range(200):
        y = i % 10 == 0
        champion.record(f"s{i}", {ONLINE: (0.1, 0.1), CHALLENGER: (0.1, 0.1001)}, y)
        champion.record(f"t{i}", {ONLINE: (0.1001, 0.1), CHALLENGER: (0.1, 0.1)}, y)
    assert champion.switches == 0


def test_arm_outcomes_are_counted() -> None:
    champion = Champion(challenger_share=0.5)
    for i in range(1000):
        champion.record(f"s{i}", {ONLINE: (0.1, 0.1)}, purchased=champion.route(f"s{i}") == "challenger" and i % 4 == 0)
    arms = champion.arms()
    assert arms["online"].sessions + arms["challenger"].sessions == 1000
    assert arms["online"].conversions == 0
    assert arms["challenger"].conversion_rate == pytest.approx(0.25, abs=0.05)
    assert champion.n_paired == 0  # without the challenger's prediction nothing is compared
    rows = champion.report(model_version="xgb-1", at=T0)
    assert {(r.metric, r.window) for r in rows} >= {
        ("ab_conversion_rate", "arm:challenger"),
        ("log_loss_paired", "paired:last"),
    }
    assert math.isnan(champion.log_loss(ONLINE))


def test_champion_pickles() -> None:
    champion = Champion(min_labels=1)
    champion.record("s", {ONLINE: (0.2, 0.2), CHALLENGER: (0.1, 0.1)}, False)
    clone = pickle.loads(pickle.dumps(champion))
    assert (clone.champion, clone.log_loss(CHALLENGER), clone.outcomes) == (
        champion.champion,
        champion.log_loss(CHALLENGER),
        champion.outcomes,
    )


def test_learner_publishes_the_challenger_in_its_arm_and_evaluates_both() -> None:
    champion = Champion(challenger_share=0.5, min_labels=10_000)
    learner = PropensityLearner(champion=champion)
    sessions = [f"{i:016x}" for i in range(40)]
    for i, sid in enumerate(sessions):
        device = DeviceFeatures()
        row = make_row(at=T0 + timedelta(hours=i), session=sid, anonymous_id=f"d{i}")
        published = learner.observe(row, device.update(row), challenger=0.5, challenger_version="xgb-1")
        assert published is not None
        expected = CHALLENGER if champion.route(sid) == "challenger" else ONLINE
        assert (published.model, published.model_version == "xgb-1") == (expected, expected == CHALLENGER)
    finished = learner.expire(T0 + timedelta(days=3))
    assert all(set(f.predictions) == {ONLINE, CHALLENGER} for f in finished)
    assert learner.metrics.labels(CHALLENGER, "first") == 40
    assert champion.n_paired == 40
