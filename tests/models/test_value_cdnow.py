"""BG/NBD, MBG/NBD and Gamma-Gamma: the published CDNOW fits, the paper's worked example, gradients, numerics,
parameter recovery on data drawn from the models themselves, and properties of the forecasts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import check_grad
from scipy.special import hyp2f1

from benchmarks.value import cdnow_split
from models.value.bgnbd import BgNbdParams, MbgNbdParams, _log_likelihood
from models.value.clv import DEFAULT_PRIOR, MBG_PRIOR
from models.value.fitting import FitError
from models.value.gamma_gamma import GammaGammaParams
from models.value.gamma_gamma import _log_likelihood as _gg_log_likelihood

DATA = Path(__file__).resolve().parent.parent / "data" / "cdnow_summary.csv"
CDNOW_SHA256 = "7ddd11b55be3227edfc1d58675154e96971b0de3ad37ddd9280d1dba154b8b2f"
PUBLISHED_BGNBD = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
PUBLISHED_GAMMA_GAMMA = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
TRANSACTIONS = DATA.with_name("cdnow_transactions.txt")
TRANSACTIONS_SHA256 = "6fae10155c0b0ba363c2c386e30f77990d22328220efd862a5edd1443420d94a"
Summary = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def cdnow() -> Summary:
    data = np.genfromtxt(DATA, delimiter=",", names=True)
    return data["x"], data["t_x"], data["T"], data["zbar"]


@pytest.fixture(scope="module")
def bgnbd_fit(cdnow: Summary) -> BgNbdParams:
    x, t_x, age, _ = cdnow
    return BgNbdParams.fit(x, t_x, age)


@pytest.fixture(scope="module")
def gamma_gamma_fit(cdnow: Summary) -> GammaGammaParams:
    x, _, _, zbar = cdnow
    return GammaGammaParams.fit(x, zbar)


def test_cdnow_file_is_the_2357_customer_summary(cdnow: Summary) -> None:
    x, t_x, age, zbar = cdnow
    assert len(x) == 2357
    assert int(np.count_nonzero(x)) == 946
    assert hashlib.sha256(DATA.read_bytes()).hexdigest() == CDNOW_SHA256  # as shipped, see tests/data/README.md
    assert np.all((t_x <= age) & (age <= 39))
    assert np.all((x > 0) == (zbar > 0))


def test_the_transaction_file_cut_at_week_39_is_the_published_summary(cdnow: Summary) -> None:
    """``benchmarks/value.py`` forecasts CDNOW's holdout from this cut, so it must be the summary the fits use."""
    assert hashlib.sha256(TRANSACTIONS.read_bytes()).hexdigest() == TRANSACTIONS_SHA256
    split = cdnow_split(TRANSACTIONS)

    def rows(*columns: np.ndarray) -> np.ndarray:
        table = np.round(np.column_stack(columns), 2)
        return table[np.lexsort(table.T[::-1])]

    np.testing.assert_allclose(
        rows(split.x, split.t_x, split.T, split.zbar), rows(*cdnow), atol=0.011
    )  # both rounded to 0.01
    assert (int(split.holdout_purchases.sum()), int(np.count_nonzero(split.holdout_purchases))) == (1882, 684)


@pytest.mark.parametrize("name", ["r", "alpha", "a", "b"])
def test_bgnbd_fit_matches_published_cdnow_parameters(bgnbd_fit: BgNbdParams, name: str) -> None:
    assert getattr(bgnbd_fit, name) == pytest.approx(getattr(PUBLISHED_BGNBD, name), rel=0.01)


@pytest.mark.parametrize("name", ["p", "q", "gamma"])
def test_gamma_gamma_fit_matches_published_cdnow_parameters(gamma_gamma_fit: GammaGammaParams, name: str) -> None:
    assert getattr(gamma_gamma_fit, name) == pytest.approx(getattr(PUBLISHED_GAMMA_GAMMA, name), rel=0.01)


def test_fits_are_maxima(cdnow: Summary, bgnbd_fit: BgNbdParams, gamma_gamma_fit: GammaGammaParams) -> None:
    x, t_x, age, zbar = cdnow
    assert bgnbd_fit.log_likelihood(x, t_x, age).sum() >= PUBLISHED_BGNBD.log_likelihood(x, t_x, age).sum()
    assert bgnbd_fit.log_likelihood(x, t_x, age).sum() == pytest.approx(-9582.43, abs=0.01)  # FHL 2005
    repeat = x > 0
    fitted = gamma_gamma_fit.log_likelihood(x[repeat], zbar[repeat]).sum()
    assert fitted >= PUBLISHED_GAMMA_GAMMA.log_likelihood(x[repeat], zbar[repeat]).sum()


