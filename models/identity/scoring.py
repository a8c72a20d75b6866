"""Probabilistic candidate pairs: blocked, compared, scored, and kept when they clear the threshold.

Device pairs are blocked on IP addresses shared by few devices (``ip_cap``); trait pairs on the blocking
keys of :mod:`models.identity.traits`. A pair is scored with the Fellegi-Sunter model of its kind and kept
as an :class:`Edge` when its posterior probability is at least the threshold. A pair is rescored whenever
anything its comparison reads changes (either device's evidence or the size of a shared block), so the
kept edges are always a function of the current evidence, whatever order it arrived in.

>>> from schemas.records import EXAMPLE_ROW
>>> from models.identity.evidence import EvidenceStore
>>> from dataclasses import replace
>>> store = EvidenceStore(ip_cap=6, email_cap=8, trait_cap=40)
>>> for aid in ("d1", "d2"):
...     _ = store.add(replace(EXAMPLE_ROW, anonymous_id=aid))
>>> scorer = PairScorer(device_threshold=0.0, trait_threshold=0.99)
>>> sorted(scorer.rescore_device(store, "d1")), [e.method for e in scorer.edges_of("a:d1")]
(['a:d1', 'a:d2'], ['device_probabilistic'])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from models.identity.devices import DEVICE_MODEL, compare_devices
from models.identity.evidence import EvidenceStore, device_node
from models.identity.fellegi_sunter import FellegiSunter
from models.identity.traits import TRAIT_MODEL, compare_traits
from schemas.identity import DEVICE_PROBABILISTIC, TRAIT_PROBABILISTIC


@dataclass(frozen=True, slots=True)
class Edge:
    """A scored candidate pair ``a < b`` (node keys) above its threshold."""

    method: str
    a: str
    b: str
    weight: float
    score: float
    levels: tuple[int, ...]
    block: int = 0

    def evidence(self, model: FellegiSunter) -> dict[str, Any]:
        """Why: the match weight, and each compared field's level and partial weight."""
        out: dict[str, Any] = {"weight": round(self.weight, 3), "fields": model.explain(self.levels)}
        if self.block:
            out["ip_devices"] = self.block
        return out


EdgeKey = tuple[str, str, str]
Pattern = tuple[int, ...]


