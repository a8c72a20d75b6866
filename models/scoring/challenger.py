"""The XGBoost challenger to the online propensity model, and champion selection with an A/B split.

:func:`train_challenger` fits gradient-boosted trees (Chen & Guestrin 2016) on finished sessions'
feature snapshots - the ``sessions`` table's feature columns (:meth:`schemas.scores.SessionRecord.features`
rebuilds a snapshot from a row) and ``purchased`` - in a batch job (``revstream train``). The worker
loads the saved model and scores a poll batch at once with :meth:`Challenger.predict_batch` (XGBoost
has a fixed cost of ~0.5 ms per call, so one call per event would cost more than the rest of scoring).

The snapshots in ``sessions`` are each session's *last* pre-order snapshot, so the challenger learns what
a session looks like at its end; scored on an early event it extrapolates, and its ``first``-point
metrics say how well. The input layout is the numeric features in :data:`NUMERIC_FEATURES` order, then
the one-hot keys seen in training (sorted); a key the model has not seen is ignored, a missing one is 0.

:class:`Champion` keeps the prequential log loss of both models over the last ``window`` sessions both
scored, at the session's first scored event and at its last before the label, and names the one with the
lower mean of the two the champion, once ``min_labels`` sessions are in and only when the other is better by more
than ``margin`` (relative), so that the choice does not flap. :meth:`Champion.route` splits sessions
deterministically by a keyed BLAKE2b hash of the session id (never Python's salted ``hash()``: every
worker and every restart must agree) into the ``challenger`` arm (``challenger_share`` of sessions),
which always gets the challenger's score, and the ``online`` arm, which gets the champion's. Outcomes
(sessions, conversions) are counted per arm for the A/B comparison.

Why both points: the published score is every event's, and a model can be good late and bad early. The
challenger trained on session-end snapshots is exactly that: on the simulator it beats the online model
at the last event (log loss 0.02 vs 0.07) and loses badly at the first (0.31 vs 0.16,
``benchmarks/scoring.py``); judged on the last point alone it would take over every early score too.

>>> rows = [{"checkout_starts": float(i % 2), "events": float(i % 7)} for i in range(200)]
>>> model = train_challenger(rows, [bool(i % 2) and i % 3 == 0 for i in range(200)], rounds=20, nthread=1)
>>> low, high = model.predict_batch([{"checkout_starts": 0.0}, {"checkout_starts": 1.0}])
>>> low < 0.1 < high, model.model_version.startswith("xgb-")
(True, True)
>>> champion = Champion(challenger_share=0.2)
>>> champion.route("5f1c2b7a9d3e4c10") == champion.route("5f1c2b7a9d3e4c10")
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from river import metrics, utils

from models.scoring.features import NUMERIC_FEATURES
from schemas.scores import ModelMetric

CHALLENGER = "propensity_xgb"
"""Model name of the challenger (``Score.model``, ``ModelMetric.model``)."""
ONLINE = "propensity_online"
ARMS = ("online", "challenger")

DEFAULT_PARAMS: Mapping[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.05,
    "min_child_weight": 2.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "seed": 0,
}
"""Shallow trees and a small learning rate: a few hundred positives per month in a mid-size shop."""


class Challenger:
    """A trained booster, its input layout and its version (a hash of the model's content)."""

    __slots__ = ("booster", "feature_names", "model_version")

    def __init__(self, booster: xgb.Booster) -> None:
        # One thread: predictions come in poll batches of tens to thousands, where threads only add cost.
        booster.set_param({"nthread": 1})
        self.booster = booster
        self.feature_names: tuple[str, ...] = tuple(booster.feature_names or ())
        self.model_version = "xgb-" + hashlib.blake2b(bytes(booster.save_raw("ubj")), digest_size=6).hexdigest()

    def predict_batch(self, snapshots: Sequence[Mapping[str, float]]) -> list[float]:
        """P(order) for each snapshot, in one call to XGBoost."""
        if not snapshots:
            return []
        names = self.feature_names
        matrix = np.array([[s.get(k, 0.0) for k in names] for s in snapshots], dtype=np.float32)
        predictions = self.booster.inplace_predict(matrix, validate_features=False)
        return [float(p) for p in predictions]

    def save(self, path: str | Path) -> None:
        """Save in XGBoost's own format: JSON for a ``.json`` path, UBJSON otherwise (e.g. ``.ubj``)."""
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: str | Path) -> Challenger:
        booster = xgb.Booster()
        booster.load_model(str(path))
        return cls(booster)


def train_challenger(
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[bool] | Sequence[int] | Sequence[float],
    *,
    rounds: int = 300,
    params: Mapping[str, Any] | None = None,
    nthread: int = 0,
) -> Challenger:
    """Fit the challenger on snapshots and their labels (``nthread`` 0: all cores; the fit is batch work)."""
    onehots = sorted({k for row in rows for k in row if "=" in k})
    names = [*NUMERIC_FEATURES, *onehots]
    matrix = np.array([[row.get(k, 0.0) for k in names] for row in rows], dtype=np.float32)
    data = xgb.DMatrix(matrix, label=np.asarray(labels, dtype=np.float32), feature_names=names)
    settings = {**DEFAULT_PARAMS, **(params or {}), "nthread": nthread}
    return Challenger(xgb.train(settings, data, num_boost_round=rounds))