def test_fhl_worked_example() -> None:
    # FHL 2005, section 5: a customer with x = 2, t_x = 30.43, T = 38.86 expects 1.226 purchases in 39 weeks.
    assert float(PUBLISHED_BGNBD.expected_purchases(39, 2, 30.43, 38.86)) == pytest.approx(1.226, abs=5e-4)


def test_mbgnbd_cdnow_fit_is_stable(cdnow: Summary) -> None:
    # No published MBG/NBD fit of CDNOW in FHL; these are our figures, used as the MBG prior in days.
    x, t_x, age, _ = cdnow
    fit = MbgNbdParams.fit(x, t_x, age)
    reference = MBG_PRIOR.in_unit(1 / 7)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fit, name) == pytest.approx(getattr(reference, name), rel=0.01)
    assert DEFAULT_PRIOR.alpha == pytest.approx(7 * PUBLISHED_BGNBD.alpha)


@pytest.mark.parametrize("shift", [0, 1])
def test_bgnbd_gradient_is_the_derivative_of_the_likelihood(cdnow: Summary, shift: int) -> None:
    x, t_x, age, _ = cdnow
    theta = np.array([0.3, 5.0, 0.9, 2.0])

    def value(t: np.ndarray) -> float:
        return float(_log_likelihood(t, x, t_x, age, shift=shift)[0].sum())

    def grad(t: np.ndarray) -> np.ndarray:
        return _log_likelihood(t, x, t_x, age, shift=shift)[1].sum(axis=1)

    assert check_grad(value, grad, theta) / np.linalg.norm(grad(theta)) < 1e-5


def test_gamma_gamma_gradient_is_the_derivative_of_the_likelihood(cdnow: Summary) -> None:
    x, _, _, zbar = cdnow
    repeat = x > 0
    theta = np.array([3.0, 2.0, 10.0])

    def value(t: np.ndarray) -> float:
        return float(_gg_log_likelihood(t, x[repeat], zbar[repeat])[0].sum())

    def grad(t: np.ndarray) -> np.ndarray:
        return _gg_log_likelihood(t, x[repeat], zbar[repeat])[1].sum(axis=1)

    assert check_grad(value, grad, theta) / np.linalg.norm(grad(theta)) < 1e-5


