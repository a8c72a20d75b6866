"""Budget allocation: curve fits, every limit under random curves and limits, optimality, errors and records."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from models.budget import MODEL_VERSION, Allocation, AllocationError, ResponseCurve, allocate, fit_curves
from schemas.attribution import BUDGET_RECOMMENDATION_COLUMNS, EXAMPLE_RECOMMENDATION, BudgetRecommendation
from schemas.errors import RevstreamError

CENT = 0.01 + 1e-9


# --- curves ---------------------------------------------------------------------------------------------


def test_hill_fit_recovers_the_curve_from_noisy_days() -> None:
    rng = np.random.default_rng(0)
    spend = rng.uniform(50, 6000, size=60)
    truth = ResponseCurve.hill(vmax=8000.0, half_saturation=900.0, shape=0.7)
    revenue = truth.revenue(spend) * rng.normal(1.0, 0.02, size=60)
    curve = ResponseCurve.fit(spend.tolist(), revenue.tolist())
    assert (curve.kind, curve.note, curve.n_obs) == ("hill", "", 60)
    assert curve.r2 > 0.98
    # the parameters trade off against each other under noise; the curve itself is what must be right
    assert curve.scale == pytest.approx(8000, rel=0.1)
    assert curve.half_saturation == pytest.approx(900, rel=0.15)
    assert curve.shape == pytest.approx(0.7, abs=0.1)
    for s in (500.0, 1000.0, 3000.0, 6000.0):
        assert float(curve.revenue(s)) == pytest.approx(float(truth.revenue(s)), rel=0.02)


def test_log_fallback_when_data_is_thin_or_hill_does_not_fit() -> None:
    thin = ResponseCurve.fit([100.0, 200.0, 300.0], [90.0, 150.0, 190.0])
    assert (thin.kind, thin.note) == ("log", "3 points, fewer than 8")
    assert thin.revenue(200.0) == pytest.approx(150.0, rel=0.05)
    same_spend = ResponseCurve.fit([100.0] * 9 + [200.0], [50.0 + i for i in range(10)])
    assert (same_spend.kind, same_spend.note) == ("log", "fewer than 3 distinct spends")
    # revenue that keeps growing like a logarithm is fitted better by the log curve than a saturating Hill
    spend = np.linspace(10, 1e5, 40)
    growing = ResponseCurve.fit(spend.tolist(), (300 * np.log1p(spend / 5)).tolist())
    assert growing.kind == "log"
    assert growing.r2 > 0.999
    assert growing.describe().startswith("log r2=1.00 n=40")


def test_no_usable_points_give_a_flat_curve() -> None:
    for spend, revenue in (([], []), ([0.0, 0.0], [5.0, 6.0]), ([10.0, math.nan, -1.0], [0.0, 5.0, 5.0])):
        curve = ResponseCurve.fit(spend, revenue)
        assert curve.scale == 0.0
        assert curve.note == "no spend or no revenue"
        assert float(curve.revenue(100.0)) == 0.0
    assert fit_curves({"a": [(1.0, 2.0)], "b": []}).keys() == {"a", "b"}


def test_marginal_is_the_derivative() -> None:
    for curve in (
        ResponseCurve.hill(vmax=100.0, half_saturation=50.0, shape=0.6),
        ResponseCurve.log(scale=40.0, bend=20.0),
    ):
        for s in (1.0, 30.0, 500.0):
            numeric = (curve.revenue(s + 1e-4) - curve.revenue(s - 1e-4)) / 2e-4
            assert float(curve.marginal(s)) == pytest.approx(float(numeric), rel=1e-6)


# --- allocation under limits ----------------------------------------------------------------------------

curve_strategy = st.one_of(
    st.builds(
        ResponseCurve.hill,
        vmax=st.floats(10, 1e5),
        half_saturation=st.floats(1, 1e4),
        shape=st.floats(0.1, 1.0),
    ),
    st.builds(ResponseCurve.log, scale=st.floats(0, 1e4), bend=st.floats(1, 1e4)),
)


@dataclass(kw_only=True)
class Problem:
    curves: dict[str, ResponseCurve]
    current: dict[str, float]
    min_spend: dict[str, float]
    max_spend: dict[str, float]
    max_change: float | None
    overrides: dict[str, float]
    total: float
    lo: dict[str, float]  # the bounds every limit implies, computed here independently of the module
    hi: dict[str, float]

    @property
    def feasible(self) -> bool:
        return (
            all(self.lo[c] <= self.hi[c] + 1e-9 for c in self.lo)
            and sum(self.lo.values()) <= self.total + 0.005
            and sum(self.hi.values()) >= self.total - 0.005
        )

    def run(self) -> Allocation:
        return allocate(
            self.curves,
            total_budget=self.total,
            current=self.current,
            min_spend=self.min_spend,
            max_spend=self.max_spend,
            max_change=self.max_change,
            overrides=self.overrides,
        )


@st.composite
def problems(draw: st.DrawFn, spend_current: bool = False) -> Problem:
    n = draw(st.integers(1, 7))
    channels = [f"c{i}" for i in range(n)]
    curves = {c: draw(curve_strategy) for c in channels}
    current = {c: draw(st.floats(0, 1e4)) for c in channels}
    max_change = draw(st.one_of(st.none(), st.floats(0.0, 1.0)))
    min_spend: dict[str, float] = {}
    max_spend: dict[str, float] = {}
    overrides: dict[str, float] = {}
    for c in channels:
        kind = draw(st.sampled_from(["free", "min", "max", "both", "override"]))
        if kind == "override" and not spend_current:
            overrides[c] = round(draw(st.floats(0, 1e4)), 2)
            continue
        if kind in ("min", "both"):
            min_spend[c] = current[c] * draw(st.floats(0, 1)) if spend_current else draw(st.floats(0, 1e4))
        if kind in ("max", "both"):
            max_spend[c] = current[c] * draw(st.floats(1, 3)) if spend_current else draw(st.floats(0, 2e4))
    lo, hi = {}, {}
    for c in channels:
        if c in overrides:
            lo[c] = hi[c] = overrides[c]
            continue
        lo[c] = max(min_spend.get(c, 0.0), current[c] * (1 - max_change) if max_change is not None else 0.0)
        hi[c] = min(max_spend.get(c, math.inf), current[c] * (1 + max_change) if max_change is not None else math.inf)
    if spend_current:
        total = sum(current.values())
    else:
        floor = sum(lo.values())
        top = sum(hi.values()) if all(math.isfinite(h) for h in hi.values()) else floor + 5e4
        total = max(floor + draw(st.floats(-0.05, 1.05)) * (top - floor), 0.0)  # a few infeasible ones too
    return Problem(
        curves=curves,
        current=current,
        min_spend=min_spend,
        max_spend=max_spend,
        max_change=max_change,
        overrides=overrides,
        total=round(total, 2),
        lo=lo,
        hi=hi,
    )


def predicted(curves: dict[str, ResponseCurve], spend: dict[str, float]) -> float:
    return sum(float(curves[c].revenue(s)) for c, s in spend.items())


def tolerance(curves: dict[str, ResponseCurve], spend: dict[str, float]) -> float:
    # rounding to cents moves each channel by at most a cent: at most a cent's worth of marginal revenue
    return sum(0.011 * float(curves[c].marginal(max(s - 0.01, 0.0))) for c, s in spend.items()) + 1e-9


def random_feasible(problem: Problem, rng: random.Random) -> dict[str, float]:
    spend = dict(problem.lo)
    left = problem.total - sum(spend.values())
    order = list(spend)
    for rounds in range(3):
        rng.shuffle(order)
        for c in order:
            step = min(min(problem.hi[c], problem.total) - spend[c], left * (rng.random() if rounds < 2 else 1.0))
            spend[c] += step
            left -= step
    return spend


@settings(max_examples=60, deadline=None)
@given(problems())
def test_every_limit_holds(problem: Problem) -> None:
    if not problem.feasible:
        with pytest.raises(AllocationError):
            problem.run()
        return
    result = problem.run()
    assert abs(sum(result.spend.values()) - problem.total) < CENT
    assert all(round(s, 2) == s for s in result.spend.values())
    for c, s in result.spend.items():
        assert problem.lo[c] - CENT <= s <= problem.hi[c] + CENT
    for c, amount in problem.overrides.items():
        assert result.spend[c] == amount
        assert result.limits[c] == "override"
    if problem.max_change is not None:
        for c, s in result.spend.items():
            if c not in problem.overrides:
                assert abs(s - problem.current[c]) <= problem.max_change * problem.current[c] + CENT
    # optimal: no random feasible allocation does better
    rng = random.Random(0)
    best = predicted(problem.curves, result.spend)
    assert best == pytest.approx(result.total_revenue)
    if not sum(problem.lo.values()) <= problem.total <= sum(problem.hi.values()):
        return  # feasible only within the half-cent tolerance: no exactly feasible alternatives to compare
    for _ in range(5):
        other = random_feasible(problem, rng)
        assert abs(sum(other.values()) - problem.total) < 1e-6
        assert best >= predicted(problem.curves, other) - tolerance(problem.curves, result.spend)


@settings(max_examples=40, deadline=None)
@given(problems(spend_current=True))
def test_the_optimum_is_at_least_as_good_as_the_current_split(problem: Problem) -> None:
    result = problem.run()
    assert result.total_revenue >= result.current_total_revenue - tolerance(problem.curves, result.spend)
    assert result.current_total_revenue == pytest.approx(predicted(problem.curves, problem.current))


def slsqp_optimum(curves: dict[str, ResponseCurve], total: float, bounds: Sequence[tuple[float, float]]) -> float:
    names = list(curves)
    start = np.array([min(hi, total / len(names)) for _, hi in bounds])
    start += (total - start.sum()) / len(names)
    solution = minimize(
        lambda x: -sum(float(curves[c].revenue(v)) for c, v in zip(names, x, strict=True)),
        np.clip(start, 0, [hi for _, hi in bounds]),
        method="SLSQP",
        bounds=list(bounds),
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - total}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    return float(-solution.fun)


def test_matches_a_general_solver() -> None:
    rng = np.random.default_rng(11)
    for _ in range(5):
        curves = {
            f"c{i}": ResponseCurve.hill(
                vmax=float(rng.uniform(1e3, 1e4)),
                half_saturation=float(rng.uniform(100, 2000)),
                shape=float(rng.uniform(0.3, 1)),
            )
            for i in range(5)
        }
        result = allocate(curves, total_budget=5000.0, current=dict.fromkeys(curves, 1000.0), max_spend={"c0": 500.0})
        assert result.total_revenue >= slsqp_optimum(curves, 5000.0, [(0, 500)] + [(0, 5000)] * 4) - 0.05
        assert result.spend["c0"] <= 500.0


def test_flat_and_missing_curves_are_held_at_their_lower_limit() -> None:
    curves = {
        "good": ResponseCurve.hill(vmax=1000.0, half_saturation=100.0),
        "dead": ResponseCurve.log(scale=0.0, bend=1.0),
    }
    result = allocate(
        curves, total_budget=300.0, current={"good": 100.0, "dead": 100.0, "new": 50.0}, min_spend={"new": 20.0}
    )
    assert result.spend == {"dead": 0.0, "good": 280.0, "new": 20.0}
    assert result.limits == {"dead": "optimal", "good": "optimal", "new": "min_spend"}
    assert result.notes["new"] == "no curve"
    # saturated: the money that no curve wants is still spent, within the limits
    saturated = allocate({"a": ResponseCurve.log(scale=0.0, bend=1.0)}, total_budget=123.45, current={"a": 0.0})
    assert saturated.spend == {"a": 123.45}


def test_infeasible_limits_raise_a_clear_error() -> None:
    curves = {
        "a": ResponseCurve.hill(vmax=100.0, half_saturation=10.0),
        "b": ResponseCurve.hill(vmax=100.0, half_saturation=10.0),
    }
    cases = [
        ({"min_spend": {"a": 80.0, "b": 30.0}}, "minimum spends add up to 110.00"),
        ({"max_spend": {"a": 10.0, "b": 10.0}}, "maximum spends add up to 20.00"),
        ({"min_spend": {"a": 50.0}, "max_spend": {"a": 40.0}}, "a: the lower limit 50.00 \\(min_spend\\)"),
        ({"min_spend": {"a": 80.0}, "max_change": 0.1}, "above the upper limit 55.00 \\(max_increase\\)"),
        ({"overrides": {"a": -1.0}}, "override of a"),
        ({"overrides": {"a": 60.0, "b": 60.0}}, "minimum spends add up to 120.00"),
    ]
    for limits, message in cases:
        with pytest.raises(AllocationError, match=message):
            allocate(curves, total_budget=100.0, current={"a": 50.0, "b": 50.0}, **limits)  # type: ignore[arg-type]
    with pytest.raises(AllocationError, match="total budget"):
        allocate(curves, total_budget=math.nan, current={})
    with pytest.raises(AllocationError, match="concave"):
        allocate({"a": ResponseCurve.hill(vmax=1.0, half_saturation=1.0, shape=2.0)}, total_budget=1.0, current={})
    assert issubclass(AllocationError, RevstreamError)


# --- records --------------------------------------------------------------------------------------------


def test_recommendations() -> None:
    curves = fit_curves({"search": [(s, 5000 * s / (800 + s)) for s in range(200, 2200, 100)]})
    curves["social"] = ResponseCurve.hill(vmax=2000.0, half_saturation=400.0)
    result = allocate(curves, total_budget=2000.0, current={"search": 1000.0, "social": 1000.0}, max_change=0.2)
    records = result.recommendations(
        day=date(2026, 11, 2), currency="USD", computed_at=datetime(2026, 11, 1, tzinfo=UTC)
    )
    assert [r.channel for r in records] == ["search", "social"]
    search, social = records
    assert (search.recommended_spend, social.recommended_spend) == (1200.0, 800.0)
    assert search.reason == f"max_increase; {curves['search'].describe()}"
    assert search.reason.startswith("max_increase; hill r2=1.00 n=20")
    assert social.reason == "max_decrease; hill r2=nan n=0"
    assert search.predicted_change > 0 > social.predicted_change
    assert search.model_version == MODEL_VERSION
    assert BudgetRecommendation.from_json(search.to_json()) == search


times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
money = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(max_examples=50)
@given(
    st.builds(
        BudgetRecommendation,
        day=st.dates(),
        channel=st.text(max_size=20),
        current_spend=money,
        recommended_spend=money,
        predicted_revenue=money,
        predicted_change=money,
        currency=st.sampled_from(["USD", "EUR"]),
        reason=st.text(max_size=40),
        computed_at=times,
        model_version=st.text(max_size=20),
    )
)
def test_recommendation_round_trips(record: BudgetRecommendation) -> None:
    assert BudgetRecommendation.from_json(record.to_json()) == record


def test_recommendation_columns() -> None:
    assert BUDGET_RECOMMENDATION_COLUMNS == (
        "day", "channel", "current_spend", "recommended_spend", "predicted_revenue", "predicted_change", "currency",
        "reason", "computed_at", "model_version", "schema_version",
    )  # fmt: skip
    assert BudgetRecommendation.from_json(EXAMPLE_RECOMMENDATION.to_json()) == EXAMPLE_RECOMMENDATION


def test_a_vanishingly_small_curve_is_treated_as_flat() -> None:
    """Found by hypothesis: a subnormal scale made the price bracket underflow (math domain error)."""
    curves = {"c0": ResponseCurve.log(scale=0.0, bend=1.0), "c1": ResponseCurve.log(scale=2.2250738585e-313, bend=1.0)}
    result = allocate(curves, total_budget=1.0, current={"c0": 0.0, "c1": 1.0})
    assert sum(result.spend.values()) == pytest.approx(1.0)
