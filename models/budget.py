"""Budget allocation: diminishing-returns response curves per channel, and the best split of a budget under limits.

Response curves. :meth:`ResponseCurve.fit` fits a channel's daily ``(spend, attributed revenue)`` points
with ``scipy.optimize.curve_fit`` to a Hill curve ``R(s) = vmax * s^k / (K^k + s^k)`` (``vmax`` the revenue
at saturation, ``K`` the spend at half of it, shape ``k``), or, when there are fewer than ``min_points``
points, fewer than 3 distinct spends, the Hill fit fails or fits clearly worse (RMSE 10% above), to
``R(s) = a * ln(1 + s / b)``. ``k`` is bounded to ``[0.1, 1]``: with ``k <= 1`` every curve is concave
(returns diminish from the first dollar), which makes the allocation below exactly solvable; an S-shaped
``k > 1`` would make it non-convex, and daily spend of a running channel rarely moves enough to identify a
threshold anyway. Fit quality is reported: ``r2`` (1 - SSE/SST around the mean revenue), ``rmse`` and
``n_obs``, with a ``note`` saying why the log form was used. Without usable points the curve is flat
(``a = 0``): such a channel is held at its lower limit.

Allocation. :func:`allocate` maximises ``sum_i R_i(s_i)`` subject to ``sum_i s_i = total_budget`` and per
channel ``lo_i <= s_i <= hi_i``, where ``lo``/``hi`` combine ``min_spend``/``max_spend`` with
``current * (1 -/+ max_change)``; an override fixes ``lo = hi`` to its amount and beats every other limit
(it is a person's decision). The problem is separable and concave, so the KKT conditions are sufficient and
the optimum is exact water-filling (Everett 1963; Boyd & Vandenberghe §5.5.3): for a price ``lambda`` each
channel spends ``s_i(lambda) = argmax R_i(s) - lambda s`` on its box, i.e. where its marginal return
``R_i'(s)`` equals ``lambda`` (clipped to the box; found by bisection), and ``sum s_i(lambda)`` is
non-increasing in ``lambda``, so a bracketing root search (Brent) on ``log lambda`` finds the price at which
the budget is spent. A general solver (SLSQP) would need tolerances and can stop short on flat curves; a
bracketing search cannot. Where a flat stretch makes the sum
jump, the final allocation is the convex combination of the two bracketing allocations that spends the
budget exactly, which stays optimal because the channels that move have equal marginal return. Amounts
are then rounded to cents with the largest-remainder rule so they add up to the budget exactly; overrides
are kept to the cent. Limits that cannot all hold raise :class:`AllocationError`.

>>> curves = {"search": ResponseCurve.hill(vmax=5000.0, half_saturation=1000.0),
...           "social": ResponseCurve.hill(vmax=3000.0, half_saturation=500.0)}
>>> a = allocate(curves, total_budget=2000.0, current={"search": 1000.0, "social": 1000.0}, max_change=0.5)
>>> a.spend, a.limits
({'search': 1261.39, 'social': 738.61}, {'search': 'optimal', 'social': 'optimal'})
>>> round(a.total_revenue - a.current_total_revenue, 2) > 0
True
>>> allocate(curves, total_budget=100.0, current={}, min_spend={"search": 80.0, "social": 30.0})
Traceback (most recent call last):
...
models.budget.AllocationError: minimum spends add up to 110.00, above the total budget 100.00
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal

import numpy as np
from scipy.optimize import OptimizeWarning, brentq, curve_fit

from schemas.attribution import BudgetRecommendation
from schemas.errors import RevstreamError

MODEL_VERSION = "budget-waterfill.1"
MIN_SHAPE, MAX_SHAPE = 0.1, 1.0
# Hill is the model (spend saturates); the log curve, which never does, is only taken when Hill fits clearly
# worse (RMSE more than 10% above the log curve's), since on a narrow range of spends both fit alike.
HILL_TOLERANCE = 1.1
_TINY = 1e-9
FloatArray = np.ndarray


class AllocationError(RevstreamError, ValueError):
    """The budget limits cannot all hold (e.g. minimum spends above the total); the message says which."""


def _hill(s: FloatArray, vmax: float, half: float, shape: float) -> FloatArray:
    x = np.power(np.maximum(s, 0.0) / half, shape)
    return np.asarray(vmax * x / (1.0 + x))


def _log(s: FloatArray, scale: float, bend: float) -> FloatArray:
    return np.asarray(scale * np.log1p(np.maximum(s, 0.0) / bend))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCurve:
    """Predicted daily revenue of a channel as a concave function of its daily spend.

    ``kind`` ``"hill"``: ``scale`` is ``vmax``, ``half_saturation`` is ``K``, ``shape`` is ``k``.
    ``kind`` ``"log"``: ``R(s) = scale * ln(1 + s / half_saturation)`` (``shape`` unused).

    >>> curve = ResponseCurve.fit([100.0, 200, 400, 800, 1600, 300, 600, 1200],
    ...                           [333.3, 500, 666.7, 800, 888.9, 600, 750, 857.1])
    >>> curve.kind, round(curve.scale), round(curve.half_saturation), round(curve.shape, 3), curve.r2 > 0.99
    ('hill', 1000, 200, 1.0, True)
    >>> ResponseCurve.fit([100.0, 200.0], [50.0, 80.0]).describe()
    'log r2=1.00 n=2 (2 points, fewer than 8)'
    """

    kind: str
    scale: float
    half_saturation: float
    shape: float = 1.0
    r2: float = math.nan
    rmse: float = math.nan
    n_obs: int = 0
    note: str = ""

    @classmethod
    def hill(cls, *, vmax: float, half_saturation: float, shape: float = 1.0) -> ResponseCurve:
        return cls(kind="hill", scale=vmax, half_saturation=half_saturation, shape=shape)

    @classmethod
    def log(cls, *, scale: float, bend: float) -> ResponseCurve:
        return cls(kind="log", scale=scale, half_saturation=bend)

    def revenue(self, spend: float | FloatArray) -> FloatArray:
        s = np.asarray(spend, dtype=float)
        hill = self.kind == "hill"
        return (
            _hill(s, self.scale, self.half_saturation, self.shape)
            if hill
            else _log(s, self.scale, self.half_saturation)
        )

    def marginal(self, spend: float | FloatArray) -> FloatArray:
        """``R'(spend)``, non-increasing; at 0 spend it is finite (it is evaluated just above 0)."""
        s = np.asarray(spend, dtype=float)
        return _Curves([self]).marginal(s).reshape(s.shape)

    def describe(self) -> str:
        text = f"{self.kind} r2={self.r2:.2f} n={self.n_obs}"
        return f"{text} ({self.note})" if self.note else text

    @classmethod
    def fit(cls, spend: Sequence[float], revenue: Sequence[float], *, min_points: int = 8) -> ResponseCurve:
        """Fit the Hill curve, falling back to the log curve (see the module docstring); never raises."""
        s_all, r_all = np.asarray(spend, dtype=float), np.asarray(revenue, dtype=float)
        ok = np.isfinite(s_all) & np.isfinite(r_all) & (s_all >= 0)
        s, r = s_all[ok], r_all[ok]
        if not (s > 0).any() or not (r > 0).any():
            return cls(kind="log", scale=0.0, half_saturation=1.0, n_obs=len(s), note="no spend or no revenue")
        log_params = _fit_log(s, r)
        best = cls._scored("log", log_params, s, r)
        if len(s) < min_points:
            note = f"{len(s)} points, fewer than {min_points}"
        elif len(np.unique(s)) < 3:
            note = "fewer than 3 distinct spends"
        else:
            hill_params = _fit_hill(s, r)
            if hill_params is None:
                note = "hill fit failed"
            else:
                hill = cls._scored("hill", hill_params, s, r)
                if hill.rmse <= best.rmse * HILL_TOLERANCE:
                    return hill
                note = "hill fits worse than log"
        return replace(best, note=note)

    @classmethod
    def _scored(cls, kind: str, params: tuple[float, ...], s: FloatArray, r: FloatArray) -> ResponseCurve:
        curve = cls(kind=kind, scale=params[0], half_saturation=params[1], shape=params[2] if kind == "hill" else 1.0)
        residual = r - curve.revenue(s)
        sse = float(residual @ residual)
        sst = float(((r - r.mean()) ** 2).sum())
        r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
        return replace(curve, r2=r2, rmse=math.sqrt(sse / len(s)), n_obs=len(s))


