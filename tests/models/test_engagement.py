"""Engagement scoring, and the model contract of the behaviour models (engagement, churn, bots)."""

from __future__ import annotations

import copy
import inspect
import pickle
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.scoring.bots import BotDetector
from models.scoring.churn import ChurnModel
from models.scoring.engagement import EngagementScorer, HistogramCDF, raw_score
from models.scoring.retention import RetentionTrigger
from models.scoring.sentiment import FeedbackSentiment
from schemas.records import EXAMPLE_ROW, EventRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def session(rng: random.Random, scale: float = 1.0) -> dict[str, float]:
    """A plausible finished human session; ``scale`` stretches its depth and times."""
    pages = max(1.0, round(rng.lognormvariate(1.0, 0.7) * scale))
    dwell = rng.lognormvariate(4.0, 1.0) * scale
    return {
        "events": pages * 4.0,
        "page_views": pages,
        "product_views": float(rng.randint(0, int(pages))),
        "dwell_seconds": dwell,
        "engaged_seconds": dwell * rng.uniform(0.3, 0.9),
        "max_scroll_depth": float(rng.choice((0, 25, 50, 75, 100))),
        "clicks": float(rng.randint(0, 3)),
    }


# --- the contract (STYLE.md 1 and 3), over every behaviour model ------------------------------------------


def row(person: str, day: float, event: str = "Product", **changes: Any) -> EventRow:
    base: dict[str, Any] = {"type": "page", "order_id": "", "revenue": None, "message_id": f"{person}-{event}-{day}"}
    if event == "Order Completed":
        base = {"type": "track", "order_id": f"o-{person}-{day}", "revenue": 50.0, "message_id": f"{person}-o-{day}"}
    fields = {"person_id": person, "session_id": f"s-{person}-{day}", "event": event, **base, **changes}
    return replace(EXAMPLE_ROW, event_at=T0 + timedelta(days=day), **fields)


class Case:
    """A factory with non-default settings, inputs to learn from, how to learn and how to predict."""

    def __init__(
        self,
        *,
        factory: Callable[..., Any],
        kwargs: dict[str, Any],
        learn: list[Any],
        learn_one: Callable[[Any, Any], None],
        predict_one: Callable[[Any], Any],
        before: Any,
    ) -> None:
        self.factory, self.kwargs, self.learn = factory, kwargs, learn
        self.learn_one, self.predict_one, self.before = learn_one, predict_one, before


def _churn_learn(model: ChurnModel, r: EventRow) -> None:
    model.observe(r)
    model.advance(r.event_at)


_RNG = random.Random(3)
_SESSIONS = [session(_RNG) for _ in range(60)]
_BOT = {"events": 40.0, "page_views": 40.0, "dwell_seconds": 30.0}
_CHURN_ROWS = [row(f"p{i % 6}", 9.0 * i, "Order Completed" if i % 3 == 0 else "Product") for i in range(24)]
_CHURN_QUERY = {"days_since_last_order": 40.0, "orders_total": 2.0, "sessions_30d": 1.0}

