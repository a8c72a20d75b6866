"""Markov-chain attribution by removal effect (Anderl, Becker, von Wangenheim & Schumann 2016), learned online.

Every path that ended is a walk ``start -> s_1 -> ... -> s_n -> conversion | null``. With ``order`` k the
state after the i-th touch is the tuple of the last ``min(i, k)`` channels (order 1: the channel itself), so
higher orders remember where the person came from. ``learn_one`` adds the walk's transitions to integer
counts; the transition probabilities are the counts normalised per state (maximum likelihood).

Solving is exact linear algebra, no simulation. For the transient states, with ``Q`` the transient-to-
transient probabilities and ``r`` the probabilities of stepping into ``conversion``, the absorption
probabilities ``x`` solve ``(I - Q) x = r`` and ``P = x[start]`` is the chain's conversion probability.
Removing channel c redirects every state that contains c to ``null`` (their ``x`` is 0): solve the same
system restricted to the other states for ``P_-c``. The removal effect is ``RE_c = 1 - P_-c / P`` (in
[0, 1], since removing states can only lower ``x``). A conversion's revenue is shared by the channels of its
path in proportion to their ``RE_c``, and within a channel evenly by its touches
(:func:`~models.attribution.base.spread_by_channel`). The system is sparse (a state has few successors),
so a large one (order 2 and up) is factorised with SuperLU; a small one is solved dense.

Re-solving after every path would cost ``channels + 1`` solves per conversion, so the effects are solved
again when ``refit_every`` paths have been learned since the last solve, when a path to credit has a channel
the last solve did not know, or on :meth:`MarkovAttribution.refit`. Until a conversion has been learned
(or when a path's channels all have zero effect) the model predicts like
:class:`~models.attribution.heuristics.Linear`. ``model_version`` is ``<name>.<solves>``.

>>> from datetime import datetime, UTC
>>> from models.attribution.base import Touch
>>> def path(*channels):
...     return [Touch(channel=c, campaign="", at=datetime(2026, 11, 1, tzinfo=UTC), session_id=c) for c in channels]
>>> model = MarkovAttribution(refit_every=1)
>>> model.predict_one(path("email", "direct"), at=datetime(2026, 11, 2, tzinfo=UTC))   # nothing learned
[1.0, 1.0]
>>> model.learn_one(path("email", "direct"), converted=True)
>>> model.learn_one(path("direct"), converted=False)
>>> effects = model.removal_effects()   # P = 0.5; without email 0.25, without direct 0
>>> effects, model.conversion_probability
({'direct': 1.0, 'email': 0.5}, 0.5)
>>> model.predict_one(path("email", "direct", "direct"), at=datetime(2026, 11, 2, tzinfo=UTC))
[0.5, 0.5, 0.5]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

from models.attribution.base import LazilySolved, Touch

State = tuple[str, ...]
CONVERSION = "(conversion)"
NULL = "(null)"
START: State = ()
DENSE_STATES = 150  # up to this many states (order 1, a small order 2) a dense solve beats a sparse LU


class MarkovAttribution(LazilySolved):
    """Removal-effect attribution on an order-``order`` Markov chain of channels, solved exactly."""

    def __init__(self, *, order: int = 1, refit_every: int = 100) -> None:
        if order < 1:
            msg = f"order must be at least 1, got {order}"
            raise ValueError(msg)
        self.order = order
        self.refit_every = refit_every
        # learned state
        self.counts: dict[State, dict[State | str, int]] = {}
        self.paths_learned = 0
        self.conversions_learned = 0
        self.learned_since_solve = 0
        self.n_solves = 0
        self.conversion_probability = 0.0
        self.effects: dict[str, float] = {}

    @property
    def name(self) -> str:
        return "markov" if self.order == 1 else f"markov_o{self.order}"

    @property
    def model_version(self) -> str:
        return f"{self.name}.{self.n_solves}"

    def learn_one(self, path: Sequence[Touch], *, converted: bool) -> None:
        """Count the transitions of one ended path (an empty path teaches nothing)."""
        if not path:
            return
        state = START
        for touch in path:
            following = (*state, touch.channel)[-self.order :]
            successors = self.counts.setdefault(state, {})
            successors[following] = successors.get(following, 0) + 1
            state = following
        end = CONVERSION if converted else NULL
        successors = self.counts.setdefault(state, {})
        successors[end] = successors.get(end, 0) + 1
        self.paths_learned += 1
        self.conversions_learned += converted
        self.learned_since_solve += 1

    def channel_weights(self) -> Mapping[str, float]:
        return self.effects

    def removal_effects(self) -> dict[str, float]:
        """Every known channel's removal effect ``1 - P_-c / P``, solved now from all counts (by channel)."""
        self.refit()
        return dict(self.effects)

    def refit(self) -> None:
        """Solve the chain and every removal from the current counts."""
        states = sorted(self.counts)
        index = {s: i for i, s in enumerate(states)}
        rows, cols, values = [], [], []
        to_conversion = np.zeros(len(states))
        for s, successors in self.counts.items():
            total = sum(successors.values())
            for target, n in successors.items():
                if target == CONVERSION:
                    to_conversion[index[s]] = n / total
                elif target != NULL:
                    rows.append(index[s])
                    cols.append(index[target])  # type: ignore[index]  # not absorbing, so a State
                    values.append(n / total)
        matrix = sparse.csr_matrix((values, (rows, cols)), shape=(len(states),) * 2)
        q = matrix.toarray() if len(states) <= DENSE_STATES else matrix
        channels = sorted({c for s in states for c in s})
        self.conversion_probability = _absorption(q, to_conversion, np.ones(len(states), dtype=bool), index[START])
        effects = {}
        for channel in channels:
            keep = np.array([channel not in s for s in states])
            kept = _absorption(q, to_conversion, keep, int(keep[: index[START]].sum()))
            p = self.conversion_probability
            effects[channel] = 1.0 - kept / p if p > 0 else 0.0
        self.effects = effects
        self.learned_since_solve = 0
        self.n_solves += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "markov",
            "order": self.order,
            "refit_every": self.refit_every,
            "counts": [
                [list(s), t if isinstance(t, str) else list(t), n] for s, d in self.counts.items() for t, n in d.items()
            ],
            "paths_learned": self.paths_learned,
            "conversions_learned": self.conversions_learned,
            "learned_since_solve": self.learned_since_solve,
            "n_solves": self.n_solves,
            "conversion_probability": self.conversion_probability,
            "effects": self.effects,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MarkovAttribution:
        model = cls(order=data["order"], refit_every=data["refit_every"])
        for source, target, n in data["counts"]:
            model.counts.setdefault(tuple(source), {})[target if isinstance(target, str) else tuple(target)] = n
        model.paths_learned = data["paths_learned"]
        model.conversions_learned = data["conversions_learned"]
        model.learned_since_solve = data["learned_since_solve"]
        model.n_solves = data["n_solves"]
        model.conversion_probability = data["conversion_probability"]
        model.effects = dict(data["effects"])
        return model

    def __repr__(self) -> str:
        return f"MarkovAttribution(order={self.order}, refit_every={self.refit_every})"


def _absorption(q: np.ndarray | sparse.csr_matrix, to_conversion: np.ndarray, keep: np.ndarray, start: int) -> float:
    """``x[start]`` of ``(I - Q) x = r`` over the kept states (the others absorb into null)."""
    if not keep.any():
        return 0.0
    if isinstance(q, np.ndarray):
        x = np.linalg.solve(np.eye(int(keep.sum())) - q[np.ix_(keep, keep)], to_conversion[keep])
    else:
        sub = q[keep][:, keep]
        x = splu(sparse.csc_matrix(sparse.identity(sub.shape[0]) - sub)).solve(to_conversion[keep])
    return float(x[start])
