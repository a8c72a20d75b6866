"""Shapley-value attribution over channel coalitions, with coalition values from observed conversion rates.

The game (after Dalessandro, Perlich, Stitelman & Provost 2012, "Causally motivated attribution for online
advertising", with the coalition bookkeeping of Zhao et al. 2018, "Shapley value methods for attribution
modeling in online advertising"): the players are the ``n`` channels seen so far; a path's coalition is the
*set* of its channels (order and repeats ignored). ``learn_one`` counts, per exact channel set T, the paths
``n_T`` and the converting paths ``c_T``. Their conversion rate is shrunk towards the overall rate ``p`` by
``prior_paths`` pseudo-paths, so a set seen once does not count as a sure thing::

    r(T) = (c_T + prior_paths * p) / (n_T + prior_paths)

The value of a coalition S is the best rate of any observed set it contains (free disposal: a coalition can
always leave a member out, so adding a channel never lowers its value; it also gives a value to the many
sets that were never observed exactly), with v(empty) = 0 (``+`` is set union)::

    v(S) = max({r(T) : T ⊆ S, T observed} + {0})

and the channel weights are the exact Shapley values over all subsets, computed vectorised over bit masks::

    phi_c = sum over S ⊆ N \\ {c} of |S|! (n - |S| - 1)! / n! * (v(S + {c}) - v(S))

That is ``2^n`` coalitions per channel: exact and instantaneous for the 9-10 channels of a shop; beyond
``max_channels`` channels only the ``max_channels`` most frequent play (ties by name): the others weigh 0, an
observed set counts as its players, and a set without any player only counts towards the overall rate.
The weights sum to ``v(N)`` (efficiency). A conversion's revenue is shared by the channels of its path in
proportion to ``phi``, and within a channel evenly by its touches. Solving (``refit``) happens when
``refit_every`` paths have been learned since the last one, when a path to credit has a channel the last
solve did not know, or on demand; before any conversion is learned the model predicts like
:class:`~models.attribution.heuristics.Linear`. ``model_version`` is ``shapley.<solves>``.

>>> from datetime import datetime, UTC
>>> from models.attribution.base import Touch
>>> def path(*channels):
...     return [Touch(channel=c, campaign="", at=datetime(2026, 11, 1, tzinfo=UTC), session_id=c) for c in channels]
>>> model = ShapleyAttribution(prior_paths=0.0, refit_every=1)
>>> model.learn_one(path("email"), converted=True)
>>> model.learn_one(path("display"), converted=False)
>>> model.learn_one(path("display", "email"), converted=True)
>>> model.learn_one(path("display", "email"), converted=True)
>>> model.shapley_values()   # v(email) = 1, v(display) = 0, v(both) = 1
{'display': 0.0, 'email': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.attribution.base import LazilySolved, Touch


class ShapleyAttribution(LazilySolved):
    """Exact Shapley values of channels in the game "best observed conversion rate of a channel set"."""

    name = "shapley"

    def __init__(self, *, prior_paths: float = 10.0, max_channels: int = 16, refit_every: int = 100) -> None:
        self.prior_paths = prior_paths
        self.max_channels = max_channels
        self.refit_every = refit_every
        # learned state: channel set (sorted tuple) -> [paths, conversions]
        self.sets: dict[tuple[str, ...], list[int]] = {}
        self.paths_learned = 0
        self.conversions_learned = 0
        self.learned_since_solve = 0
        self.n_solves = 0
        self.values: dict[str, float] = {}

    @property
    def model_version(self) -> str:
        return f"{self.name}.{self.n_solves}"

    def learn_one(self, path: Sequence[Touch], *, converted: bool) -> None:
        """Count one ended path under its channel set (an empty path teaches nothing)."""
        if not path:
            return
        tally = self.sets.setdefault(tuple(sorted({t.channel for t in path})), [0, 0])
        tally[0] += 1
        tally[1] += converted
        self.paths_learned += 1
        self.conversions_learned += converted
        self.learned_since_solve += 1

    def channel_weights(self) -> Mapping[str, float]:
        return self.values

    def shapley_values(self) -> dict[str, float]:
        """Every known channel's Shapley value, solved now from all counts (by channel)."""
        self.refit()
        return dict(self.values)

    def refit(self) -> None:
        """Recompute the coalition values and the Shapley values from the current counts."""
        frequency: dict[str, int] = {}
        for channel_set, (n, _) in self.sets.items():
            for c in channel_set:
                frequency[c] = frequency.get(c, 0) + n
        ranked = sorted(frequency, key=lambda c: (-frequency[c], c))
        players = sorted(ranked[: self.max_channels])
        bit = {c: 1 << i for i, c in enumerate(players)}
        size = len(players)
        rate = self.conversions_learned / self.paths_learned if self.paths_learned else 0.0
        value = np.zeros(1 << size)
        for channel_set, (n, converted) in self.sets.items():
            mask = sum(bit.get(c, 0) for c in channel_set)
            r = (converted + self.prior_paths * rate) / (n + self.prior_paths) if n + self.prior_paths else 0.0
            value[mask] = max(value[mask], r)  # sets that differ only in non-players share a mask
        value[0] = 0.0
        masks = np.arange(1 << size)
        for b in (1 << i for i in range(size)):  # v(S) = max over observed subsets: close under adding a member
            has = (masks & b) != 0
            value[has] = np.maximum(value[has], value[masks[has] ^ b])
        popcount = np.array([m.bit_count() for m in range(1 << size)], dtype=np.int64)
        factor = np.array([math.factorial(k) * math.factorial(size - k - 1) for k in range(size)], dtype=float)
        factor /= math.factorial(size) if size else 1
        values = {}
        for c in players:
            without = masks[(masks & bit[c]) == 0]
            values[c] = float(np.sum(factor[popcount[without]] * (value[without | bit[c]] - value[without])))
        self.values = {**dict.fromkeys(ranked[self.max_channels :], 0.0), **values}
        self.learned_since_solve = 0
        self.n_solves += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "prior_paths": self.prior_paths,
            "max_channels": self.max_channels,
            "refit_every": self.refit_every,
            "sets": [[list(k), n, c] for k, (n, c) in self.sets.items()],
            "paths_learned": self.paths_learned,
            "conversions_learned": self.conversions_learned,
            "learned_since_solve": self.learned_since_solve,
            "n_solves": self.n_solves,
            "values": self.values,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShapleyAttribution:
        model = cls(prior_paths=data["prior_paths"], max_channels=data["max_channels"], refit_every=data["refit_every"])
        model.sets = {tuple(k): [n, c] for k, n, c in data["sets"]}
        model.paths_learned = data["paths_learned"]
        model.conversions_learned = data["conversions_learned"]
        model.learned_since_solve = data["learned_since_solve"]
        model.n_solves = data["n_solves"]
        model.values = dict(data["values"])
        return model

    def __repr__(self) -> str:
        return (
            f"ShapleyAttribution(prior_paths={self.prior_paths}, max_channels={self.max_channels}, "
            f"refit_every={self.refit_every})"
        )
