"""Propensity: the online model's contract, delayed labels, no leakage, event-time expiry, prequential metrics."""

from __future__ import annotations

import copy
import math
import pickle
import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from river import compose, linear_model, optim, preprocessing

from models.scoring.challenger import ONLINE
from models.scoring.features import NUMERIC_FEATURES, DeviceFeatures
from models.scoring.prequential import PrequentialEvaluator, calibration, roc_auc
from models.scoring.propensity import INPUTS, PropensityModel, Vector, design, design_vector, feature_vector
from models.scoring.propensity_learner import FinishedSession, PropensityLearner
from schemas.records import EventRow
from schemas.scores import Score
from tests.models.test_features import T0, make_row

SNAPSHOT = {"events": 3.0, "cart_adds": 1.0, "days_since_last_order": 365.0, "channel=email": 1.0}


class RecordingModel(PropensityModel):
    """A real model that also records what it learned from (a test double through the constructor)."""

    def __init__(self) -> None:
        super().__init__()
        self.learned: list[tuple[dict[str, float], bool, float]] = []

    def learn_vector(self, values: Sequence[float] | Vector, y: bool, w: float = 1.0) -> None:
        self.learned.append((dict(zip(NUMERIC_FEATURES, values, strict=True)), y, w))
        super().learn_vector(values, y, w)


def run(learner: PropensityLearner, rows: list[EventRow], *, bot: bool = False) -> list[object]:
    devices: dict[str, DeviceFeatures] = {}
    out: list[object] = []
    for row in rows:
        device = devices.setdefault(row.device_key, DeviceFeatures())
        out.append(learner.observe(row, device.update(row), bot=bot))
    return out


def session(name: str, start: timedelta, *, buys: bool, device: str = "a1") -> list[EventRow]:
    at = T0 + start
    rows = [
        make_row(at=at, session=name, anonymous_id=device),
        make_row("Product Viewed", at=at + timedelta(seconds=20), session=name, anonymous_id=device),
        make_row("Scroll Depth Reached", at=at + timedelta(seconds=30), session=name, anonymous_id=device),
        make_row("Checkout Started", at=at + timedelta(seconds=60), session=name, anonymous_id=device),
    ]
    if buys:
        rows.append(make_row("Order Completed", at=at + timedelta(seconds=90), session=name, anonymous_id=device))
        rows.append(make_row(at=at + timedelta(seconds=95), session=name, anonymous_id=device))
    return rows


# -- the online model's contract (STYLE.md 1 and 3) --------------------------------------------------------


def test_model_predicts_the_prior_before_learning() -> None:
    for prior in (0.01, 0.03, 0.2):
        assert PropensityModel(prior=prior).predict_proba_one(SNAPSHOT)[True] == pytest.approx(prior)


def test_model_never_mutates_its_input() -> None:
    model, x = PropensityModel(), dict(SNAPSHOT)
    model.predict_proba_one(x)
    model.learn_one(x, True)
    assert x == SNAPSHOT


def test_model_pickles() -> None:
    model = PropensityModel()
    for i in range(50):
        model.learn_one({**SNAPSHOT, "cart_adds": float(i % 3)}, i % 3 == 2)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.predict_proba_one(SNAPSHOT) == model.predict_proba_one(SNAPSHOT)
    assert clone.model_version == model.model_version


def test_model_constructor_arguments_are_stored_unchanged() -> None:
    model = PropensityModel(learning_rate=0.1, intercept_lr=0.02, l2=0.5, prior=0.1)
    assert (model.learning_rate, model.intercept_lr, model.l2, model.prior) == (0.1, 0.02, 0.5, 0.1)


def test_design_is_log_counts_recency_and_indicators() -> None:
    x = design({"product_views": math.e - 1, "days_since_last_visit": 1.0, "device=mobile": 1.0})
    assert x["product_views"] == pytest.approx(1.0)
    assert x["days_since_last_visit"] == 0.5
    assert x["days_since_last_order"] == 1.0  # a missing feature is 0: an order today
    assert (x["viewed_product"], x["added_to_cart"]) == (1.0, 0.0)
    assert list(x) == list(INPUTS)  # the one-hots are not inputs


def test_design_floors_negative_features_at_zero() -> None:
    x = design({"cart_value": -5.0, "days_since_last_order": -2.0, "events": 3.0})
    assert (x["cart_value"], x["days_since_last_order"], x["landing"]) == (0.0, 1.0, 0.0)
    assert design_vector(feature_vector({"events": 3.0})).tolist() == list(design({"events": 3.0}).values())


