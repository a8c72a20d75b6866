"""Prequential ("predict, then learn") evaluation of propensity models with delayed labels.

Every prediction is made before its session's label exists; when the label arrives the stored prediction
is scored and only then does the model learn (Dawid 1984; Gama, Sebastião & Rodrigues 2013, "On
evaluating stream learning algorithms"). A session is scored many times, so *which* prediction is
evaluated matters; two are, as separate tracks:

* ``first``: the prediction at the session's first scored event - what the model knew from the channel,
  the device, the landing page and the device's history (comparable with the simulator's latent purchase
  probability, which is drawn at session start);
* ``last``: the prediction at the session's last scored event before the label - the best the model did
  with the whole pre-order funnel (for a buyer, usually the confirmation page; the order event itself is
  never scored, so no prediction sees its own label). Its calibration is biased by construction: which
  event is a non-buyer's last is only known once the session is over, so a non-buyer's last prediction is
  made by a model that rightly still expected more events. Read calibration at ``first`` (or over all
  published scores, as ``benchmarks/scoring.py`` does); read ``last`` for ranking.

Per ``(model, point)`` track, over the last ``window`` labelled sessions: ROC AUC (exact, with ties
counted half: Mann-Whitney U over the window, computed when asked), log loss (River ``utils.Rolling`` of
``metrics.LogLoss``), and a calibration table of ``bins`` equal-width bins (mean prediction, observed
rate, n); and River's cumulative ``metrics.LogLoss`` since the start. River's ``ROCAUC`` is not used: it
approximates with ``n_thresholds`` fixed thresholds (10 by default), which puts nearly every prediction of
a 3%-base-rate problem in one bin, and ``RollingROCAUC`` does not give tied scores half credit (and ties
are common at ``first``: sessions that start alike get the same score between two updates).

Every ``window`` labels a track emits :class:`~schemas.scores.ModelMetric` rows for that (tumbling)
window; :meth:`PrequentialEvaluator.report` emits the current rolling window on demand (end of a run).
Metric names: ``roc_auc``, ``log_loss``, ``base_rate``, ``mean_prediction``, ``log_loss_cumulative``
(``n`` = all labels so far), and per non-empty calibration bin k (predictions in ``[k/bins, (k+1)/bins)``)
``calibration_bin{k}_predicted`` and ``calibration_bin{k}_observed`` (``n`` = sessions in the bin).
``window`` is ``"{point}:{first}-{last}"``, the 1-based label numbers it covers, e.g. ``"last:1-5000"``.

>>> from datetime import datetime, UTC
>>> ev = PrequentialEvaluator(window=4)
>>> at = datetime(2026, 11, 1, tzinfo=UTC)
>>> rows = []
>>> for p, y in [(0.1, False), (0.8, True), (0.3, False), (0.6, True)]:
...     rows += ev.update("m", "last", p, y, model_version="v1", at=at)
>>> ev.roc_auc("m", "last"), round(ev.log_loss("m", "last"), 4)
(1.0, 0.299)
>>> sorted({r.metric for r in rows})[:4], rows[0].window, rows[0].n
(['base_rate', 'calibration_bin1_observed', 'calibration_bin1_predicted', 'calibration_bin3_observed'], 'last:1-4', 4)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from river import metrics, utils

from schemas.scores import ModelMetric

# River's metrics are partly unannotated (and ``Rolling`` forwards ``get`` dynamically): used through Any.
_LogLoss: Any = metrics.LogLoss

POINTS = ("first", "last")
"""The evaluated prediction of a session: at its first scored event, and at its last before the label."""


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """One reliability-diagram bin: predictions in ``[low, high)``, their mean and the observed rate."""

    low: float
    high: float
    mean_predicted: float
    observed_rate: float
    n: int


def roc_auc(pairs: Iterable[tuple[float, bool]]) -> float:
    """Exact ROC AUC of ``(prediction, label)`` pairs, ties counted half (NaN without both classes).

    >>> roc_auc([(0.2, False), (0.2, True), (0.9, True), (0.1, False)])
    0.875
    """
    ranked = sorted(pairs, key=lambda pair: pair[0])
    positives = sum(1 for _, y in ranked if y)
    negatives = len(ranked) - positives
    if not positives or not negatives:
        return math.nan
    rank_sum = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2.0
        rank_sum += mid_rank * sum(1 for _, y in ranked[i:j] if y)
        i = j
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def calibration(pairs: Iterable[tuple[float, bool]], *, bins: int = 10) -> list[CalibrationBin]:
    """Equal-width reliability bins of ``(prediction, label)`` pairs; empty bins are left out.

    >>> calibration([(0.05, False), (0.15, True), (0.11, False)], bins=10)[1]
    CalibrationBin(low=0.1, high=0.2, mean_predicted=0.13, observed_rate=0.5, n=2)
    """
    sums = [[0.0, 0.0, 0] for _ in range(bins)]
    for p, y in pairs:
        acc = sums[min(int(p * bins), bins - 1)]
        acc[0] += p
        acc[1] += float(y)
        acc[2] += 1
    return [
        CalibrationBin(k / bins, (k + 1) / bins, sum_p / n, sum_y / n, int(n))
        for k, (sum_p, sum_y, n) in enumerate(sums)
        if n
    ]


class _Track:
    __slots__ = ("cumulative", "n", "pairs", "rolling")

    def __init__(self, window: int) -> None:
        self.pairs: deque[tuple[float, bool]] = deque(maxlen=window)
        self.rolling: Any = utils.Rolling(metrics.LogLoss, window_size=window)
        self.cumulative: Any = _LogLoss()
        self.n = 0


class PrequentialEvaluator:
    """Windowed prequential metrics per ``(model, point)``; ``update`` returns the rows of a closed window."""

    def __init__(self, *, window: int = 5000, bins: int = 10) -> None:
        self.window = window
        self.bins = bins
        self.tracks: dict[tuple[str, str], _Track] = {}

    def update(
        self, model: str, point: str, p: float, y: bool, *, model_version: str, at: datetime
    ) -> list[ModelMetric]:
        """Score one stored prediction against its label; every ``window`` labels, that window's rows."""
        track = self.tracks.get((model, point))
        if track is None:
            track = self.tracks[model, point] = _Track(self.window)
        track.pairs.append((p, y))
        track.rolling.update(y, p)
        track.cumulative.update(y, p)
        track.n += 1
        if track.n % self.window:
            return []
        return self._rows(model, point, track, model_version, at)

    def report(self, *, model_version: str | dict[str, str], at: datetime) -> list[ModelMetric]:
        """The rows of every track's current rolling window (however many labels it holds)."""
        rows: list[ModelMetric] = []
        for (model, point), track in self.tracks.items():
            version = model_version if isinstance(model_version, str) else model_version.get(model, "")
            rows += self._rows(model, point, track, version, at)
        return rows

    def roc_auc(self, model: str, point: str) -> float:
        track = self.tracks.get((model, point))
        return roc_auc(track.pairs) if track is not None else math.nan

    def log_loss(self, model: str, point: str) -> float:
        track = self.tracks.get((model, point))
        return float(track.rolling.get()) if track is not None and track.n else math.nan

    def calibration(self, model: str, point: str) -> list[CalibrationBin]:
        track = self.tracks.get((model, point))
        return calibration(track.pairs, bins=self.bins) if track is not None else []

    def labels(self, model: str, point: str) -> int:
        """Labelled sessions evaluated on this track since the start."""
        track = self.tracks.get((model, point))
        return track.n if track is not None else 0

    def _rows(self, model: str, point: str, track: _Track, version: str, at: datetime) -> list[ModelMetric]:
        pairs = track.pairs
        n = len(pairs)
        window = f"{point}:{track.n - n + 1}-{track.n}"

        def row(metric: str, value: float, count: int = n, span: str = window) -> ModelMetric:
            return ModelMetric(
                model=model, model_version=version, metric=metric, value=value, n=count, window=span, computed_at=at
            )

        rows = [
            row("roc_auc", roc_auc(pairs)),
            row("log_loss", float(track.rolling.get())),
            row("base_rate", sum(1 for _, y in pairs if y) / n if n else math.nan),
            row("mean_prediction", sum(p for p, _ in pairs) / n if n else math.nan),
            row("log_loss_cumulative", float(track.cumulative.get()), track.n, f"{point}:1-{track.n}"),
        ]
        for b in calibration(pairs, bins=self.bins):
            k = round(b.low * self.bins)
            rows.append(row(f"calibration_bin{k}_predicted", b.mean_predicted, b.n))
            rows.append(row(f"calibration_bin{k}_observed", b.observed_rate, b.n))
        return rows
