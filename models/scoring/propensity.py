"""Purchase propensity: will the current session end in an order? The online model.

:class:`PropensityModel` is an online logistic regression on a fixed transform of the feature snapshot
(:func:`design`). :class:`~models.scoring.propensity_learner.PropensityLearner` is the stage around it:
it scores sessions as their events arrive, keeps each open session's pre-order snapshots until the
session's label is known, learns from them then, and evaluates the predictions it made before.

Why logistic regression. The signal is mostly monotone in a few funnel counts (product views, cart adds,
checkout starts) and the device's history. On the simulator a linear model on log-counts, learning
online, ranks sessions within 0.015 AUC of XGBoost fitted offline on the same snapshots, at a session's
first event and at its last (``benchmarks/scoring.py``); it predicts the prior before it has learned (the
intercept starts at ``logit(prior)``), costs microseconds per prediction, and its state is a few KB. Counts
and durations enter as ``log1p`` (diminishing returns: the tenth product view says less than the first),
plus indicators for the funnel steps reached; every input is then standardised by its running mean and
variance.

Why not River's pipeline. This model is exactly River's ``StandardScaler() | LogisticRegression(
optimizer=AdaGrad(lr), l2=l2, intercept_init=logit(prior), intercept_lr=...)``, which it was until
2026-11 (the tests check that both give the same predictions, to 1e-9, over a stream of snapshots). River
works on dicts, one Python operation per input per step: 47 us per ``learn_one`` and 13-19 us per
prediction with :func:`design`'s dict, 13% of the one-core embedded pipeline. The same arithmetic on a
NumPy vector of the fixed inputs takes 15 us and 8 us. Checkpoints pickled with the River pipeline are
converted when they are loaded (:meth:`PropensityModel.__setstate__`).

The snapshot's ``channel=...`` / ``device=...`` one-hots are not inputs. Standardised as River's scaler did
(each seen only as 1.0: variance 0, so always 0 after scaling) they never moved a prediction; given as
dense 0/1 inputs they made the simulator's prequential AUC slightly worse (first event 0.588 against 0.596,
every scored event 0.7986 against 0.7995): what a channel says is already in the device's history.

>>> model = PropensityModel()
>>> round(model.predict_proba_one({"events": 1.0, "channel=email": 1.0})[True], 3)   # the prior
0.03
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from models.scoring.features import NUMERIC_FEATURES

Vector = npt.NDArray[np.float64]

_INDICATORS = (
    ("viewed_product", "product_views"),
    ("added_to_cart", "cart_adds"),
    ("started_checkout", "checkout_starts"),
    ("returning", "visits_30d"),
    ("customer", "orders_total"),
)
INPUTS: tuple[str, ...] = (*NUMERIC_FEATURES, *(name for name, _ in _INDICATORS), "landing")
"""The model's inputs in order: every numeric feature, the funnel indicators, the landing indicator."""
_N = len(NUMERIC_FEATURES)
_DAYS = tuple(NUMERIC_FEATURES.index(k) for k in ("days_since_last_order", "days_since_last_visit"))
_SOURCES = np.array([NUMERIC_FEATURES.index(source) for _, source in _INDICATORS])
_EVENTS = NUMERIC_FEATURES.index("events")


def feature_vector(x: Mapping[str, float]) -> list[float]:
    """The snapshot's :data:`~models.scoring.features.NUMERIC_FEATURES` in order (0 for a missing one)."""
    return [x.get(k, 0.0) for k in NUMERIC_FEATURES]


def design_vector(values: Sequence[float] | Vector) -> Vector:
    """:func:`design` on a feature vector (:data:`NUMERIC_FEATURES` order), as an array in :data:`INPUTS` order."""
    raw = np.asarray(values, dtype=np.float64)
    out = np.empty(len(INPUTS))
    logs = np.maximum(raw, 0.0, out=out[:_N])
    days = [logs[i] for i in _DAYS]
    np.log1p(logs, out=logs)
    for i, value in zip(_DAYS, days, strict=True):
        logs[i] = 1.0 / (1.0 + value)
    np.greater(raw[_SOURCES], 0.0, out=out[_N:-1])
    out[-1] = raw[_EVENTS] <= 1.0
    return out


def design(x: Mapping[str, float]) -> dict[str, float]:
    """The model's inputs from a snapshot: log1p of every numeric feature, funnel indicators, ``landing``.

    Days since the last order/visit enter as a recency ``1 / (1 + days)`` instead (1 = today, ~0 = never).
    ``landing`` (1 at the session's first event) gives the landing snapshot its own offset: a linear term in
    ``log1p(events)`` has to fit sessions of every length at once, and on the simulator it left predictions
    at the first event 1.5-fold too low (mean 0.021 against a 0.031 rate; 0.026 with the indicator, log loss
    0.1372 -> 0.1354, ``benchmarks/scoring.py``). Other keys (the one-hots) are not inputs.

    >>> d = design({"events": 1.0, "cart_adds": 3.0, "days_since_last_order": 365.0, "channel=email": 1.0})
    >>> round(d["cart_adds"], 3), d["added_to_cart"], round(d["days_since_last_order"], 4), "channel=email" in d
    (1.386, 1.0, 0.0027, False)
    >>> d["landing"], design({"events": 2.0})["landing"]
    (1.0, 0.0)
    """
    return dict(zip(INPUTS, design_vector(feature_vector(x)).tolist(), strict=True))