def _river_pipeline(model: PropensityModel) -> Any:
    """River's pipeline with the model's settings: what :class:`PropensityModel` was, and must still compute."""
    return compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(
            optimizer=optim.AdaGrad(model.learning_rate),
            l2=model.l2,
            intercept_init=math.log(model.prior / (1.0 - model.prior)),
            intercept_lr=model.intercept_lr,
        ),
    )


def _river_p(river: Any, x: dict[str, float]) -> float:
    return float(min(max(river.predict_proba_one(design(x))[True], 1e-6), 1.0 - 1e-6))  # clipped as the model


def _snapshots(n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {k: rng.choice((0.0, 0.0, 1.0, 3.0, 40.0, 365.0)) * rng.random() for k in NUMERIC_FEATURES}
        x["events"] = float(rng.randint(1, 12))
        out.append((x, rng.random() < (0.6 if x["cart_adds"] > 1.0 else 0.05)))
    return out


def test_model_computes_what_rivers_scaler_and_logistic_regression_compute() -> None:
    model = PropensityModel(learning_rate=0.2, l2=0.01, prior=0.1)
    river = _river_pipeline(model)
    for x, y in _snapshots(3000, seed=3):
        assert model.predict_proba_one(x)[True] == pytest.approx(_river_p(river, x), abs=1e-9)
        model.learn_one(x, y)
        river.learn_one(design(x), y)
    assert model.predict_proba_one(x)[True] != pytest.approx(0.1)  # it has learned something


def test_a_model_pickled_with_rivers_pipeline_restores_as_the_same_model() -> None:
    model = PropensityModel()
    river = _river_pipeline(model)
    snapshots = _snapshots(500, seed=4)
    for x, y in snapshots[:400]:
        river.learn_one({**design(x), "channel=email": 1.0}, y)  # the one-hots the old model was given
    state = {k: v for k, v in model.__dict__.items() if k in ("learning_rate", "intercept_lr", "l2", "prior")}
    old = PropensityModel.__new__(PropensityModel)
    old.__setstate__({**state, "pipeline": river, "n_learned": 400.0, "_spec": model._spec})
    restored = pickle.loads(pickle.dumps(old))
    assert restored.model_version == model.model_version  # same configuration: same version line
    for x, y in snapshots[400:]:
        assert restored.predict_proba_one(x)[True] == pytest.approx(_river_p(river, x), abs=1e-9)
        restored.learn_one(x, y)
        river.learn_one(design(x), y)


def test_design_marks_the_landing_snapshot() -> None:
    assert design({"events": 1.0})["landing"] == 1.0
    assert design({"events": 2.0})["landing"] == 0.0
    assert design({})["landing"] == 1.0  # a snapshot without events counts as the first


def test_model_gives_the_landing_event_its_own_rate() -> None:
    # Buyers are 30% of landings and of 3-event snapshots, 0% of 2-event ones: not monotone in log1p(events),
    # so only the landing indicator lets the model rank a landing above a second event.
    model = PropensityModel(prior=0.1)
    rng = random.Random(2)
    for _ in range(3000):
        events = rng.choice((1.0, 2.0, 3.0))
        model.learn_one({"events": events}, events != 2.0 and rng.random() < 0.3)
    first, second, third = (model.predict_proba_one({"events": e})[True] for e in (1.0, 2.0, 3.0))
    assert first > 1.5 * second  # without the indicator a logit linear in log1p(events) is monotone:
    assert third > second  # it could not put both ends above the middle


# -- delayed labels -----------------------------------------------------------------------------------


def test_learner_scores_before_it_has_learned_anything() -> None:
    learner = PropensityLearner()
    published = run(learner, session("s", timedelta(0), buys=False))
    scores = [p for p in published if p is not None]
    assert len(scores) == 3  # the scroll ping is not scored
    assert all(p.model == ONLINE and p.score == pytest.approx(0.03) for p in scores)  # type: ignore[attr-defined]


def test_published_score_becomes_a_score_record() -> None:
    row = make_row()
    published = PropensityLearner().observe(row, DeviceFeatures().update(row))
    assert published is not None
    score = published.to_score(row, scored_at=T0, latency_ms=1.5)
    assert (score.message_id, score.session_id, score.model, score.latency_ms) == (row.message_id, "s1", ONLINE, 1.5)
    assert Score.from_json(score.to_json()) == score


def test_report_gives_the_current_windows() -> None:
    learner = PropensityLearner()
    run(learner, session("s", timedelta(0), buys=True) + session("t", timedelta(hours=1), buys=False, device="b"))
    learner.expire(T0 + timedelta(days=1))
    assert learner.drain_metrics() == []  # no window of 5000 labels has closed
    rows = learner.report(at=T0)
    assert {(r.metric, r.window) for r in rows} >= {("roc_auc", "first:1-2"), ("log_loss", "last:1-2")}
    # the non-buyer came after the buyer had been learned, and looks like it at checkout: scored higher
    assert next(r for r in rows if r.metric == "roc_auc" and r.window == "last:1-2").value == 0.0


def test_learns_only_from_snapshots_before_the_order() -> None:
    model = RecordingModel()
    learner = PropensityLearner(model=model)
    published = run(learner, session("s", timedelta(0), buys=True))
    assert published[-2:] == [None, None]  # the order and what follows it are not scored
    assert model.learned, "a purchased session is learned from at once"
    assert {y for _, y, _ in model.learned} == {True}
    assert max(x["events"] for x, _, _ in model.learned) == 4.0  # the checkout snapshot, not the order's
    assert max(x["checkout_starts"] for x, _, _ in model.learned) == 1.0
    assert [w for _, _, w in model.learned] == [1.0, 1.0, 1.0]  # the three scored snapshots, each counted once
    [done] = learner.expire(T0 + timedelta(hours=1))
    assert done.label
    assert done.record.purchased
    assert done.record.events == 4.0  # the record keeps the training snapshot: the last one before the order
    assert done.record.ended_at == T0 + timedelta(seconds=95)  # ...but the session's real end
    assert done.record.propensity_first == pytest.approx(0.03)


def test_expiry_is_in_event_time() -> None:
    learner = PropensityLearner()
    run(learner, session("s", timedelta(0), buys=False))
    last = T0 + timedelta(seconds=60)
    assert learner.expire(last + timedelta(minutes=29)) == []
    assert learner.expire(last + timedelta(minutes=30)) == []  # quiet for exactly the gap: not yet
    [done] = learner.expire(last + timedelta(minutes=30, milliseconds=1))
    assert isinstance(done, FinishedSession)
    assert not done.label
    assert not done.record.purchased
    assert done.record.started_at == T0
    assert done.record.ended_at == last
    assert learner.pending == {}
    assert learner.metrics.labels(ONLINE, "last") == 1


def test_a_new_event_keeps_a_session_open() -> None:
    learner = PropensityLearner()
    run(learner, session("s", timedelta(0), buys=False))
    run(learner, [make_row("Product Viewed", at=T0 + timedelta(minutes=25), session="s")])
    assert learner.expire(T0 + timedelta(minutes=50)) == []
    assert len(learner.expire(T0 + timedelta(minutes=56))) == 1


def test_late_event_of_a_finished_session_is_ignored() -> None:
    learner = PropensityLearner()
    run(learner, session("s", timedelta(0), buys=False))
    run(learner, session("t", timedelta(hours=2), buys=False, device="a2"))
    assert len(learner.expire(T0 + timedelta(hours=2))) == 1
    late = make_row("Order Completed", at=T0 + timedelta(minutes=2), session="s", anonymous_id="a3")
    assert learner.observe(late, DeviceFeatures().update(late)) is None
    assert learner.late == 1
    assert "s" not in learner.pending


def test_a_late_order_still_labels_its_open_session() -> None:
    learner = PropensityLearner()
    run(learner, session("s", timedelta(0), buys=False))
    # the device moved on to another session; the order of the first arrives late (features return {})
    order = make_row("Order Completed", at=T0 + timedelta(seconds=70), session="s")
    assert learner.observe(order, {}) is None
    [done] = learner.expire(T0 + timedelta(hours=1))
    assert done.label


def test_bot_sessions_are_not_learned_from_nor_evaluated() -> None:
    model = RecordingModel()
    learner = PropensityLearner(model=model)
    rows = session("s", timedelta(0), buys=True)
    device = DeviceFeatures()
    for i, row in enumerate(rows):
        learner.observe(row, device.update(row), bot=i == 2)  # flagged part-way: the whole session is out
    [done] = learner.expire(T0 + timedelta(hours=1))
    assert done.record.bot
    assert done.record.purchased
    assert model.learned == []
    assert learner.metrics.tracks == {}
    assert learner.sessions_learned == 0


def test_learner_pickles_with_pending_sessions_and_resumes_identically() -> None:
    learner = PropensityLearner(evaluator=PrequentialEvaluator(window=3))
    rng = random.Random(5)
    rows: list[EventRow] = []
    for i in range(12):
        rows += session(f"s{i}", timedelta(hours=i), buys=rng.random() < 0.4, device=f"d{i}")
    head, tail = rows[:30], rows[30:]
    run(learner, head)
    learner.expire(head[-1].event_at)
    clone = pickle.loads(pickle.dumps(learner))
    assert clone.pending.keys() == learner.pending.keys()
    a, b = run(learner, tail), run(clone, tail)
    assert a == b
    end = T0 + timedelta(days=1)
    assert [f.record for f in learner.expire(end)] == [f.record for f in clone.expire(end)]
    assert [m.to_json() for m in learner.drain_metrics()] == [m.to_json() for m in clone.drain_metrics()]
    assert learner.online.predict_proba_one({"events": 2.0}) == clone.online.predict_proba_one({"events": 2.0})


def test_observe_never_mutates_row_or_snapshot() -> None:
    learner = PropensityLearner()
    for row in session("s", timedelta(0), buys=True):
        snapshot = DeviceFeatures().update(row)
        before_row, before_snapshot = copy.deepcopy(row), dict(snapshot)
        learner.observe(row, snapshot)
        assert row == before_row
        assert snapshot == before_snapshot


def test_the_model_learns_the_funnel() -> None:
    learner = PropensityLearner()
    rng = random.Random(1)
    for i in range(400):
        buys = rng.random() < 0.2
        rows = session(f"s{i}", timedelta(hours=i), buys=buys, device=f"d{i}")
        if not buys:
            rows = rows[: rng.choice((1, 2, 4))]  # non-buyers drop out anywhere; buyers reach checkout
        run(learner, rows)
        learner.expire(rows[-1].event_at)
    learner.expire(T0 + timedelta(days=30))
    assert learner.sessions_learned == 400
    # a third of the non-buyers reach checkout and look exactly like buyers: the best AUC is 2/3 + 1/3 / 2
    assert learner.metrics.roc_auc(ONLINE, "last") > 0.8
    device = DeviceFeatures()
    landing, *_, checkout = [device.update(row) for row in session("new", timedelta(days=40), buys=False)]
    assert learner.online.predict_proba_one(checkout)[True] > 0.25
    assert learner.online.predict_proba_one(landing)[True] < 0.05


# -- prequential metrics against a direct computation ------------------------------------------------


def brute_force_auc(pairs: list[tuple[float, bool]]) -> float:
    positives = [p for p, y in pairs if y]
    negatives = [p for p, y in pairs if not y]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in positives for b in negatives)
    return wins / (len(positives) * len(negatives))