CASES = {
    "EngagementScorer": Case(
        factory=EngagementScorer,
        kwargs={"bins": 400, "max_raw": 6.0, "half_life": 500.0, "min_sessions": 5},
        learn=_SESSIONS,
        learn_one=lambda m, x: m.learn_one(x),
        predict_one=lambda m: m.score_one(_SESSIONS[0]),
        before=50.0,
    ),
    "BotDetector": Case(
        factory=BotDetector,
        kwargs={
            "threshold": 0.6,
            "min_pages": 4,
            "min_seconds_per_page": 1.5,
            "anomaly_weight": 1.0,
            "anomaly_quantile": 0.5,
            "n_trees": 5,
            "height": 6,
            "window_size": 10,
            "seed": 7,
            "remember_sessions": 100,
        },
        learn=_SESSIONS,
        learn_one=lambda m, x: m.learn_one(x),
        predict_one=lambda m: m.score_one(_BOT, user_agent="Mozilla/5.0"),
        before=0.99,  # rules only: machine timing and silence
    ),
    "ChurnModel": Case(
        factory=ChurnModel,
        kwargs={
            "horizon_days": 20.0,
            "checkin_days": 5.0,
            "max_silence_days": 60.0,
            "trend_days": 60.0,
            "frustration_days": 14.0,
            "prior": 0.7,
            "learning_rate": 0.05,
            "intercept_lr": 0.1,
            "l2": 0.001,
            "sentiment": FeedbackSentiment(clauses=False),
        },
        learn=_CHURN_ROWS,
        learn_one=_churn_learn,
        predict_one=lambda m: m.predict_proba_one(_CHURN_QUERY),
        before=0.7,  # the prior
    ),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def test_predicts_sensibly_before_learning(case: Case) -> None:
    assert case.predict_one(case.factory(**case.kwargs)) == pytest.approx(case.before)


@pytest.mark.parametrize("factory", [*(c.factory for c in CASES.values()), RetentionTrigger, FeedbackSentiment])
def test_defaults_are_immutable(factory: Callable[..., Any]) -> None:
    for parameter in inspect.signature(factory).parameters.values():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, parameter.name
        assert not isinstance(parameter.default, list | dict | set), parameter.name


def test_constructor_arguments_are_stored_unchanged(case: Case) -> None:
    model = case.factory(**case.kwargs)
    for name, given_value in case.kwargs.items():
        assert getattr(model, name) is given_value, name
    assert set(inspect.signature(case.factory).parameters) == set(case.kwargs)


def test_learning_does_not_mutate_its_input(case: Case) -> None:
    model = case.factory(**case.kwargs)
    for x in case.learn:
        before = copy.deepcopy(x)
        case.learn_one(model, x)
        assert x == before


def test_pickle_round_trip_predicts_the_same_and_keeps_learning_the_same(case: Case) -> None:
    model = case.factory(**case.kwargs)
    for x in case.learn[:-1]:
        case.learn_one(model, x)
    clone = pickle.loads(pickle.dumps(model))
    assert case.predict_one(clone) == case.predict_one(model)
    case.learn_one(model, case.learn[-1])
    case.learn_one(clone, case.learn[-1])
    assert case.predict_one(clone) == case.predict_one(model)


def test_learning_changes_predictions(case: Case) -> None:
    # Guards the tests above against a model that ignores what it is taught.
    model = case.factory(**case.kwargs)
    before = case.predict_one(model)
    for x in case.learn:
        case.learn_one(model, x)
    assert case.predict_one(model) != before


# --- engagement ----------------------------------------------------------------------------------------------


def test_a_typical_session_scores_50_after_learning_a_distribution() -> None:
    rng = random.Random(11)
    scorer = EngagementScorer()
    sessions = [session(rng) for _ in range(3000)]
    for x in sessions:
        scorer.learn_one(x)
    ranked = sorted(sessions, key=raw_score)
    assert scorer.score_one(ranked[len(ranked) // 2]) == pytest.approx(50.0, abs=1.0)
    assert scorer.score_one(ranked[len(ranked) // 10]) == pytest.approx(10.0, abs=1.0)
    assert scorer.score_one(ranked[-1]) > 99.0
    fresh = [scorer.score_one(session(rng)) for _ in range(2000)]  # new sessions of the same kind
    assert sorted(fresh)[1000] == pytest.approx(50.0, abs=3.0)


def test_scores_50_until_min_sessions_then_ranks() -> None:
    scorer = EngagementScorer(min_sessions=3)
    deep = {"page_views": 30.0, "dwell_seconds": 1200.0}
    for _ in range(2):
        scorer.learn_one({"page_views": 1.0})
    assert scorer.score_one(deep) == 50.0
    scorer.learn_one({"page_views": 2.0})
    assert scorer.score_one(deep) == 100.0
    assert scorer.score_one({}) == 0.0


_COUNT = st.floats(min_value=0.0, max_value=500.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(pages=_COUNT, more_pages=_COUNT, dwell=st.floats(0.0, 7200.0), more_dwell=st.floats(0.0, 7200.0))
def test_score_is_monotone_in_depth_and_dwell(pages: float, more_pages: float, dwell: float, more_dwell: float) -> None:
    scorer = _TRAINED
    x = {"page_views": pages, "dwell_seconds": dwell, "engaged_seconds": dwell / 2}
    deeper = {**x, "page_views": pages + more_pages}
    longer = {**x, "dwell_seconds": dwell + more_dwell}
    assert scorer.score_one(deeper) >= scorer.score_one(x)
    assert scorer.score_one(longer) >= scorer.score_one(x)
    assert 0.0 <= scorer.score_one(x) <= 100.0


_TRAINED = EngagementScorer()
for _x in (session(random.Random(i)) for i in range(500)):
    _TRAINED.learn_one(_x)


def test_frustration_is_not_engagement() -> None:
    x = {"page_views": 3.0, "dwell_seconds": 60.0}
    assert raw_score({**x, "rage_clicks": 9.0, "dead_clicks": 4.0, "errors": 2.0}) == raw_score(x)


def test_half_life_follows_a_shift_in_what_is_typical() -> None:
    rng = random.Random(5)
    steady, forgetful = EngagementScorer(), EngagementScorer(half_life=200.0)
    for x in [session(rng) for _ in range(2000)] + [session(rng, scale=4.0) for _ in range(2000)]:
        steady.learn_one(x)
        forgetful.learn_one(x)
    typical_now = sorted((session(rng, scale=4.0) for _ in range(1001)), key=raw_score)[500]
    assert forgetful.score_one(typical_now) == pytest.approx(50.0, abs=5.0)
    assert steady.score_one(typical_now) > 60.0


def test_histogram_cdf_with_a_long_half_life_rescales_without_losing_shape() -> None:
    cdf = HistogramCDF(bins=100, half_life=2.0)  # the increment doubles every two values: rescales often
    for i in range(2000):
        cdf.learn_one((i % 100) / 100)
    assert 0.0 <= cdf.cdf(0.5) <= 1.0
    assert cdf.quantile(0.0) <= cdf.quantile(0.5) <= cdf.quantile(1.0)


def test_histogram_cdf_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="bins"):
        HistogramCDF(bins=0)
    with pytest.raises(ValueError, match="above"):
        HistogramCDF(lo=1.0, hi=1.0)
    with pytest.raises(ValueError, match="half_life"):
        EngagementScorer(half_life=0.0)