def test_expected_purchases_equals_the_untransformed_formula() -> None:
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    for x, t_x, age, t in [(0, 0.0, 0.0, 52.0), (0, 0.0, 20.0, 10.0), (3, 12.0, 30.0, 39.0), (7, 35.0, 38.0, 100.0)]:
        z = t / (alpha + age + t)
        bracket = 1 - ((alpha + age) / (alpha + age + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        alive = 1.0 if x == 0 else 1 / (1 + a / (b + x - 1) * ((alpha + age) / (alpha + t_x)) ** (r + x))
        direct = (a + b + x - 1) / (a - 1) * bracket * alive
        assert float(PUBLISHED_BGNBD.expected_purchases(t, x, t_x, age)) == pytest.approx(direct, rel=1e-9)


def test_expected_purchases_is_continuous_through_a_equal_one() -> None:
    values = [
        float(BgNbdParams(r=0.5, alpha=10.0, a=a, b=2.0).expected_purchases(20.0, 2, 5.0, 12.0))
        for a in (1.0 - 1e-4, 1.0, 1.0 + 1e-4)
    ]
    assert values[0] == pytest.approx(values[1], rel=1e-3)
    assert values[2] == pytest.approx(values[1], rel=1e-3)


def test_huge_a_and_b_still_forecast() -> None:
    # a, b -> inf with a/(a+b) fixed is homogeneous dropout; the transformed series overflows there.
    huge = BgNbdParams(r=0.5, alpha=60.0, a=1e6, b=2.4e6).expected_purchases(90.0, [0, 1, 5, 50], [0, 10, 50, 60], 80)
    large = BgNbdParams(r=0.5, alpha=60.0, a=1e4, b=2.4e4).expected_purchases(90.0, [0, 1, 5, 50], [0, 10, 50, 60], 80)
    assert np.all(np.isfinite(huge))
    np.testing.assert_allclose(huge, large, rtol=1e-2)


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="t_x <= T"):
        PUBLISHED_BGNBD.p_alive(1, 5.0, 4.0)
    with pytest.raises(ValueError, match="finite and > 0"):
        BgNbdParams(r=0.0, alpha=1.0, a=1.0, b=1.0)
    with pytest.raises(FitError):
        GammaGammaParams.fit([0, 0], [0.0, 0.0])
    with pytest.raises(FitError):
        BgNbdParams.fit([], [], [])


def _draw(model: BgNbdParams, n: int, seed: int, age: float, horizon: float) -> dict[str, np.ndarray]:
    """Customers drawn from the model itself: calibration summary, holdout purchases, alive at T."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(model.r, 1 / model.alpha, n)
    dropout = rng.beta(model.a, model.b, n)
    ages = rng.uniform(age / 2, age, n)
    x, t_x, future, alive_at_t = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        now, alive = 0.0, not (model.dropout_at_first_purchase and rng.random() < dropout[i])
        while alive:
            now += rng.exponential(1 / rates[i])
            if now > ages[i] + horizon:
                break
            if now <= ages[i]:
                x[i], t_x[i] = x[i] + 1, now
            else:
                future[i] += 1
            alive = rng.random() >= dropout[i]
        alive_at_t[i] = alive or now > ages[i]
    return {"x": x, "t_x": t_x, "T": ages, "future": future, "alive": alive_at_t}


@pytest.mark.parametrize("cls", [BgNbdParams, MbgNbdParams])
def test_parameters_and_forecasts_are_recovered_from_simulated_customers(cls: type[BgNbdParams]) -> None:
    truth = cls(r=0.5, alpha=10.0, a=0.8, b=2.5)
    d = _draw(truth, 3000, seed=1, age=52.0, horizon=52.0)
    fit = cls.fit(d["x"], d["t_x"], d["T"])
    assert fit.r == pytest.approx(truth.r, rel=0.15)
    assert fit.alpha == pytest.approx(truth.alpha, rel=0.15)
    assert fit.a / (fit.a + fit.b) == pytest.approx(truth.a / (truth.a + truth.b), rel=0.15)
    realised = d["future"].sum()
    assert truth.expected_purchases(52.0, d["x"], d["t_x"], d["T"]).sum() == pytest.approx(realised, rel=0.05)
    assert fit.expected_purchases(52.0, d["x"], d["t_x"], d["T"]).sum() == pytest.approx(realised, rel=0.1)
    assert truth.p_alive(d["x"], d["t_x"], d["T"]).mean() == pytest.approx(d["alive"].mean(), abs=0.03)


def test_the_wrong_model_misses_dropout_at_the_first_purchase() -> None:
    # Data with dropout after the first purchase: BG/NBD calls every one-time buyer alive, MBG/NBD does not.
    truth = MbgNbdParams(r=0.5, alpha=10.0, a=0.8, b=2.5)
    d = _draw(truth, 2000, seed=2, age=52.0, horizon=1.0)
    one_time = d["x"] == 0
    bg = BgNbdParams.fit(d["x"], d["t_x"], d["T"]).p_alive(d["x"], d["t_x"], d["T"])[one_time]
    mbg = MbgNbdParams.fit(d["x"], d["t_x"], d["T"]).p_alive(d["x"], d["t_x"], d["T"])[one_time]
    share_alive = d["alive"][one_time].mean()
    assert share_alive < 0.7
    assert np.all(bg == 1.0)
    assert abs(mbg.mean() - share_alive) < (1.0 - share_alive) / 2
    exact = truth.p_alive(d["x"], d["t_x"], d["T"])[one_time]
    assert exact.mean() == pytest.approx(share_alive, abs=0.05)


params = st.builds(
    lambda cls, r, alpha, a, b: cls(r=r, alpha=alpha, a=a, b=b),
    st.sampled_from([BgNbdParams, MbgNbdParams]),
    st.floats(0.05, 5.0),
    st.floats(0.5, 500.0),
    st.floats(0.05, 20.0),
    st.floats(0.05, 20.0),
)
histories = st.tuples(st.integers(0, 60), st.floats(0.0, 1.0), st.floats(0.0, 400.0))


@settings(max_examples=150, deadline=None)
@given(params, histories, st.floats(0.5, 700.0), st.floats(1.01, 3.0))
def test_forecasts_are_probabilities_and_grow_with_the_horizon(
    model: BgNbdParams, history: tuple[int, float, float], t: float, factor: float
) -> None:
    x, share, age = history
    t_x = 0.0 if x == 0 else share * age
    alive = float(model.p_alive(x, t_x, age))
    short = float(model.expected_purchases(t, x, t_x, age))
    longer = float(model.expected_purchases(t * factor, x, t_x, age))
    assert 0.0 <= alive <= 1.0
    assert np.isfinite(short)
    assert np.isfinite(longer)
    assert 0.0 <= short <= longer * (1 + 1e-9) + 1e-12


@settings(max_examples=100, deadline=None)
@given(st.floats(0.5, 20.0), st.floats(1.1, 20.0), st.floats(1.0, 500.0), st.integers(1, 50), st.floats(1.0, 1e4))
def test_expected_order_value_lies_between_the_population_mean_and_the_customers_own(
    p: float, q: float, gamma: float, x: int, zbar: float
) -> None:
    model = GammaGammaParams(p=p, q=q, gamma=gamma)
    value = float(model.expected_order_value(x, zbar))
    low, high = sorted((model.population_mean, zbar))
    assert low * (1 - 1e-9) <= value <= high * (1 + 1e-9)
    assert float(model.expected_order_value(0, 0.0)) == pytest.approx(model.population_mean)
