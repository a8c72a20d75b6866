"""Customer value models: the model contract, RFM scoring and segments, the online CLV model, high-value alerts."""

from __future__ import annotations

import copy
import inspect
import math
import pickle
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.value import (
    CustomerSummary,
    CustomerValueModel,
    HighValueDetector,
    RFMScore,
    RFMScorer,
    segment,
)
from models.value.clv import DEFAULT_PRIOR, MBG_PRIOR
from models.value.gamma_gamma import GammaGammaParams
from models.value.rfm import SEGMENTS
from models.value.summary import DAY_MS
from schemas.value import EXAMPLE_VALUE, CustomerValue, HighValueAlert

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def order(person: str, day: float, revenue: float | None = 50.0, **extra: Any) -> dict[str, Any]:
    return {"person_id": person, "at": T0 + timedelta(days=day), "revenue": revenue, **extra}


def value(person: str, revenue: float, **changes: Any) -> CustomerValue:
    return replace(EXAMPLE_VALUE, person_id=person, expected_revenue=revenue, **changes)


# --- the model contract (STYLE.md 1 and 3), over every model of the package -------------------------------


class Case:
    """A model factory with non-default settings, inputs to learn from, and an input to predict."""

    def __init__(self, factory: Callable[..., Any], kwargs: dict[str, Any], learn: list[Any], query: Any) -> None:
        self.factory, self.kwargs, self.learn, self.query = factory, kwargs, learn, query