def test_prequential_metrics_match_a_direct_computation() -> None:
    rng = random.Random(3)
    window = 200
    evaluator = PrequentialEvaluator(window=window, bins=10)
    pairs = []
    rows = []
    for i in range(500):
        y = rng.random() < 0.1
        p = round(min(max(rng.gauss(0.3 if y else 0.15, 0.1), 0.001), 0.999), 2)  # rounded: many ties
        pairs.append((p, y))
        rows += evaluator.update("m", "first", p, y, model_version="v", at=T0 + timedelta(seconds=i))
    recent = pairs[-window:]
    assert evaluator.roc_auc("m", "first") == pytest.approx(brute_force_auc(recent))
    assert roc_auc(pairs) == pytest.approx(brute_force_auc(pairs))
    log_loss = -sum(math.log(p if y else 1.0 - p) for p, y in recent) / window
    assert evaluator.log_loss("m", "first") == pytest.approx(log_loss)
    bins = evaluator.calibration("m", "first")
    assert sum(b.n for b in bins) == window
    for b in bins:
        members = [(p, y) for p, y in recent if b.low <= p < b.high]
        assert b.n == len(members)
        assert b.mean_predicted == pytest.approx(sum(p for p, _ in members) / len(members))
        assert b.observed_rate == pytest.approx(sum(y for _, y in members) / len(members))
    # two full windows closed (labels 1-200, 201-400); the rows of the second cover exactly its labels
    assert {r.window for r in rows} == {"first:1-200", "first:201-400", "first:1-400"}  # 1-400: cumulative
    second = {r.metric: r for r in rows if r.window == "first:201-400"}
    assert second["roc_auc"].value == pytest.approx(brute_force_auc(pairs[200:400]))
    assert second["base_rate"].value == pytest.approx(sum(y for _, y in pairs[200:400]) / window)
    assert second["roc_auc"].n == window
    cumulative = [r for r in rows if r.metric == "log_loss_cumulative"][-1]
    assert cumulative.value == pytest.approx(-sum(math.log(p if y else 1.0 - p) for p, y in pairs[:400]) / 400)
    assert {r.metric for r in evaluator.report(model_version="v", at=T0)} >= {"roc_auc", "log_loss"}


def test_calibration_of_a_perfectly_calibrated_predictor() -> None:
    rng = random.Random(0)
    pairs = []
    for _ in range(20000):
        p = rng.random()
        pairs.append((p, rng.random() < p))
    for b in calibration(pairs):
        assert abs(b.mean_predicted - b.observed_rate) < 0.03


def test_auc_without_both_classes_is_nan() -> None:
    assert math.isnan(roc_auc([(0.1, False), (0.2, False)]))