@dataclass(frozen=True, slots=True)
class ArmOutcome:
    """Sessions routed to an A/B arm (labelled, not bots) and how many converted."""

    sessions: int
    conversions: int

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.sessions if self.sessions else math.nan


class Champion:
    """Champion/challenger selection on recent prequential log loss, and the deterministic A/B split.

    >>> champion = Champion(window=100, min_labels=10)
    >>> for i in range(50):
    ...     bought = i % 5 == 0
    ...     champion.record(f"s{i}", {ONLINE: (0.5, 0.5), CHALLENGER: (0.2, 0.9 if bought else 0.1)}, bought)
    >>> champion.champion, champion.published_model("s1") == champion.published_model("s1")
    ('propensity_xgb', True)
    """

    def __init__(
        self,
        *,
        window: int = 2000,
        min_labels: int = 500,
        margin: float = 0.01,
        challenger_share: float = 0.1,
        salt: str = "propensity-ab-1",
    ) -> None:
        self.window = window
        self.min_labels = min_labels
        self.margin = margin
        self.challenger_share = challenger_share
        self.salt = salt
        # learned state
        self.champion = ONLINE
        # Any: River's Rolling forwards ``get`` dynamically, which mypy cannot follow.
        self.losses: dict[tuple[str, str], Any] = {
            (m, point): utils.Rolling(metrics.LogLoss, window_size=window)
            for m in (ONLINE, CHALLENGER)
            for point in ("first", "last")
        }
        self.n_paired = 0
        self.switches = 0
        self.outcomes = {arm: [0, 0] for arm in ARMS}
        self._threshold = int(challenger_share * 2**64)
        self._key = salt.encode()[:64]

    def route(self, session_id: str) -> str:
        """The A/B arm of a session: ``"challenger"`` for ``challenger_share`` of them, else ``"online"``."""
        digest = hashlib.blake2b(session_id.encode(), digest_size=8, key=self._key).digest()
        return "challenger" if int.from_bytes(digest, "big") < self._threshold else "online"

    def published_model(self, session_id: str) -> str:
        """Whose score a session gets: the challenger in its arm, the champion otherwise."""
        return CHALLENGER if self.route(session_id) == "challenger" else self.champion

    def record(self, session_id: str, predictions: Mapping[str, tuple[float, float]], purchased: bool) -> None:
        """A labelled session: count its arm's outcome; with both models' (first, last) predictions, compare."""
        outcome = self.outcomes[self.route(session_id)]
        outcome[0] += 1
        outcome[1] += int(purchased)
        online, challenger = predictions.get(ONLINE), predictions.get(CHALLENGER)
        if online is None or challenger is None:
            return
        for model, (first, last) in ((ONLINE, online), (CHALLENGER, challenger)):
            self.losses[model, "first"].update(purchased, first)
            self.losses[model, "last"].update(purchased, last)
        self.n_paired += 1
        if self.n_paired < self.min_labels:
            return
        other = CHALLENGER if self.champion == ONLINE else ONLINE
        if self.log_loss(other) < self.log_loss(self.champion) * (1.0 - self.margin):
            self.champion = other
            self.switches += 1

    def log_loss(self, model: str, point: str = "") -> float:
        """Recent log loss of ``model`` on the sessions both scored: at ``point``, or the mean of both points."""
        if not self.n_paired:
            return math.nan
        if point:
            return float(self.losses[model, point].get())
        return (float(self.losses[model, "first"].get()) + float(self.losses[model, "last"].get())) / 2.0

    def arms(self) -> dict[str, ArmOutcome]:
        return {arm: ArmOutcome(sessions, conversions) for arm, (sessions, conversions) in self.outcomes.items()}

    def report(self, *, model_version: str, at: datetime) -> list[ModelMetric]:
        """A/B outcomes (``window`` ``"arm:<arm>"``) and recent paired log losses (``"paired:<point>"``) as rows."""

        def row(model: str, metric: str, value: float, n: int, window: str) -> ModelMetric:
            version = model_version if model == CHALLENGER else ""
            return ModelMetric(
                model=model, model_version=version, metric=metric, value=value, n=n, window=window, computed_at=at
            )

        rows = []
        for arm, outcome in self.arms().items():
            window, n = f"arm:{arm}", outcome.sessions
            rows.append(row(CHALLENGER, "ab_sessions", float(n), n, window))
            rows.append(row(CHALLENGER, "ab_conversions", float(outcome.conversions), n, window))
            rows.append(row(CHALLENGER, "ab_conversion_rate", outcome.conversion_rate, n, window))
        paired = min(self.n_paired, self.window)
        rows.extend(
            row(model, "log_loss_paired", self.log_loss(model, point), paired, f"paired:{point}")
            for model in (ONLINE, CHALLENGER)
            for point in ("first", "last")
        )
        return rows