class PairScorer:
    """Keeps the above-threshold edges of both kinds, with an adjacency index per node."""

    __slots__ = ("_adjacent", "device_model", "device_threshold", "edges", "trait_model", "trait_threshold")

    def __init__(
        self,
        *,
        device_threshold: float,
        trait_threshold: float,
        device_model: FellegiSunter = DEVICE_MODEL,
        trait_model: FellegiSunter = TRAIT_MODEL,
    ) -> None:
        self.device_threshold = device_threshold
        self.trait_threshold = trait_threshold
        self.device_model = device_model
        self.trait_model = trait_model
        self.edges: dict[EdgeKey, Edge] = {}
        self._adjacent: dict[str, set[EdgeKey]] = {}

    def edges_of(self, node: str) -> list[Edge]:
        return [self.edges[k] for k in sorted(self._adjacent.get(node, ()))]

    def has_edges(self, node: str) -> bool:
        return node in self._adjacent

    def neighbours(self, node: str) -> list[str]:
        return [k[2] if k[1] == node else k[1] for k in self._adjacent.get(node, ())]

    def model_of(self, edge: Edge) -> FellegiSunter:
        return self.device_model if edge.method == DEVICE_PROBABILISTIC else self.trait_model

    # -- device pairs ----------------------------------------------------------------------------------

    def device_candidates(self, store: EvidenceStore, aid: str) -> dict[str, dict[str, int]]:
        """Other devices sharing a small-block IP with ``aid``, with each shared IP's block size."""
        device = store.devices.get(aid)
        out: dict[str, dict[str, int]] = {}
        if device is None:
            return out
        for ip in device.ips:
            members = store.ips.pairable(ip)
            for other in members:
                if other != aid:
                    out.setdefault(other, {})[ip] = len(members)
        return out

    def score_devices(self, store: EvidenceStore, a: str, b: str, shared: dict[str, int]) -> Edge:
        levels = compare_devices(store.devices[a], store.devices[b], shared)
        weight = self.device_model.weight(levels)
        na, nb = sorted((device_node(a), device_node(b)))
        score = self.device_model.probability(weight)
        return Edge(DEVICE_PROBABILISTIC, na, nb, weight, score, levels, min(shared.values()))

    def rescore_device(self, store: EvidenceStore, aid: str) -> set[str]:
        """Rescore every candidate pair of a device; the nodes whose edges changed."""
        new = {}
        for other, shared in self.device_candidates(store, aid).items():
            edge = self.score_devices(store, aid, other, shared)
            if edge.score >= self.device_threshold:
                new[(edge.method, edge.a, edge.b)] = edge
        return self._replace(device_node(aid), DEVICE_PROBABILISTIC, new)

    def device_patterns(self, store: EvidenceStore) -> tuple[Counter[Pattern], Counter[Pattern], Counter[Pattern]]:
        """Comparison patterns of all candidate device pairs, and of those the accounts label: both devices
        logged in to one account (a match) or to two (a non-match)."""
        everything: Counter[Pattern] = Counter()
        matches: Counter[Pattern] = Counter()
        non_matches: Counter[Pattern] = Counter()
        for aid in sorted(store.devices):
            device = store.devices[aid]
            for other, shared in self.device_candidates(store, aid).items():
                if other <= aid:
                    continue
                levels = compare_devices(device, store.devices[other], shared)
                everything[levels] += 1
                ua, ub = device.dominant_user(), store.devices[other].dominant_user()
                if ua and ub:
                    (matches if ua == ub else non_matches)[levels] += 1
        return everything, matches, non_matches

    # -- trait pairs -----------------------------------------------------------------------------------

    def trait_candidates(self, store: EvidenceStore, node: str) -> set[str]:
        out: set[str] = set()
        for profile in store.profiles(node):
            for key in profile.blocking_keys():
                out.update(store.traits.pairable(key))
        out.discard(node)
        return out

    def score_traits(self, store: EvidenceStore, a: str, b: str) -> Edge | None:
        best: tuple[float, tuple[int, ...]] | None = None
        for pa in store.profiles(a):
            for pb in store.profiles(b):
                levels = compare_traits(pa, pb)
                weight = self.trait_model.weight(levels)
                if best is None or (weight, levels) > best:
                    best = (weight, levels)
        if best is None:
            return None
        na, nb = sorted((a, b))
        return Edge(TRAIT_PROBABILISTIC, na, nb, best[0], self.trait_model.probability(best[0]), best[1])

    def rescore_traits(self, store: EvidenceStore, node: str) -> set[str]:
        new = {}
        for other in self.trait_candidates(store, node):
            edge = self.score_traits(store, node, other)
            if edge is not None and edge.score >= self.trait_threshold:
                new[(edge.method, edge.a, edge.b)] = edge
        return self._replace(node, TRAIT_PROBABILISTIC, new)

    # -- bookkeeping -----------------------------------------------------------------------------------

    def _replace(self, node: str, method: str, new: dict[EdgeKey, Edge]) -> set[str]:
        changed: set[str] = set()
        old = {k for k in self._adjacent.get(node, ()) if k[0] == method}
        for key in old - new.keys():
            self._remove(key)
            changed.update(key[1:])
        for key, edge in new.items():
            if self.edges.get(key) != edge:
                self._add(key, edge)
                changed.update(key[1:])
        return changed

    def _add(self, key: EdgeKey, edge: Edge) -> None:
        self.edges[key] = edge
        for node in key[1:]:
            self._adjacent.setdefault(node, set()).add(key)

    def _remove(self, key: EdgeKey) -> None:
        del self.edges[key]
        for node in key[1:]:
            keys = self._adjacent.get(node)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._adjacent[node]

    def drop(self, node: str) -> set[str]:
        """Remove every edge of a node; the nodes that lost one."""
        changed: set[str] = set()
        for key in list(self._adjacent.get(node, ())):
            self._remove(key)
            changed.update(key[1:])
        return changed
