"""RFM: recency, frequency and monetary value scored 1-5 against running quantiles, and the named segments.

:class:`RFMScorer` learns the quintile cut points (20, 40, 60, 80%) of each of ``recency_days``,
``frequency`` and ``monetary`` from customer snapshots, with River's running quantiles: the P^2 estimator
(``river.stats.Quantile``; Jain & Chlamtac 1985) over everything seen when ``window_size`` is None, else
the exact quantile of the last ``window_size`` snapshots (``river.stats.RollingQuantile``), which follows a
population that drifts, as recency does when a shop ages. What it learns is only as good as the snapshots
it is fed: they should be a uniform sample of current customers (one per customer, not one per order, or
heavy buyers dominate; measured now, not at their last order, or every recency is 0).
:class:`models.value.clv.CustomerValueModel` feeds it that way.

Scores are mid-ranks, so that ties get the middle score rather than the lowest: with ``lo`` cut points
strictly below the value and ``hi`` at or below it, the score is ``1 + (lo + hi) // 2`` (recency counts cut
points above it, since recent is good). Frequency is heavily tied (most customers buy once), and then every
one-time buyer gets the same middle score. ``fm = (f + m + 1) // 2`` (the mean, rounded half up).

Segments (:func:`segment`) follow the widely used R x F segment map (e.g. Putler's RFM segments), with FM in
place of F and its lowest-recency, low-value cells split into ``lost`` (R = 1) and ``hibernating`` (R = 2)::

    R \\ FM     1               2                   3                   4           5
    5          new             potential_loyalist  potential_loyalist  champions   champions
    4          promising       potential_loyalist  potential_loyalist  loyal       loyal
    3          about_to_sleep  about_to_sleep      need_attention      loyal       loyal
    2          hibernating     hibernating         at_risk             at_risk     cant_lose
    1          lost            lost                at_risk             at_risk     cant_lose

>>> rfm = RFMScorer()
>>> rfm.predict_one({"recency_days": 3.0, "frequency": 4, "monetary": 90.0}).segment   # nothing learned
'need_attention'
>>> for i in range(100):
...     rfm.learn_one({"recency_days": float(i), "frequency": 1 + i % 5, "monetary": 10.0 * (i % 10 + 1)})
>>> rfm.predict_one({"recency_days": 3.0, "frequency": 5, "monetary": 95.0})
RFMScore(r_score=5, f_score=5, m_score=5, fm_score=5, segment='champions')
>>> rfm.predict_one({"recency_days": 95.0, "frequency": 1, "monetary": 12.0}).segment
'lost'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from river import stats

QUINTILES = (0.2, 0.4, 0.6, 0.8)
FEATURES = ("recency_days", "frequency", "monetary")
NEUTRAL_SCORE = 3

_GRID = {
    5: ("new", "potential_loyalist", "potential_loyalist", "champions", "champions"),
    4: ("promising", "potential_loyalist", "potential_loyalist", "loyal", "loyal"),
    3: ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),
    1: ("lost", "lost", "at_risk", "at_risk", "cant_lose"),
}
SEGMENTS = (
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
)


def segment(r_score: int, fm_score: int) -> str:
    """The named segment of an R score and an FM score, each 1-5 (see the grid in the module docstring).

    >>> segment(5, 1), segment(1, 5), segment(3, 3)
    ('new', 'cant_lose', 'need_attention')
    """
    if not (1 <= r_score <= 5 and 1 <= fm_score <= 5):
        msg = f"RFM scores are 1-5, got r={r_score}, fm={fm_score}"
        raise ValueError(msg)
    return _GRID[r_score][fm_score - 1]


@dataclass(frozen=True, slots=True)
class RFMScore:
    """Scores 1-5 (5 best: most recent, most frequent, highest spend) and the segment."""

    r_score: int
    f_score: int
    m_score: int
    fm_score: int
    segment: str


def _mid_rank(value: float, cuts: list[float], *, lower_is_better: bool = False) -> int:
    if lower_is_better:
        below = sum(c > value for c in cuts)
        at_or_below = sum(c >= value for c in cuts)
    else:
        below = sum(c < value for c in cuts)
        at_or_below = sum(c <= value for c in cuts)
    return 1 + (below + at_or_below) // 2


class RFMScorer:
    """Quintile scores of recency, frequency and monetary value against running quantiles.

    ``learn_one(x)`` takes a customer snapshot ``{"recency_days", "frequency", "monetary"}``;
    ``predict_one(x)`` scores one (before anything is learned, every score is 3: no evidence either way).
    """

    def __init__(self, *, window_size: int | None = 5000) -> None:
        self.window_size = window_size
        self.n_seen = 0
        self._quantiles: dict[str, list[Any]] = {
            name: [
                stats.Quantile(q) if window_size is None else stats.RollingQuantile(q, window_size=window_size)
                for q in QUINTILES
            ]
            for name in FEATURES
        }

    def clone(self) -> RFMScorer:
        """A fresh scorer with the same settings (nothing learned)."""
        return RFMScorer(window_size=self.window_size)

    def learn_one(self, x: Mapping[str, float]) -> None:
        for name in FEATURES:
            value = float(x[name])
            for quantile in self._quantiles[name]:
                quantile.update(value)
        self.n_seen += 1

    def cut_points(self, name: str) -> list[float] | None:
        """The learned 20/40/60/80% quantiles of ``name``, or None before anything is learned."""
        if not self.n_seen:
            return None
        values = [quantile.get() for quantile in self._quantiles[name]]
        return None if any(v is None for v in values) else [float(v) for v in values]

    def predict_one(self, x: Mapping[str, float]) -> RFMScore:
        scores = []
        for name in FEATURES:
            cuts = self.cut_points(name)
            value = float(x[name])
            scores.append(
                NEUTRAL_SCORE if cuts is None else _mid_rank(value, cuts, lower_is_better=name == "recency_days")
            )
        r, f, m = scores
        fm = (f + m + 1) // 2
        return RFMScore(r_score=r, f_score=f, m_score=m, fm_score=fm, segment=segment(r, fm))