CASES = {
    "CustomerValueModel": Case(
        CustomerValueModel,
        {
            "horizon_days": 90.0,
            "currency": "EUR",
            "fx_rates": {"USD": 1.08},
            "refit_every": 3,
            "min_customers": 2,
            "min_repeat_customers": 1,
            "prior": MBG_PRIOR,
            "spend_prior": GammaGammaParams(p=5.0, q=3.0, gamma=30.0),
            "penalizer": 0.5,
            "spend_includes_first_order": False,
            "rfm": RFMScorer(window_size=100),
            "rfm_samples_per_order": 3,
            "seed": 11,
        },
        [order("a", 0), order("a", 9, 70.0, currency="USD"), order("b", 3, 20.0), order("c", 5), order("a", 20)],
        {"person_id": "a"},
    ),
    "RFMScorer": Case(
        RFMScorer,
        {"window_size": 50},
        [{"recency_days": float(i), "frequency": 1.0 + i % 3, "monetary": 10.0 * i} for i in range(20)],
        {"recency_days": 4.0, "frequency": 2.0, "monetary": 55.0},
    ),
    "HighValueDetector": Case(
        HighValueDetector,
        {"top_share": 0.2, "min_customers": 3, "hysteresis": 0.05},
        [value(f"p{i}", 10.0 * i) for i in range(10)],
        value("p3", 500.0),
    ),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def test_predicts_before_learning(case: Case) -> None:
    prediction = case.factory().predict_one(case.query)
    assert prediction is not None
    if isinstance(prediction, CustomerValue):
        assert prediction.segment == "prospect"
        assert prediction.expected_revenue == 0.0
    elif isinstance(prediction, RFMScore):
        assert prediction.segment == "need_attention"
    else:
        assert prediction is False  # no top share before min_customers


def test_constructor_arguments_are_stored_unchanged(case: Case) -> None:
    model = case.factory(**case.kwargs)
    for name, given_value in case.kwargs.items():
        assert getattr(model, name) is given_value, name
    assert set(inspect.signature(case.factory).parameters) == set(case.kwargs)


def test_defaults_are_immutable(case: Case) -> None:
    for parameter in inspect.signature(case.factory).parameters.values():
        assert not isinstance(parameter.default, list | dict | set), parameter.name


def test_learn_one_does_not_mutate_its_input(case: Case) -> None:
    model = case.factory(**case.kwargs)
    for x in case.learn:
        before = copy.deepcopy(x)
        model.learn_one(x)
        assert x == before


def test_pickle_round_trip_predicts_the_same_and_keeps_learning_the_same(case: Case) -> None:
    model = case.factory(**case.kwargs)
    for x in case.learn[:-1]:
        model.learn_one(x)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.predict_one(case.query) == model.predict_one(case.query)
    model.learn_one(case.learn[-1])
    clone.learn_one(case.learn[-1])
    assert clone.predict_one(case.query) == model.predict_one(case.query)


def test_learning_changes_predictions(case: Case) -> None:
    # Guards the contract tests above against a model that ignores what it is taught.
    model = case.factory(**case.kwargs)
    before = model.predict_one(case.query)
    for x in case.learn:
        model.learn_one(x)
    assert model.predict_one(case.query) != before


# --- RFM ---------------------------------------------------------------------------------------------------


def test_segment_grid_covers_every_score_pair_with_the_eleven_segments() -> None:
    cells = {(r, fm): segment(r, fm) for r in range(1, 6) for fm in range(1, 6)}
    assert set(cells.values()) == set(SEGMENTS)
    assert len(SEGMENTS) == 11
    assert cells[5, 5] == "champions"
    assert cells[1, 1] == "lost"
    assert cells[2, 1] == "hibernating"
    assert cells[1, 5] == "cant_lose"
    assert cells[5, 1] == "new"
    assert cells[4, 1] == "promising"
    assert cells[3, 3] == "need_attention"
    with pytest.raises(ValueError, match="1-5"):
        segment(0, 3)


def test_rfm_scores_are_quintiles_with_recency_reversed() -> None:
    rfm = RFMScorer()
    for i in range(1, 101):
        rfm.learn_one({"recency_days": float(i), "frequency": float(i), "monetary": float(i)})
    assert rfm.cut_points("monetary") == pytest.approx([20.5, 40.5, 60.5, 80.5], abs=0.5)
    scores = [
        rfm.predict_one({"recency_days": v, "frequency": v, "monetary": v}) for v in (5.0, 30.0, 50.0, 70.0, 95.0)
    ]
    assert [s.m_score for s in scores] == [1, 2, 3, 4, 5]
    assert [s.f_score for s in scores] == [1, 2, 3, 4, 5]
    assert [s.r_score for s in scores] == [5, 4, 3, 2, 1]  # recent is good
    assert scores[0] == RFMScore(r_score=5, f_score=1, m_score=1, fm_score=1, segment="new")


def test_rfm_ties_get_the_middle_score() -> None:
    rfm = RFMScorer()
    for i in range(100):
        rfm.learn_one({"recency_days": float(i), "frequency": 1.0 if i < 85 else 2.0, "monetary": float(i)})
    # 85% buy once: every cut point but none is 1, so a one-time buyer is neither the lowest nor the highest.
    assert rfm.predict_one({"recency_days": 1.0, "frequency": 1.0, "monetary": 1.0}).f_score == 3
    assert rfm.predict_one({"recency_days": 1.0, "frequency": 2.0, "monetary": 1.0}).f_score == 5


def test_rfm_without_window_uses_p_square() -> None:
    rfm = RFMScorer(window_size=None)
    for i in range(1000):
        rfm.learn_one({"recency_days": float(i % 100), "frequency": 1.0, "monetary": float(i % 100)})
    cuts = rfm.cut_points("recency_days")
    assert cuts is not None
    assert cuts == pytest.approx([20.0, 40.0, 60.0, 80.0], abs=2.0)


# --- customer summaries ------------------------------------------------------------------------------------


def test_summary_handles_out_of_order_orders() -> None:
    s = CustomerSummary.first_order(at_ms=10 * DAY_MS, revenue=30.0, order_id="late")
    s = s.with_order(at_ms=2 * DAY_MS, revenue=70.0, order_id="early")
    assert (s.first_ms, s.last_ms, s.orders, s.first_revenue) == (2 * DAY_MS, 10 * DAY_MS, 2, 70.0)
    assert s.mean_repeat_order_value == 30.0
    assert s.has_order("late")
    assert not s.has_order("")


# --- the online CLV model ----------------------------------------------------------------------------------


def test_replayed_and_unusable_orders_are_counted_not_learned() -> None:
    model = CustomerValueModel()
    model.learn_one(order("a", 0, order_id="o1"))
    model.learn_one(order("a", 0, order_id="o1"))
    model.learn_one(order("a", 1, revenue=None))
    model.learn_one(order("a", 1, revenue=math.nan))
    model.learn_one(order("a", 1, revenue=-5.0))
    model.learn_one(order("", 1))
    model.learn_one(order("a", 1, currency="JPY"))
    assert model.summaries["a"].orders == 1
    assert model.skipped == {"duplicate": 1, "revenue": 3, "person": 1, "currency": 1}


def test_merging_people_keeps_every_order_under_the_merged_person() -> None:
    model = CustomerValueModel(seed=3)
    for person, day, order_id in [("a", 0, "o1"), ("b", 2, "o2"), ("c", 3, "o3"), ("b", 4, "o4")]:
        model.learn_one(order(person, day, order_id=order_id))
    assert model.merge_one("b", "a")  # into a customer
    assert model.merge_one("c", "d")  # into a new id
    assert not model.merge_one("x", "a")  # nothing to move
    assert {p: s.orders for p, s in model.summaries.items()} == {"a": 3, "d": 1}
    assert sorted(model._ids) == ["a", "d"]
    assert all(model._ids[model._slot[p]] == p for p in model._ids)
    assert model.summaries["a"].has_order("o4")
    model.learn_one(order("a", 5, order_id="o4"))  # a replay of b's order is still recognised
    assert model.skipped == {"duplicate": 1}
    model.learn_one(order("d", 6, order_id="o5"))  # RFM sampling draws from the ids that are left
    assert model.summaries["d"].orders == 2


def test_other_currencies_are_converted() -> None:
    model = CustomerValueModel(fx_rates={"EUR": 0.8})
    model.learn_one(order("a", 0, revenue=40.0, currency="EUR"))
    assert model.summaries["a"].revenue == pytest.approx(50.0)
    assert model.predict_one({"person_id": "a"}).currency == "USD"


def _stream(model: CustomerValueModel, people: int = 120) -> None:
    for i in range(people):
        for k in range(1 + i % 4):
            model.learn_one(order(f"p{i}", (i % 30) + 7.0 * k, 20.0 + i % 50, order_id=f"o{i}-{k}"))


def test_refits_every_n_orders_and_versions_its_output() -> None:
    model = CustomerValueModel(refit_every=100, min_customers=20, min_repeat_customers=5)
    assert model.predict_one({"person_id": "x"}).model_version == "bgnbd-gg.0"
    _stream(model)
    assert model.n_fits == 3
    assert model.params != DEFAULT_PRIOR
    assert model.predict_one({"person_id": "p5"}).model_version == f"bgnbd-gg.{model.n_fits}"
    assert model.orders_since_fit < 100


def test_no_fit_on_too_little_data_keeps_the_priors() -> None:
    model = CustomerValueModel(refit_every=1, min_customers=10)
    for i in range(5):
        model.learn_one(order(f"p{i}", i))
    assert not model.refit()
    assert model.params is DEFAULT_PRIOR
    v = model.predict_one({"person_id": "p1"})
    assert v.model_version == "bgnbd-gg.0"
    assert v.p_alive == 1.0  # BG/NBD: a one-time buyer has not had a chance to drop out
    assert 0 < v.expected_purchases < 10
    assert v.expected_revenue == pytest.approx(v.expected_purchases * (6.25 * (15.44 + 50.0)) / (6.25 + 2.74))


def test_values_scores_everyone_like_predict_one() -> None:
    model = CustomerValueModel(refit_every=0, min_customers=20, min_repeat_customers=5)
    _stream(model, people=60)
    assert model.refit()
    at = T0 + timedelta(days=80)
    everyone = {v.person_id: v for v in model.values(at=at)}
    assert len(everyone) == 60
    for pid in ("p0", "p7", "p33"):
        assert everyone[pid] == model.predict_one({"person_id": pid, "at": at})


@pytest.mark.parametrize("prior", [DEFAULT_PRIOR, MBG_PRIOR], ids=["bgnbd", "mbgnbd"])
def test_expected_revenue_is_expected_purchases_times_expected_order_value(prior: Any) -> None:
    # benchmarks/value.py splits the forecast into its halves (expected_revenue / expected_purchases is the
    # spend half) to find which one loses precision; that holds only while revenue is this plain product.
    model = CustomerValueModel(refit_every=0, min_customers=20, min_repeat_customers=5, prior=prior)
    _stream(model, people=60)
    assert model.refit()
    for v in model.values():
        spend = float(model.spend_params.expected_order_value(v.frequency, v.monetary))
        assert v.expected_purchases > 0
        assert v.expected_revenue == pytest.approx(v.expected_purchases * spend, rel=1e-12)
        assert v.expected_revenue != pytest.approx(v.expected_purchases * v.monetary, rel=1e-3)  # shrunk


def test_forecasts_fade_for_a_silent_customer() -> None:
    model = CustomerValueModel(refit_every=0, min_customers=20, min_repeat_customers=5)
    _stream(model, people=60)
    model.refit()
    soon = model.predict_one({"person_id": "p3", "at": T0 + timedelta(days=60)})
    later = model.predict_one({"person_id": "p3", "at": T0 + timedelta(days=400)})
    assert later.p_alive < soon.p_alive
    assert later.expected_revenue < soon.expected_revenue
    assert later.recency_days > soon.recency_days


def test_clock_follows_event_time_and_can_be_advanced() -> None:
    model = CustomerValueModel()
    model.learn_one(order("a", 10))
    model.learn_one(order("b", 3))  # late: the clock does not go back
    assert model.clock_ms == model.summaries["a"].last_ms
    model.advance_to(T0 + timedelta(days=40))
    assert model.predict_one({"person_id": "a"}).recency_days == pytest.approx(30.0)
    model.advance_to(T0)
    assert model.predict_one({"person_id": "a"}).recency_days == pytest.approx(30.0)


def test_forget_one_erases_a_person() -> None:
    model = CustomerValueModel()
    for person in ("a", "b", "c"):
        model.learn_one(order(person, 1))
    assert model.forget_one("a")
    assert not model.forget_one("a")
    assert model.predict_one({"person_id": "a"}).segment == "prospect"
    model.learn_one(order("d", 2))  # the sampling of RFM snapshots still only sees live customers
    assert set(model.summaries) == {"b", "c", "d"}


def test_mbg_prior_gives_mbg_predictions() -> None:
    model = CustomerValueModel(prior=MBG_PRIOR)
    model.learn_one(order("a", 0))
    model.advance_to(T0 + timedelta(days=60))
    v = model.predict_one({"person_id": "a"})
    assert v.model_version == "mbgnbd-gg.0"
    assert v.p_alive < 1.0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.floats(0.0, 200.0), st.floats(0.0, 500.0)), min_size=1, max_size=40))
