"""Fellegi-Sunter record linkage: comparison vectors, match weights, posterior probabilities, EM.

Fellegi & Sunter (1969), "A theory for record linkage", JASA 64(328): for a candidate pair, each field's
comparison falls into one of a few agreement levels; ``m_l = P(level l | same entity)`` and
``u_l = P(level l | different entities)``. Under conditional independence the log-likelihood ratio of the
whole vector is the sum of the fields' ``log2(m/u)`` (the *match weight*), and the optimal rule links the
pairs whose weight is above a threshold. A missing field (either side has no value) contributes 0. With a
prior ``lambda`` (the share of candidate pairs that are matches) the weight becomes a posterior:
``P(match) = 1 / (1 + (1 - lambda) / lambda * 2^-weight)``.

``m``, ``u`` and ``lambda`` can be estimated without labels by expectation-maximisation over the
candidate pairs' comparison patterns (Winkler 1988, "Using the EM algorithm for weight computation in the
Fellegi-Sunter model of record linkage"; Jaro 1989): :meth:`FellegiSunter.fit`.

>>> model = FellegiSunter(
...     comparisons=(Comparison(name="name", levels=("same", "different"), m=(0.9, 0.1), u=(0.05, 0.95)),),
...     prior=0.1,
... )
>>> round(model.weight((0,)), 3), round(model.probability(model.weight((0,))), 3), model.weight((MISSING,))
(4.17, 0.667, 0.0)
>>> model.explain((1,))
{'name': ['different', -3.248]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MISSING = -1
"""The level of a field that one side of the pair does not have: it contributes no evidence."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """One field of a comparison vector: its agreement levels (most agreeing first) and their m and u.

    >>> Comparison(name="x", levels=("a", "b"), m=(0.5, 0.5), u=(0.5, 0.5)).weights()
    (0.0, 0.0)
    """

    name: str
    levels: tuple[str, ...]
    m: tuple[float, ...]
    u: tuple[float, ...]

    def __post_init__(self) -> None:
        if not len(self.levels) == len(self.m) == len(self.u):
            msg = f"comparison {self.name}: levels, m and u differ in length"
            raise ValueError(msg)

    def weights(self) -> tuple[float, ...]:
        """``log2(m/u)`` per level."""
        return tuple(round(math.log2(m / u), 6) for m, u in zip(self.m, self.u, strict=True))


class FellegiSunter:
    """Match weights and posteriors of comparison vectors; ``fit`` re-estimates m, u and the prior by EM.

    ``prior`` is the share of matches among the *candidate* pairs (after blocking), not among all pairs.
    """

    __slots__ = ("_weights", "comparisons", "prior")

    def __init__(self, *, comparisons: tuple[Comparison, ...], prior: float) -> None:
        self.comparisons = comparisons
        self.prior = prior
        self._weights = tuple(c.weights() for c in comparisons)

    def weight(self, levels: Sequence[int]) -> float:
        """The match weight (log2 likelihood ratio) of a comparison vector."""
        return sum((w[level] for w, level in zip(self._weights, levels, strict=True) if level != MISSING), 0.0)

    def probability(self, weight: float) -> float:
        """Posterior probability of a match given the weight and the prior."""
        log_odds = math.log2(self.prior / (1.0 - self.prior)) + weight
        if abs(log_odds) > 60:
            return 1.0 if log_odds > 0 else 0.0
        return 1.0 / (1.0 + math.pow(2.0, -log_odds))

    def explain(self, levels: Sequence[int]) -> dict[str, list[str | float]]:
        """Per present field: its level name and partial weight (what an analyst reads in ``evidence``)."""
        return {
            c.name: [c.levels[level], round(w[level], 3)]
            for c, w, level in zip(self.comparisons, self._weights, levels, strict=True)
            if level != MISSING
        }

    def fit_labelled(
        self,
        matches: Mapping[tuple[int, ...], int],
        non_matches: Mapping[tuple[int, ...], int],
        *,
        pseudo_count: float = 0.5,
    ) -> FellegiSunter:
        """A model with m estimated from ``matches`` and u from ``non_matches`` (pattern counts); the prior
        is kept (labelled pairs are rarely a fair sample of all candidates: use :meth:`fit_prior`).

        >>> start = FellegiSunter(comparisons=(
        ...     Comparison(name="a", levels=("y", "n"), m=(0.5, 0.5), u=(0.5, 0.5)),), prior=0.2)
        >>> fitted = start.fit_labelled({(0,): 9, (1,): 1}, {(0,): 1, (1,): 9}, pseudo_count=0.0)
        >>> fitted.comparisons[0].m, fitted.comparisons[0].u, fitted.prior
        ((0.9, 0.1), (0.1, 0.9), 0.2)
        """

        def rates(patterns: Mapping[tuple[int, ...], int], f: int, n_levels: int) -> tuple[float, ...]:
            counts = [pseudo_count] * n_levels
            for pattern, n in patterns.items():
                if pattern[f] != MISSING:
                    counts[pattern[f]] += n
            total = sum(counts)
            return tuple(c / total for c in counts) if total else (1.0 / n_levels,) * n_levels

        comparisons = tuple(
            Comparison(
                name=c.name,
                levels=c.levels,
                m=rates(matches, f, len(c.levels)),
                u=rates(non_matches, f, len(c.levels)),
            )
            for f, c in enumerate(self.comparisons)
        )
        return FellegiSunter(comparisons=comparisons, prior=self.prior)

    def fit_prior(
        self, patterns: Mapping[tuple[int, ...], int], *, iterations: int = 200, tolerance: float = 1e-7
    ) -> FellegiSunter:
        """A model with the share of matches among ``patterns`` estimated by EM, m and u held fixed.

        >>> model = FellegiSunter(comparisons=(
        ...     Comparison(name="a", levels=("y", "n"), m=(0.9, 0.1), u=(0.1, 0.9)),), prior=0.5)
        >>> round(model.fit_prior({(0,): 260, (1,): 740}).prior, 2)
        0.2
        """
        prior = self.prior
        items = [(p, float(n)) for p, n in patterns.items() if n > 0]
        total = sum(n for _, n in items)
        ratios = [(math.pow(2.0, min(max(self.weight(p), -60.0), 60.0)), n) for p, n in items]
        for _ in range(iterations):
            odds = prior / (1.0 - prior)
            new = sum(n * odds * r / (1.0 + odds * r) for r, n in ratios) / total if total else prior
            new = min(max(new, 1e-6), 1.0 - 1e-6)
            if abs(new - prior) < tolerance:
                prior = new
                break
            prior = new
        return FellegiSunter(comparisons=self.comparisons, prior=prior)

    def fit(
        self,
        patterns: Mapping[tuple[int, ...], int],
        *,
        iterations: int = 200,
        tolerance: float = 1e-7,
        pseudo_count: float = 0.5,
    ) -> FellegiSunter:
        """A model with m, u and the prior estimated by EM from pattern counts, starting from this one.

        ``patterns`` maps a comparison vector to how many candidate pairs have it. ``pseudo_count`` is added
        to every level's count in both classes so that no probability becomes 0 (a level never seen would
        otherwise get an infinite weight).

        Three fields drawn with prior 0.5, m = 0.9 and u = 0.2 for agreement (level 0), fitted from a
        vaguer start:

        >>> start = FellegiSunter(comparisons=tuple(
        ...     Comparison(name=n, levels=("y", "n"), m=(0.7, 0.3), u=(0.3, 0.7)) for n in "abc"), prior=0.3)
        >>> counts = {(0, 0, 0): 369, (0, 0, 1): 57, (0, 1, 0): 57, (0, 1, 1): 69,
        ...           (1, 0, 0): 57, (1, 0, 1): 69, (1, 1, 0): 69, (1, 1, 1): 257}
        >>> fitted = start.fit(counts)
        >>> round(fitted.prior, 2), round(fitted.comparisons[0].m[0], 2), round(fitted.comparisons[0].u[0], 2)
        (0.5, 0.9, 0.2)
        """
        items = [(tuple(p), float(n)) for p, n in patterns.items() if n > 0]
        m = [list(c.m) for c in self.comparisons]
        u = [list(c.u) for c in self.comparisons]
        prior = self.prior
        for _ in range(iterations):
            m_counts = [[pseudo_count] * len(c.levels) for c in self.comparisons]
            u_counts = [[pseudo_count] * len(c.levels) for c in self.comparisons]
            matched = total = 0.0
            for pattern, n in items:
                pm, pu = prior, 1.0 - prior
                for f, level in enumerate(pattern):
                    if level != MISSING:
                        pm *= m[f][level]
                        pu *= u[f][level]
                g = pm / (pm + pu) if pm + pu > 0 else 0.0
                matched += n * g
                total += n
                for f, level in enumerate(pattern):
                    if level != MISSING:
                        m_counts[f][level] += n * g
                        u_counts[f][level] += n * (1.0 - g)
            new_m = [[x / sum(row) for x in row] for row in m_counts]
            new_u = [[x / sum(row) for x in row] for row in u_counts]
            new_prior = min(max(matched / total, 1e-6), 1.0 - 1e-6) if total else prior
            change = abs(new_prior - prior)
            for old, new in ((m, new_m), (u, new_u)):
                change = max(
                    change, *(abs(a - b) for ro, rn in zip(old, new, strict=True) for a, b in zip(ro, rn, strict=True))
                )
            m, u, prior = new_m, new_u, new_prior
            if change < tolerance:
                break
        comparisons = tuple(
            Comparison(name=c.name, levels=c.levels, m=tuple(m[f]), u=tuple(u[f]))
            for f, c in enumerate(self.comparisons)
        )
        return FellegiSunter(comparisons=comparisons, prior=prior)