def _fit_hill(s: FloatArray, r: FloatArray) -> tuple[float, float, float] | None:
    """Least squares from three starts (half saturation at the quartiles of spend): the surface is not convex."""
    top_s, top_r = float(s.max()), float(r.max())
    bounds = ([0.0, 1e-6 * top_s, MIN_SHAPE], [1e3 * max(top_r, 1.0), 1e3 * top_s, MAX_SHAPE])
    best: tuple[float, tuple[float, float, float]] | None = None
    for q, shape in ((25, 1.0), (50, 0.7), (75, 0.4)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                p0 = (2.0 * top_r, float(np.percentile(s[s > 0], q)), shape)
                params, _ = curve_fit(_hill, s, r, p0=p0, bounds=bounds, maxfev=5000)
        except (RuntimeError, ValueError):
            continue
        vmax, half, k = (float(p) for p in params)
        residual = r - _hill(s, vmax, half, k)
        sse = float(residual @ residual)
        if math.isfinite(sse) and (best is None or sse < best[0]):
            best = (sse, (vmax, half, k))
    return best[1] if best is not None else None


def _fit_log(s: FloatArray, r: FloatArray) -> tuple[float, float]:
    bend = float(np.median(s[s > 0]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(
                _log, s, r, p0=(float(r.mean()) / math.log(2.0), bend), bounds=([0, 1e-6 * bend], [np.inf, 1e6 * bend])
            )
        if all(math.isfinite(float(p)) for p in params):
            return float(params[0]), float(params[1])
    except (RuntimeError, ValueError):
        pass
    g = np.log1p(s / bend)  # with the bend fixed the scale is a one-parameter least-squares fit
    return max(float(g @ r) / float(g @ g), 0.0), bend


def fit_curves(
    observations: Mapping[str, Sequence[tuple[float, float]]], *, min_points: int = 8
) -> dict[str, ResponseCurve]:
    """One curve per channel from its daily ``(spend, attributed revenue)`` points.

    >>> fit_curves({"email": [(10.0, 30.0), (20.0, 45.0)]})["email"].kind
    'log'
    """
    return {
        channel: ResponseCurve.fit([p[0] for p in points], [p[1] for p in points], min_points=min_points)
        for channel, points in observations.items()
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation:
    """The optimal spend per channel (cents), the predicted revenue there and now, and the limit that decided.

    ``limits[c]`` is ``optimal`` (marginal return equals ``marginal_return``), ``override``, ``min_spend``,
    ``max_spend``, ``max_increase`` or ``max_decrease``.
    """

    spend: dict[str, float]
    current: dict[str, float]
    revenue: dict[str, float]
    current_revenue: dict[str, float]
    limits: dict[str, str]
    notes: dict[str, str]
    marginal_return: float

    @property
    def total_revenue(self) -> float:
        return sum(self.revenue.values())

    @property
    def current_total_revenue(self) -> float:
        return sum(self.current_revenue.values())

    def recommendations(
        self, *, day: date, currency: str, computed_at: datetime, model_version: str = MODEL_VERSION
    ) -> list[BudgetRecommendation]:
        """One :class:`schemas.attribution.BudgetRecommendation` per channel, in channel order."""
        return [
            BudgetRecommendation(
                day=day,
                channel=c,
                current_spend=self.current[c],
                recommended_spend=self.spend[c],
                predicted_revenue=round(self.revenue[c], 2),
                predicted_change=round(self.revenue[c] - self.current_revenue[c], 2),
                currency=currency,
                reason=f"{self.limits[c]}; {self.notes[c]}" if self.notes[c] else self.limits[c],
                computed_at=computed_at,
                model_version=model_version,
            )
            for c in self.spend
        ]


def allocate(
    curves: Mapping[str, ResponseCurve],
    *,
    total_budget: float,
    current: Mapping[str, float],
    min_spend: Mapping[str, float] | None = None,
    max_spend: Mapping[str, float] | None = None,
    max_change: float | None = None,
    overrides: Mapping[str, float] | None = None,
) -> Allocation:
    """Split ``total_budget`` over the channels of ``curves``, ``current`` and ``overrides`` (see the module).

    ``max_change`` bounds ``|new - current|`` by ``max_change * current`` (so a channel at 0 stays at 0
    unless overridden). A channel without a curve predicts no revenue. Raises :class:`AllocationError` when
    the limits contradict each other or the budget.
    """
    min_spend, max_spend, overrides = min_spend or {}, max_spend or {}, overrides or {}
    channels = sorted({*curves, *current, *overrides})
    if not channels or not math.isfinite(total_budget) or total_budget < 0:
        msg = f"need channels and a finite, non-negative total budget, got {total_budget} for {channels}"
        raise AllocationError(msg)
    flat = ResponseCurve.log(scale=0.0, bend=1.0)
    table = [curves.get(c, flat) for c in channels]
    if any(c.scale < 0 or c.half_saturation <= 0 or not MIN_SHAPE <= c.shape <= MAX_SHAPE for c in table):
        msg = "curves need scale >= 0, half_saturation > 0 and a shape in [0.1, 1] (concave)"
        raise AllocationError(msg)
    now = np.array([float(current.get(c, 0.0)) for c in channels])
    limits_given = {"min_spend": min_spend, "max_spend": max_spend, "overrides": overrides}
    lo, hi, why_lo, why_hi = _bounds(channels, now, total_budget, max_change, **limits_given)
    cap = np.maximum(np.minimum(hi, total_budget - (lo.sum() - lo)), lo)  # no more than the others leave
    price, spend = _water_fill(_Curves(table), lo, cap, total_budget)
    cents = _round_to_cents(spend, total_budget, [c in overrides for c in channels])
    limits = {}
    for i, c in enumerate(channels):
        limits[c] = "override" if c in overrides else "optimal"
        if c not in overrides and cents[i] <= lo[i] + 0.005 and why_lo[i]:
            limits[c] = why_lo[i]
        elif c not in overrides and cents[i] >= hi[i] - 0.005 and why_hi[i]:
            limits[c] = why_hi[i]
    pairs = list(zip(channels, table, strict=True))
    return Allocation(
        spend=dict(zip(channels, cents, strict=True)),
        current=dict(zip(channels, now.tolist(), strict=True)),
        revenue={c: float(curve.revenue(cents[i])) for i, (c, curve) in enumerate(pairs)},
        current_revenue={c: float(curve.revenue(now[i])) for i, (c, curve) in enumerate(pairs)},
        limits=limits,
        notes={c: curves[c].describe() if c in curves else "no curve" for c in channels},
        marginal_return=price,
    )


def _bounds(
    channels: list[str],
    now: FloatArray,
    total: float,
    max_change: float | None,
    *,
    min_spend: Mapping[str, float],
    max_spend: Mapping[str, float],
    overrides: Mapping[str, float],
) -> tuple[FloatArray, FloatArray, list[str], list[str]]:
    """Per channel ``lo``/``hi`` from every limit, and which limit set each; raises when they contradict."""
    lo, hi = np.zeros(len(channels)), np.full(len(channels), np.inf)
    why_lo, why_hi = [""] * len(channels), [""] * len(channels)
    for i, c in enumerate(channels):
        if c in overrides:
            if not overrides[c] >= 0:
                msg = f"override of {c} must be a non-negative amount, got {overrides[c]}"
                raise AllocationError(msg)
            lo[i] = hi[i] = overrides[c]
            continue
        candidates_lo = [(min_spend.get(c, 0.0), "min_spend" if c in min_spend else "")]
        candidates_hi = [(max_spend.get(c, math.inf), "max_spend" if c in max_spend else "")]
        if max_change is not None:
            candidates_lo.append((now[i] * (1.0 - max_change), "max_decrease"))
            candidates_hi.append((now[i] * (1.0 + max_change), "max_increase"))
        lo[i], why_lo[i] = max(candidates_lo)
        hi[i], why_hi[i] = min(candidates_hi)
        lo[i] = max(lo[i], 0.0)
        if lo[i] > hi[i] + _TINY:
            msg = f"{c}: the lower limit {lo[i]:.2f} ({why_lo[i]}) is above the upper limit {hi[i]:.2f} ({why_hi[i]})"
            raise AllocationError(msg)
        hi[i] = max(hi[i], lo[i])
    if lo.sum() > total + 0.005:
        msg = f"minimum spends add up to {lo.sum():.2f}, above the total budget {total:.2f}"  # overrides included
        raise AllocationError(msg)
    if hi.sum() < total - 0.005:
        msg = f"maximum spends add up to {hi.sum():.2f}, below the total budget {total:.2f}"
        raise AllocationError(msg)
    return lo, hi, why_lo, why_hi


class _Curves:
    """The curves' parameters as arrays, so that the bisections below evaluate every channel at once."""

    __slots__ = ("half", "hill", "scale", "shape")

    def __init__(self, curves: Sequence[ResponseCurve]) -> None:
        self.hill = np.array([c.kind == "hill" for c in curves])
        self.scale = np.array([c.scale for c in curves], dtype=float)
        self.half = np.array([c.half_saturation for c in curves], dtype=float)
        self.shape = np.array([c.shape for c in curves], dtype=float)

    def marginal(self, spend: FloatArray) -> FloatArray:
        s = np.maximum(spend, _TINY)
        x = np.power(s / self.half, self.shape)
        hill = self.scale * self.shape * x / (s * (1.0 + x) ** 2)
        return np.asarray(np.where(self.hill, hill, self.scale / (self.half + s)))

    def spend_at(self, price: float, lo: FloatArray, hi: FloatArray) -> FloatArray:
        """Each channel's ``argmax R(s) - price * s`` on its box: bisection on ``R'(s) = price`` in log spend."""
        a, b = np.log(np.maximum(lo, _TINY)), np.log(np.maximum(hi, _TINY))
        for _ in range(45):  # a log-spend interval of < 100 shrinks below 1e-11 (relative spend error)
            mid = 0.5 * (a + b)
            above = self.marginal(np.exp(mid)) > price
            a, b = np.where(above, mid, a), np.where(above, b, mid)
        inside = np.clip(np.exp(0.5 * (a + b)), lo, hi)
        return np.asarray(np.where(self.marginal(lo) <= price, lo, np.where(self.marginal(hi) >= price, hi, inside)))


def _water_fill(curves: _Curves, lo: FloatArray, hi: FloatArray, total: float) -> tuple[float, FloatArray]:
    top = float(curves.marginal(lo).max())
    # A marginal return so small that a millionth of a billionth of it underflows (a subnormal float) is
    # no return at all: the log-price search below could not even represent its bracket.
    if top * 1e-15 <= 0 or hi.sum() - lo.sum() <= _TINY:
        return 0.0, _mix(lo, hi, total)
    cheap, dear = math.log(top * 1e-15), math.log(top * (1 + 1e-9))  # log prices: spend(dear) = lo
    at_cheap = curves.spend_at(math.exp(cheap), lo, hi)
    if at_cheap.sum() < total:  # everyone is near saturation: the last dollars go where the curves are flat
        return 0.0, _mix(at_cheap, hi, total)
    # Brent's method on the log price finds where the spend crosses the budget in ~15 steps instead of ~60;
    # the two allocations just either side of it bracket the budget (exactly so at a jump of a flat curve).
    price = brentq(lambda u: curves.spend_at(math.exp(u), lo, hi).sum() - total, cheap, dear, xtol=1e-12)
    under = curves.spend_at(math.exp(price + 1e-10), lo, hi)
    over = curves.spend_at(math.exp(price - 1e-10), lo, hi)
    return math.exp(price), _mix(under, over, total)


def _mix(under: FloatArray, over: FloatArray, total: float) -> FloatArray:
    """The point on the segment from ``under`` (sum <= total) to ``over`` (sum >= total) that sums to total."""
    gap = over.sum() - under.sum()
    theta = min(max((total - under.sum()) / gap, 0.0), 1.0) if gap > 0 else 0.0
    return np.asarray(under + theta * (over - under))


def _round_to_cents(spend: FloatArray, total: float, fixed: list[bool]) -> list[float]:
    """Amounts in cents adding up to the budget's cents (largest remainder); overrides are rounded alone."""
    exact = [Decimal(repr(float(x))) * 100 for x in spend]
    cents = [int(e.to_integral_value()) if f else math.floor(e) for e, f in zip(exact, fixed, strict=True)]
    left = int((Decimal(repr(float(total))) * 100).to_integral_value()) - sum(cents)
    free = sorted((i for i, f in enumerate(fixed) if not f), key=lambda i: (cents[i] - exact[i], i))
    if left < 0:  # overrides rounded up: take the cents back where the fractions were smallest
        free.reverse()
    for k in range(abs(left) if free else 0):
        cents[free[k % len(free)]] += 1 if left > 0 else -1
    return [c / 100 for c in cents]