def test_any_order_stream_gives_finite_bounded_values(orders: list[tuple[int, float, float]]) -> None:
    model = CustomerValueModel(refit_every=15, min_customers=3, min_repeat_customers=1)
    for person, day, revenue in orders:
        model.learn_one(order(f"p{person}", day, revenue))
    for v in model.values():
        assert 0.0 <= v.p_alive <= 1.0
        assert math.isfinite(v.expected_purchases)
        assert v.expected_purchases >= 0.0
        assert math.isfinite(v.expected_revenue)
        assert v.expected_revenue >= 0.0
        assert 1 <= v.r_score <= 5
        assert v.segment in SEGMENTS


# --- high-value detection ----------------------------------------------------------------------------------


def test_threshold_is_the_top_share_of_current_values() -> None:
    detector = HighValueDetector(top_share=0.1, min_customers=10)
    for i in range(100):
        detector.learn_one(value(f"p{i}", float(i)))
    assert detector.threshold == 90.0
    for i in range(100):  # re-scoring the same people does not change the population
        detector.learn_one(value(f"p{i}", float(i)))
    assert detector.threshold == 90.0
    assert len(detector.values) == 100


def test_alert_once_per_crossing_with_reasons() -> None:
    detector = HighValueDetector(top_share=0.1, min_customers=10, hysteresis=0.1)
    for i in range(20):
        detector.learn_one(value(f"p{i}", 10.0 * i))
    alert = detector.process_one(value("p3", 400.0, p_alive=0.8, frequency=6))
    assert isinstance(alert, HighValueAlert)
    assert alert.person_id == "p3"
    assert alert.threshold == 190.0
    assert alert.expected_revenue == 400.0
    assert "p_alive 0.80" in alert.reasons
    assert "frequency 6 orders" in alert.reasons
    assert alert.model_version == EXAMPLE_VALUE.model_version
    assert detector.process_one(value("p3", 420.0)) is None  # still above: no second alert
    assert detector.process_one(value("p3", 185.0)) is None  # dipped, but within the hysteresis band
    assert detector.process_one(value("p3", 400.0)) is None
    assert detector.process_one(value("p3", 50.0)) is None  # fell well below: re-armed
    assert detector.process_one(value("p3", 400.0)) is not None  # a new crossing
    assert detector.n_alerts == 2


