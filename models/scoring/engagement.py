"""Engagement quality: a 0-100 score per session, where 50 is a typical session and 90 beats nine in ten.

Raw score. Five components of the session's feature snapshot, each ``log1p(x / scale)``, averaged::

    raw = mean( log1p((page_views + product_views) / 4),       depth (a product page counts twice)
                log1p(dwell_seconds / 60),                     time on site
                log1p(engaged_seconds / 30),                   foreground time (Page Engagement)
                log1p(max_scroll_depth / 50),                  how far down the pages they read
                log1p((clicks + cart_adds + searches + checkout_starts) / 2) )   deliberate interaction

``log1p`` because every component is heavy-tailed (the 60th page or the 40th minute add less than the 2nd);
the scales are the order of a typical session's value, so each component spans about the same range and
none dominates the mean. Every component is non-decreasing in its inputs, so the score is monotone in
depth, dwell, engagement, scroll and interaction. Frustration (rage and dead clicks, errors) is deliberately
not engagement: it is its own signal for propensity and churn.

Normalisation. ``score = 100 * F(raw)`` where ``F`` is the online CDF of the raw scores of finished sessions
(:meth:`EngagementScorer.learn_one` at session end), so the median session scores 50. ``F`` is a fixed
histogram of ``bins`` equal-width bins over ``[0, max_raw)`` with linear interpolation inside a bin, held in
a Fenwick (binary indexed) tree so that both learning and scoring cost O(log bins) (Fenwick 1994). Because
``raw`` is already on a log scale, equal bins in ``raw`` are log-spaced bins of the underlying quantities.
The CDF error is at most the mass of one bin (0.01 raw units by default), far below what a person could
tell apart; River's ``stats.Quantile`` (P^2) per decile would need ten estimators updated per session and
still give only a piecewise-linear CDF through nine points, and a t-digest buys accuracy in the extreme
tails that a 0-100 score rounds away. With ``half_life`` (in sessions) older sessions weigh exponentially
less (the increment grows by ``2 ** (1 / half_life)`` per session, rescaled now and then), so "typical"
follows a site whose traffic changes; ``None`` weighs every session the same.

Scoring a live session against the CDF of *finished* sessions is intended: the score is engagement so far,
and it rises as the session goes on. Until ``min_sessions`` sessions are learned the score is 50.

>>> scorer = EngagementScorer(min_sessions=10)
>>> scorer.score_one({"page_views": 2.0, "dwell_seconds": 60.0})   # nothing learned yet
50.0
>>> for i in range(1, 101):
...     scorer.learn_one({"page_views": float(i), "dwell_seconds": 10.0 * i})
>>> round(scorer.score_one({"page_views": 50.0, "dwell_seconds": 500.0}))   # the median session
50
>>> round(scorer.score_one({"page_views": 90.0, "dwell_seconds": 900.0})), scorer.score_one({"page_views": 1.0})
(89, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

MODEL = "engagement"
MODEL_VERSION = "engagement-hist.1"
NEUTRAL_SCORE = 50.0
_RESCALE_AT = 1e150


def raw_score(x: Mapping[str, float]) -> float:
    """The mean of the five log-scaled components (see the module docstring); absent keys count as 0.

    >>> raw_score({}), round(raw_score({"page_views": 4.0, "dwell_seconds": 60.0}), 4)
    (0.0, 0.2773)
    """
    get = x.get
    depth = get("page_views", 0.0) + get("product_views", 0.0)
    interaction = get("clicks", 0.0) + get("cart_adds", 0.0) + get("searches", 0.0) + get("checkout_starts", 0.0)
    total = (
        math.log1p(max(depth, 0.0) / 4.0)
        + math.log1p(max(get("dwell_seconds", 0.0), 0.0) / 60.0)
        + math.log1p(max(get("engaged_seconds", 0.0), 0.0) / 30.0)
        + math.log1p(min(max(get("max_scroll_depth", 0.0), 0.0), 100.0) / 50.0)
        + math.log1p(max(interaction, 0.0) / 2.0)
    )
    return total / 5.0


class HistogramCDF:
    """Online CDF of a bounded quantity: ``bins`` equal bins over ``[lo, hi)`` in a Fenwick tree.

    ``learn_one(v)`` adds ``v`` (values outside are clamped into the end bins); ``cdf(v)`` is the share of
    learned values below ``v``, interpolated linearly inside its bin (0.5 before learning). With
    ``half_life`` (in values learned) older values weigh exponentially less.

    >>> cdf = HistogramCDF(bins=10, lo=0.0, hi=1.0)
    >>> for i in range(100):
    ...     cdf.learn_one(i / 100)
    >>> cdf.cdf(0.25), cdf.cdf(-1.0), cdf.cdf(2.0)
    (0.25, 0.0, 1.0)
    """

    def __init__(self, *, bins: int = 1000, lo: float = 0.0, hi: float = 1.0, half_life: float | None = None) -> None:
        if bins < 1:
            msg = f"bins must be at least 1, got {bins}"
            raise ValueError(msg)
        if not hi > lo:
            msg = f"hi must be above lo, got [{lo}, {hi})"
            raise ValueError(msg)
        if half_life is not None and not half_life > 0.0:
            msg = f"half_life must be positive or None, got {half_life}"
            raise ValueError(msg)
        self.bins = bins
        self.lo = lo
        self.hi = hi
        self.half_life = half_life
        # learned state
        self.n = 0
        self._counts = [0.0] * bins
        self._tree = [0.0] * (bins + 1)
        self._total = 0.0
        self._weight = 1.0
        self._growth = 1.0 if half_life is None else 2.0 ** (1.0 / half_life)

    def _position(self, value: float) -> tuple[int, float]:
        u = (value - self.lo) / (self.hi - self.lo) * self.bins
        if u >= self.bins:
            return self.bins - 1, 1.0
        b = int(u) if u > 0.0 else 0
        return b, min(max(u - b, 0.0), 1.0)

    def _prefix(self, i: int) -> float:
        tree, total = self._tree, 0.0
        while i > 0:
            total += tree[i]
            i &= i - 1
        return total

    def cdf(self, value: float) -> float:
        """The estimated share of learned values below ``value`` (0.5 before learning)."""
        if self._total <= 0.0:
            return 0.5
        b, frac = self._position(value)
        share = (self._prefix(b) + frac * self._counts[b]) / self._total
        return min(max(share, 0.0), 1.0)

    def learn_one(self, value: float) -> None:
        if not math.isfinite(value):
            return
        b, _ = self._position(value)
        w = self._weight
        self._counts[b] += w
        self._total += w
        tree, i, n = self._tree, b + 1, self.bins + 1
        while i < n:
            tree[i] += w
            i += i & -i
        self.n += 1
        if self._growth != 1.0:
            self._weight *= self._growth
            if self._weight > _RESCALE_AT:
                self._rescale()

    def _rescale(self) -> None:
        factor = 1.0 / self._weight
        self._counts = [c * factor for c in self._counts]
        self._total = sum(self._counts)
        self._weight = 1.0
        tree = [0.0] * (self.bins + 1)
        for b, c in enumerate(self._counts):
            i = b + 1
            while i <= self.bins:
                tree[i] += c
                i += i & -i
        self._tree = tree

    def quantile(self, q: float) -> float:
        """The value at CDF ``q`` (the inverse of :meth:`cdf`, to the bin); ``lo`` before learning."""
        if self._total <= 0.0:
            return self.lo
        target, seen = q * self._total, 0.0
        width = (self.hi - self.lo) / self.bins
        for b, c in enumerate(self._counts):
            if c > 0.0 and seen + c >= target:
                return self.lo + (b + (target - seen) / c) * width
            seen += c
        return self.hi


class EngagementScorer:
    """Session engagement 0-100 against the online CDF of finished sessions' raw scores.

    ``score_one(x)`` scores a snapshot (``predict_one`` is the same); ``learn_one(x)`` adds a finished
    session to the CDF. Learn only human sessions: bots would drag "typical" down.
    """

    def __init__(
        self, *, bins: int = 800, max_raw: float = 8.0, half_life: float | None = None, min_sessions: int = 20
    ) -> None:
        self.bins = bins
        self.max_raw = max_raw
        self.half_life = half_life
        self.min_sessions = min_sessions
        # learned state
        self.histogram = HistogramCDF(bins=bins, lo=0.0, hi=max_raw, half_life=half_life)

    @property
    def n_sessions(self) -> int:
        return self.histogram.n

    def score_one(self, x: Mapping[str, float]) -> float:
        """Engagement 0-100 of a snapshot; 50 until ``min_sessions`` sessions are learned."""
        if self.histogram.n < self.min_sessions:
            return NEUTRAL_SCORE
        return 100.0 * self.histogram.cdf(raw_score(x))

    predict_one = score_one

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Add a finished session to the CDF."""
        self.histogram.learn_one(raw_score(x))