class PropensityModel:
    """Online logistic regression on :func:`design` (standardised), starting from the base rate ``prior``.

    AdaGrad (Duchi, Hazan & Singer 2011) rather than plain SGD: per-input step sizes suit inputs as
    unevenly frequent as a checkout start and a returning customer (on the simulator it matched the best
    tuned SGD rate without tuning; Adam was clearly worse). The intercept has its own plain rate. Each
    ``learn_one`` first updates the running mean and variance with the input (Welford), then takes one
    gradient step of the L2-penalised log loss on the input standardised with them; an input whose variance
    is still 0 counts as 0.

    >>> model = PropensityModel(prior=0.05)
    >>> round(model.predict_proba_one({"events": 1.0})[True], 3)
    0.05
    >>> for _ in range(200):
    ...     model.learn_one({"checkout_starts": 1.0}, True)
    ...     model.learn_one({"checkout_starts": 0.0}, False)
    >>> model.predict_proba_one({"checkout_starts": 1.0})[True] > 0.5 > model.predict_proba_one({})[True]
    True
    """

    def __init__(
        self, *, learning_rate: float = 0.05, intercept_lr: float = 0.01, l2: float = 1e-4, prior: float = 0.03
    ) -> None:
        self.learning_rate = learning_rate
        self.intercept_lr = intercept_lr
        self.l2 = l2
        self.prior = prior
        k = len(INPUTS)
        self.n_seen = 0  # inputs the scaler has seen
        self.means: Vector = np.zeros(k)
        self.variances: Vector = np.zeros(k)
        self.scales: Vector = np.zeros(k)  # 1 / standard deviation, 0 where the variance is 0
        self.weights: Vector = np.zeros(k)
        self.squared_gradients: Vector = np.zeros(k)  # AdaGrad's sums
        self.intercept = math.log(prior / (1.0 - prior))
        self.n_learned = 0.0
        spec = f"lr|adagrad|landing|{learning_rate}|{intercept_lr}|{l2}|{prior}|{','.join(NUMERIC_FEATURES)}"
        self._spec = hashlib.blake2b(spec.encode(), digest_size=4).hexdigest()

    @property
    def model_version(self) -> str:
        """``lr-<hash of the configuration>.<thousands of sessions learned>``: moves as the model learns."""
        return f"lr-{self._spec}.{int(self.n_learned) // 1000}"

    def predict_proba_one(self, x: Mapping[str, float]) -> dict[bool, float]:
        p = self.predict_vector(feature_vector(x))
        return {False: 1.0 - p, True: p}

    def learn_one(self, x: Mapping[str, float], y: bool, w: float = 1.0) -> None:
        """Learn one snapshot (a missing feature counts as 0); ``w`` weighs it."""
        self.learn_vector(feature_vector(x), y, w)

    def predict_vector(self, values: Sequence[float] | Vector) -> float:
        """P(order) for a feature vector in :data:`~models.scoring.features.NUMERIC_FEATURES` order."""
        z = design_vector(values)
        z -= self.means
        z *= self.scales
        logit = self.intercept + float(self.weights @ z)
        p = 0.0 if logit < -30.0 else 1.0 if logit > 30.0 else 1.0 / (1.0 + math.exp(-logit))
        # Clipped so that one confident mistake costs a finite log loss (ln 1e6 = 13.8).
        return min(max(p, 1e-6), 1.0 - 1e-6)

    def learn_vector(self, values: Sequence[float] | Vector, y: bool, w: float = 1.0) -> None:
        """:meth:`learn_one` for a feature vector in :data:`~models.scoring.features.NUMERIC_FEATURES` order."""
        x = design_vector(values)
        self.n_seen += 1
        delta = x - self.means
        self.means += delta / self.n_seen
        self.variances += (delta * (x - self.means) - self.variances) / self.n_seen
        scales = np.sqrt(self.variances, out=self.scales)
        np.divide(1.0, scales, out=scales, where=scales > 0.0)
        z = x - self.means
        z *= scales
        logit = self.intercept + float(self.weights @ z)
        # The log loss's gradient in the logit, as River's optim.losses.Log computes it (y in {-1, 1}).
        sign = 1.0 if y else -1.0
        margin = logit * sign
        if margin > 18.0:
            loss_gradient = -sign * math.exp(-margin)
        elif margin < -18.0:
            loss_gradient = -sign
        else:
            loss_gradient = -sign / (math.exp(margin) + 1.0)
        loss_gradient *= w
        gradient = z
        gradient *= loss_gradient
        gradient += self.l2 * self.weights
        self.intercept -= self.intercept_lr * loss_gradient
        self.squared_gradients += gradient * gradient
        self.weights -= self.learning_rate * gradient / np.sqrt(self.squared_gradients + 1e-8)
        self.n_learned += w

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickle; one from the River pipeline this model was (before 2026-11) is converted."""
        pipeline = state.pop("pipeline", None)
        self.__dict__.update(state)
        if pipeline is None:
            return
        scaler, regression = pipeline.steps["StandardScaler"], pipeline.steps["LogisticRegression"]
        weights, squared = regression._weights, regression.optimizer.g2  # River keeps them private
        self.n_seen = int(scaler.counts.get("events", 0))  # every input is in every learned design
        self.means = np.array([scaler.means.get(k, 0.0) for k in INPUTS])
        self.variances = np.array([scaler.vars.get(k, 0.0) for k in INPUTS])
        self.scales = np.zeros(len(INPUTS))
        np.divide(1.0, np.sqrt(self.variances), out=self.scales, where=self.variances > 0.0)
        self.weights = np.array([weights.get(k, 0.0) for k in INPUTS])
        self.squared_gradients = np.array([squared.get(k, 0.0) for k in INPUTS])
        self.intercept = float(regression.intercept)