def test_no_alert_before_min_customers_or_for_zero_forecasts() -> None:
    detector = HighValueDetector(top_share=0.5, min_customers=5)
    assert [detector.process_one(value(f"p{i}", 100.0 + i)) for i in range(4)] == [None] * 4
    assert detector.process_one(value("p9", 1000.0)) is not None
    zeros = HighValueDetector(top_share=1.0, min_customers=1)
    assert zeros.process_one(value("z", 0.0)) is None


@pytest.mark.parametrize("round_trip", ["pickle", "json"])
def test_state_survives_a_restart(round_trip: str) -> None:
    detector = HighValueDetector(top_share=0.1, min_customers=10)
    for i in range(30):
        detector.learn_one(value(f"p{i}", 10.0 * i))
    assert detector.process_one(value("p1", 1000.0)) is not None
    if round_trip == "pickle":
        restored = pickle.loads(pickle.dumps(detector))
    else:
        restored = HighValueDetector.from_json(detector.to_json())
    assert restored.threshold == detector.threshold
    assert restored.above == detector.above
    assert restored.n_alerts == detector.n_alerts
    assert restored.process_one(value("p1", 1100.0)) is None  # the crossing was already alerted
    assert restored.process_one(value("p2", 2000.0)) is not None  # a new one still is


