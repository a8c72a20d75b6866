"""Incrementality attribution: a learned conversion model with a baseline, credited by counterfactual removal.

The rule models, Markov and Shapley all hand a conversion's whole revenue to the channels of its path, so
the revenue that would have come anyway (the person's baseline intent) lands on channels roughly by touch
volume. This model separates the two, after the counterfactual view of Dalessandro, Perlich, Stitelman &
Provost (2012, "Causally motivated attribution for online advertising") and the additive log-odds
("discrete-time hazard") models of Shao & Li (2011, "Data-driven multi-touch attribution models").

**What it learns.** Every session is one trial: it converted or it did not.
:class:`~models.attribution.paths.TouchpointPaths` hands the model each session as soon as its outcome is
known (:meth:`IncrementalAttribution.learn_trial`: converted on an order; not converted when a later touch
arrives or the path expires), because ended paths alone are a biased sample (a path without a conversion
only ends after ``lookback_days`` without a touch; on the benchmark's 60 days only 5,084 of 33,873 sessions
would be learned, 20% of them converting instead of 3%). A trial's features are

* ``now:<c>``: 1 for the session's own channel ``c`` (the immediate effect);
* ``carry<h>d:<c>``: ``sum over earlier touches j of channel c of 2 ** (-(t_i - t_j) / h)`` for each half-life
  ``h`` in ``half_lives_days`` (two half-lives, 1 and 7 days, let a linear model approximate other decays).

Every channel has its features, ``reference_channel`` (``direct``) included, so a channel's effect is
measured against "the same touches, had they come direct": the difference of its coefficients and the
reference's. The reference's own features are the controls for how often a person comes back (which goes
with intent, whatever brought them).

The model is a Bayesian logistic regression learned one trial at a time by assumed density filtering
(the Laplace form of the extended Kalman filter for a GLM; Spiegelhalter & Lauritzen 1990, "Sequential
updating of conditional probabilities on directed graphical structures", and Opper 1998, "A Bayesian
approach to on-line learning"): a Gaussian posterior over the coefficients, mean ``w`` and covariance
``S``, starts from the prior (variance ``prior_variance`` per coefficient, 100 for the intercept) and each
trial ``(x, y)`` with ``p = sigmoid(w . x)`` updates it by one Newton step with Sherman-Morrison::

    S <- S - (S x)(S x)' p (1 - p) / (1 + p (1 - p) x' S x)
    w <- w + S x (y - p)

Why not River's SGD logistic regression (what this model used before): the features are few (three per
channel) and strongly correlated (the intercept and the ``now:`` indicators; the 1- and 7-day stocks), so
first-order steps at one learning rate are slow where the curvature is low and noisy where it is high.
With Polyak averaging over the last 3,000 trials, its end-of-period coefficients still put a channel's share
up to 14.2 pp off the truth (``benchmarks/attribution.py``, 20,000 people, 7 seeds: 3.6-14.2 pp, against
2.6-9.2 for its online credits). The second-order update: 3.7-7.5 pp online and 3.6-6.6 pp at the end, on
the same seeds. River has no second-order or Bayesian online logistic model, and the update is the few
lines of :meth:`_learn`, at ``O(d^2)`` per trial for ``d`` features (28 for the nine default channels): 0.13
ms per touch, against 0.07 for the SGD version.

**How it credits.** A conversion happened in the last touch of its path; ``p`` is the model's probability
of that trial and ``p_-c`` the probability with channel ``c``'s touches relabelled as the reference. The
removal effect ``d_c = max(p - p_-c, 0)`` is the simulator's counterfactual definition of a channel's
incremental conversions (``models.simulator``: ``p - sigmoid(logit - term_c)`` per session), so crediting
``d_c / p`` of each conversion's revenue to ``c`` estimates the channel's incremental revenue when summed
over conversions. What is left, ``p - sum_c d_c``, goes to the pseudo-channel ``baseline_channel``
(``baseline``): what the model expects without any of the channels (if the effects add up to more than
``p`` the channels share ``p``, and the baseline gets 0). Within a channel, ``d_c`` is shared by its touches
in proportion to each touch's own log-odds term (immediate for the converting touch, decayed carryover for
the earlier ones). Shapley values of the channels would share ``p - p_0`` instead; removal effects were
chosen because they are what "incremental" means in the simulator and in lift tests.

The weights of the touches and of the baseline are on one scale, and
:class:`~models.attribution.paths.TouchpointPaths` turns them together into cents with
:func:`~models.attribution.money.split_cents`, so touches + baseline add up to the revenue exactly. The
baseline row has ``campaign`` ``""`` and ``touch_index`` = the path's length (one past the last touch, so it
never collides with a touch in the warehouse's ``(model, conversion_id, touch_index)`` key). A conversion
without any touch follows the store's rule (all to ``direct``), like every model.

The posterior also says how sure the credits are: :meth:`IncrementalAttribution.removal_effects` credits one
trial, and :meth:`IncrementalAttribution.draw` gives a copy that predicts with coefficients drawn from the
posterior, so crediting the same conversions with a few hundred draws puts intervals on the channel shares
(``benchmarks/attribution.py`` does, and checks the pairs it is sure of against the truth).

Predictions use a snapshot of the posterior mean taken when ``refit_every`` trials have been learned
since the last one (or on :meth:`IncrementalAttribution.refit`), so ``model_version``
(``incremental.<snapshots>``) names the coefficients behind a credit. Until a conversion has been learned
the model predicts like :class:`~models.attribution.heuristics.Linear`, with no baseline.

Limits: intent the features do not see (how likely this person is to buy at all, device, the session's
noise) attenuates every lift towards 0 in a logistic fit, which inflates the baseline; the shares of the
channels among themselves suffer less. Early conversions are credited by a young model (the ``online``
figures of ``benchmarks/attribution.py`` are worse than the ``final`` ones). A touch arriving out of order,
before the path's last touch, is only history for later trials.

>>> from datetime import datetime, timedelta, UTC
>>> from models.attribution.base import Touch
>>> t0 = datetime(2026, 11, 1, tzinfo=UTC)
>>> def path(*channels):
...     return [Touch(channel=c, campaign="", at=t0 + timedelta(days=i), session_id=str(i))
...             for i, c in enumerate(channels)]
>>> model = IncrementalAttribution(refit_every=1)
>>> model.predict_with_baseline(path("email", "direct"), at=t0)   # nothing learned: linear, no baseline
([1.0, 1.0], 0.0)
>>> for _ in range(1000):   # email converts 1 in 2, direct 1 in 4
...     for channel, converted in [("email", True), ("email", False), ("direct", True)] + [("direct", False)] * 3:
...         model.learn_one(path(channel), converted=converted)
>>> touches, baseline = model.predict_with_baseline(path("email"), at=t0)
>>> round(touches[0] / (touches[0] + baseline), 1)   # p(email) ~ 1/2, p(direct) ~ 1/4: half is incremental
0.5
>>> model.predict_with_baseline(path("direct"), at=t0)[0]   # the reference channel is the counterfactual
[0.0]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from models.attribution.base import Touch

_DAY_SECONDS = 86400.0
_INTERCEPT_VARIANCE = 100.0  # nearly flat: the base rate is whatever the data say


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


class IncrementalAttribution:
    """Removal effects of channels in an online logistic model of conversion per session, with a baseline."""

    name = "incremental"

    def __init__(
        self,
        *,
        half_lives_days: Sequence[float] = (1.0, 7.0),
        reference_channel: str = "direct",
        baseline_channel: str = "baseline",
        prior_variance: float = 1.0,
        refit_every: int = 500,
    ) -> None:
        if not half_lives_days or any(not h > 0 for h in half_lives_days):
            msg = f"half_lives_days must be positive and at least one, got {half_lives_days}"
            raise ValueError(msg)
        if not prior_variance > 0 or refit_every < 1:
            msg = f"need prior_variance > 0 and refit_every >= 1, got {prior_variance}, {refit_every}"
            raise ValueError(msg)
        self.half_lives_days = half_lives_days
        self.reference_channel = reference_channel
        self.baseline_channel = baseline_channel
        self.prior_variance = prior_variance
        self.refit_every = refit_every
        # learned state: the posterior learns every trial; predictions use the last snapshot of its mean
        self.index: dict[str, int] = {"": 0}  # feature -> position in mean and covariance; "" is the intercept
        self.mean: npt.NDArray[np.float64] = np.zeros(1)
        self.covariance: npt.NDArray[np.float64] = np.full((1, 1), _INTERCEPT_VARIANCE)
        self.trials_learned = 0
        self.conversions_learned = 0
        self.learned_since_snapshot = 0
        self.n_snapshots = 0
        self.intercept = 0.0
        self.coefficients: dict[str, float] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickle, also one of the SGD version: its averaged coefficients become the prior mean."""
        if "averaged" in state:
            old = state.pop("averaged")
            for key in ("regression", "learning_rate", "l2", "averaging"):
                state.pop(key, None)
            prior = 1.0
            state["prior_variance"] = prior
            state["index"] = {k: i for i, k in enumerate(old)}  # "" (the intercept) comes first
            state["mean"] = np.array(list(old.values()), dtype=np.float64)
            state["covariance"] = np.diag([_INTERCEPT_VARIANCE if not k else prior for k in old])
        self.__dict__.update(state)

    @property
    def model_version(self) -> str:
        return f"{self.name}.{self.n_snapshots}"

    def features(self, path: Sequence[Touch]) -> list[dict[str, float]]:
        """The features of every touch of ``path`` as a trial (see the module docstring); ``path`` is unchanged."""
        labels = [f"{h:g}d" for h in self.half_lives_days]
        stocks: list[dict[str, float]] = [{} for _ in labels]  # per half-life: channel -> decayed touches
        out: list[dict[str, float]] = []
        previous: datetime | None = None
        for touch in path:
            if previous is not None:
                elapsed = max((touch.at - previous).total_seconds(), 0.0) / _DAY_SECONDS
                for h, stock in zip(self.half_lives_days, stocks, strict=True):
                    factor = 2.0 ** (-elapsed / h)
                    for c in stock:
                        stock[c] *= factor
            x = {f"carry{label}:{c}": v for label, stock in zip(labels, stocks, strict=True) for c, v in stock.items()}
            x[f"now:{touch.channel}"] = 1.0
            out.append(x)
            for stock in stocks:
                stock[touch.channel] = stock.get(touch.channel, 0.0) + 1.0
            previous = touch.at
        return out

    def learn_one(self, path: Sequence[Touch], *, converted: bool) -> None:
        """Learn every touch of one ended path as a trial (only a converting path's last touch converted).

        For a caller that has whole paths; :class:`~models.attribution.paths.TouchpointPaths` calls
        :meth:`learn_trial` as each session's outcome becomes known instead.
        """
        trials = self.features(path)
        for i, x in enumerate(trials):
            self._learn(x, converted=converted and i == len(trials) - 1)

    def learn_trial(self, history: Sequence[Touch], *, converted: bool) -> None:
        """Learn the last touch of ``history`` as a session that converted or not (the rest is its history)."""
        if history:
            self._learn(self.features(history)[-1], converted=converted)

    def _learn(self, x: dict[str, float], *, converted: bool) -> None:
        """One assumed-density-filtering step of the posterior (see the module docstring)."""
        index = self.index
        for k in x:
            if k not in index:  # a feature seen for the first time: its prior, independent of the rest
                index[k] = len(index)
                self.mean = np.append(self.mean, 0.0)
                size = len(index)
                grown = np.zeros((size, size))
                grown[:-1, :-1] = self.covariance
                grown[-1, -1] = self.prior_variance
                self.covariance = grown
        at = np.fromiter((0, *(index[k] for k in x)), dtype=np.intp, count=len(x) + 1)
        value = np.fromiter((1.0, *x.values()), dtype=np.float64, count=len(x) + 1)
        p = _sigmoid(float(self.mean[at] @ value))
        weight = p * (1.0 - p)
        spread = self.covariance[:, at] @ value  # S x
        self.covariance -= np.outer(spread, spread) * (weight / (1.0 + weight * float(spread[at] @ value)))
        self.mean += (self.covariance[:, at] @ value) * (float(converted) - p)
        self.trials_learned += 1
        self.conversions_learned += converted
        self.learned_since_snapshot += 1

    def refit(self) -> None:
        """Take a snapshot of the posterior mean for the predictions that follow."""
        self.intercept = float(self.mean[0])
        self.coefficients = {k: float(self.mean[i]) for k, i in self.index.items() if k}
        self.learned_since_snapshot = 0
        self.n_snapshots += 1

    def _logit(self, x: Mapping[str, float]) -> float:
        return self.intercept + sum(self.coefficients.get(k, 0.0) * v for k, v in x.items())

    def _lift(self, x: Mapping[str, float], channel: str) -> float:
        """How much ``channel``'s touches add to the logit over the same touches from the reference channel."""
        ref = self.reference_channel
        lift = 0.0
        for k, v in x.items():
            kind, _, c = k.partition(":")
            if c == channel:
                lift += (self.coefficients.get(k, 0.0) - self.coefficients.get(f"{kind}:{ref}", 0.0)) * v
        return lift

    def predict_with_baseline(self, path: Sequence[Touch], *, at: datetime) -> tuple[list[float], float]:
        """Per-touch weights and the baseline's weight, on one scale (the conversion probability ``p``)."""
        if not self.conversions_learned:
            return [1.0] * len(path), 0.0
        if self.learned_since_snapshot >= self.refit_every or not self.n_snapshots:
            self.refit()
        effects, baseline = self.removal_effects(self.features(path)[-1], {t.channel for t in path})
        return self._spread(path, effects), baseline

    def removal_effects(self, x: Mapping[str, float], channels: Iterable[str]) -> tuple[dict[str, float], float]:
        """Per channel of ``channels`` (the reference left out) its removal effect on the trial with features
        ``x``, and the baseline's weight; together they add up to the trial's conversion probability."""
        logit = self._logit(x)
        p = _sigmoid(logit)
        effects = {
            c: max(p - _sigmoid(logit - self._lift(x, c)), 0.0) for c in sorted(channels) if c != self.reference_channel
        }
        removed = sum(effects.values())
        if removed > p:
            effects = {c: e * p / removed for c, e in effects.items()}
            removed = p
        return effects, max(p - removed, 0.0)

    def draw(self, rng: np.random.Generator) -> IncrementalAttribution:
        """A copy that predicts with coefficients drawn from the posterior instead of its mean.

        For the uncertainty of credits (``benchmarks/attribution.py`` draws a few hundred to put intervals on
        channel shares); the copy shares the posterior's arrays, so it is for predicting only.
        """
        symmetric = (self.covariance + self.covariance.T) / 2  # rank-one updates leave rounding asymmetry
        sample = rng.multivariate_normal(self.mean, symmetric, method="eigh")
        other = copy.copy(self)
        other.intercept = float(sample[0])
        other.coefficients = {k: float(sample[i]) for k, i in self.index.items() if k}
        other.learned_since_snapshot = 0
        other.n_snapshots = max(self.n_snapshots, 1)
        return other

    def predict_one(self, path: Sequence[Touch], *, at: datetime) -> list[float]:
        """Per-touch weights without the baseline (the store credits the baseline from ``predict_with_baseline``)."""
        return self.predict_with_baseline(path, at=at)[0]

    def _spread(self, path: Sequence[Touch], effects: Mapping[str, float]) -> list[float]:
        """Share each channel's effect by its touches in proportion to their own log-odds terms."""
        last = len(path) - 1
        terms: list[float] = []
        for i, touch in enumerate(path):
            if touch.channel not in effects:
                terms.append(0.0)
                continue
            coefficient, ref = self.coefficients.get, self.reference_channel
            if i == last:
                term = coefficient(f"now:{touch.channel}", 0.0) - coefficient(f"now:{ref}", 0.0)
            else:
                age = max((path[last].at - touch.at).total_seconds(), 0.0) / _DAY_SECONDS
                term = sum(
                    (coefficient(f"carry{h:g}d:{touch.channel}", 0.0) - coefficient(f"carry{h:g}d:{ref}", 0.0))
                    * 2.0 ** (-age / h)
                    for h in self.half_lives_days
                )
            terms.append(max(term, 0.0))
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        for touch, term in zip(path, terms, strict=True):
            totals[touch.channel] = totals.get(touch.channel, 0.0) + term
            counts[touch.channel] = counts.get(touch.channel, 0) + 1
        return [
            effects.get(t.channel, 0.0) * (term / totals[t.channel] if totals[t.channel] > 0 else 1 / counts[t.channel])
            for t, term in zip(path, terms, strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "half_lives_days": list(self.half_lives_days),
            "reference_channel": self.reference_channel,
            "baseline_channel": self.baseline_channel,
            "prior_variance": self.prior_variance,
            "refit_every": self.refit_every,
            "features": list(self.index),
            "mean": self.mean.tolist(),
            "covariance": self.covariance.tolist(),
            "trials_learned": self.trials_learned,
            "conversions_learned": self.conversions_learned,
            "learned_since_snapshot": self.learned_since_snapshot,
            "n_snapshots": self.n_snapshots,
            "intercept": self.intercept,
            "coefficients": self.coefficients,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IncrementalAttribution:
        model = cls(
            half_lives_days=tuple(data["half_lives_days"]),
            reference_channel=data["reference_channel"],
            baseline_channel=data["baseline_channel"],
            prior_variance=data["prior_variance"],
            refit_every=data["refit_every"],
        )
        model.index = {k: i for i, k in enumerate(data["features"])}
        model.mean = np.array(data["mean"], dtype=np.float64)
        model.covariance = np.array(data["covariance"], dtype=np.float64).reshape(len(model.index), len(model.index))
        model.trials_learned = data["trials_learned"]
        model.conversions_learned = data["conversions_learned"]
        model.learned_since_snapshot = data["learned_since_snapshot"]
        model.n_snapshots = data["n_snapshots"]
        model.intercept = data["intercept"]
        model.coefficients = dict(data["coefficients"])
        return model

    def __repr__(self) -> str:
        return (
            f"IncrementalAttribution(half_lives_days={self.half_lives_days!r}, "
            f"reference_channel={self.reference_channel!r}, baseline_channel={self.baseline_channel!r}, "
            f"prior_variance={self.prior_variance}, refit_every={self.refit_every})"
        )