def test_rescore_after_a_refit_alerts_the_people_it_moved_up() -> None:
    detector = HighValueDetector(top_share=0.1, min_customers=10, hysteresis=0.0)
    # One by one, each newcomer tops an ascending population and stays flagged until re-scored ...
    for i in range(30):
        detector.learn_one(value(f"p{i}", 10.0 * i))
    assert len(detector.above) > 3
    # ... a batch re-evaluates everyone against the same threshold.
    assert {a.person_id for a in detector.rescore([value(f"p{i}", 10.0 * i) for i in range(30)])} == set()
    assert detector.above == {"p27", "p28", "p29"}
    moved = [value(f"p{i}", 10.0 * (29 - i)) for i in range(30)]  # the refit reverses the order
    alerts = detector.rescore(moved)
    assert {a.person_id for a in alerts} == {"p0", "p1", "p2"}
    assert detector.above == {"p0", "p1", "p2"}


def test_forget_one_erases_a_person_from_the_detector() -> None:
    detector = HighValueDetector(top_share=0.5, min_customers=1)
    detector.learn_one(value("a", 10.0))
    detector.learn_one(value("b", 20.0))
    assert detector.forget_one("b")
    assert not detector.forget_one("b")
    assert detector.threshold == 10.0
    assert "b" not in detector.above


def test_detector_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="top_share"):
        HighValueDetector(top_share=0.0)
    with pytest.raises(ValueError, match="hysteresis"):
        HighValueDetector(hysteresis=1.0)


def test_end_to_end_value_agent_flow() -> None:
    # What the value agent does per order: learn, predict, detect; then after a refit: rescore everyone.
    model = CustomerValueModel(refit_every=40, min_customers=20, min_repeat_customers=5)
    detector = HighValueDetector(top_share=0.1, min_customers=20)
    alerts: list[HighValueAlert] = []
    fits = 0
    for i in range(80):
        for k in range(1 + (i % 5 == 0) * 4):
            model.learn_one(order(f"p{i}", i / 2 + 5.0 * k, 30.0 + (i % 7) * 20, order_id=f"o{i}-{k}"))
            alert = detector.process_one(model.predict_one({"person_id": f"p{i}"}))
            if alert is not None:
                alerts.append(alert)
            if model.n_fits != fits:
                fits = model.n_fits
                alerts += detector.rescore(model.values())
    assert fits >= 2
    assert alerts
    heavy = {a.person_id for a in alerts}
    assert heavy & {f"p{i}" for i in range(0, 80, 5)}  # the 5-order customers are among those alerted
