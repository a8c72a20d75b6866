"""Canonical clustering of one connected part of the identity graph into persons, with the guard rails.

:func:`cluster` is a pure function of the evidence it is given: it sorts every input before use, so the
same evidence gives the same persons whatever order the events came in. It is single-linkage union-find
in three passes of decreasing certainty:

1. deterministic: each device joins the account it is logged in to (the one with the most events when a
   browser saw several), then every email joins the nodes that used it (sorted by hash);
2. trait-probabilistic edges, strongest first;
3. device-probabilistic edges, strongest first.

Guard rails (a refused union is reported, never silently dropped):

* two different userIds never end up in one person; an email or a trait match between two accounts is
  reported as a :class:`Duplicate` instead;
* a browser used by several accounts (a shared family computer) goes with its main account but bridges
  nothing probabilistically;
* devices active in the same quarter-hour are never merged probabilistically (two people at once);
* a person never holds more than ``max_devices`` devices.

The person id is ``u:<userId>`` when the cluster has an account, else ``a:<smallest anonymousId>``; the
prefixes keep the two kinds of id apart.

>>> from models.identity.scoring import Edge
>>> found = cluster(
...     ["a:d1", "a:d2", "a:d3", "u:u1", "u:u2"],
...     owner={"a:d1": "u:u1", "a:d3": "u:u2"},
...     email_groups=[("h1:e", ("a:d2", "u:u1"))],
...     edges=[Edge("device_probabilistic", "a:d2", "a:d3", 12.0, 0.999, ())],
...     shared=set(), cannot_link=lambda a, b: False, max_devices=8,
... )
>>> found.person["a:d2"], found.person["a:d3"], [r.reason for r in found.refused]
('u:u1', 'u:u2', ['two user ids'])
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.identity.scoring import Edge
from schemas.identity import DETERMINISTIC, TRAIT_PROBABILISTIC


@dataclass(frozen=True, slots=True)
class Link:
    """A union that was made: ``a`` and ``b`` are node keys, ``evidence`` says why."""

    method: str
    a: str
    b: str
    score: float
    evidence: dict[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A union a guard rail refused."""

    edge: Edge
    reason: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Two accounts that look like one person (never merged)."""

    user_a: str
    user_b: str
    method: str
    score: float
    evidence: dict[str, Any] = field(hash=False, compare=False)


@dataclass(slots=True)
class Clustering:
    person: dict[str, str]
    links: list[Link]
    duplicates: list[Duplicate]
    refused: list[Refusal]


class _Sets:
    """Union-find whose roots know their account and their device members."""

    __slots__ = ("count", "members", "parent", "user")

    def __init__(self, nodes: Iterable[str]) -> None:
        self.parent = {n: n for n in nodes}
        self.user = {n: n for n in self.parent if n.startswith("u:")}
        self.members = {n: [n] for n in self.parent}
        self.count = {n: int(n.startswith("a:")) for n in self.parent}

    def find(self, node: str) -> str:
        parent = self.parent
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    def devices(self, root: str) -> int:
        return self.count[root]

    def union(self, a: str, b: str) -> str:
        ra, rb = self.find(a), self.find(b)
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra].extend(self.members.pop(rb))
        self.count[ra] += self.count.pop(rb)
        if rb in self.user:
            self.user[ra] = self.user.pop(rb)
        return ra


def cluster(
    nodes: Collection[str],
    *,
    owner: Mapping[str, str],
    email_groups: Iterable[tuple[str, tuple[str, ...]]],
    edges: Iterable[Edge],
    shared: Collection[str],
    cannot_link: Callable[[str, str], bool],
    max_devices: int,
    trait_threshold: float = 0.0,
    duplicate_threshold: float = 0.0,
    evidence_of: Callable[[Edge], dict[str, Any]] = lambda e: {"weight": round(e.weight, 3)},
    owner_evidence: Callable[[str, str], dict[str, Any]] = lambda d, u: {},
) -> Clustering:
    """Persons of ``nodes`` (see the module docstring); every input outside ``nodes`` is ignored.

    Trait edges below ``trait_threshold`` join nobody; between two accounts, those of at least
    ``duplicate_threshold`` are reported as duplicates.
    """
    sets = _Sets(sorted(nodes))
    found = Clustering(person={}, links=[], duplicates=[], refused=[])
    duplicates: dict[tuple[str, str], Duplicate] = {}
    for device in sorted(d for d in owner if d in sets.parent and owner[d] in sets.parent):
        user = owner[device]
        if sets.devices(sets.find(user)) >= max_devices:
            found.refused.append(Refusal(Edge(DETERMINISTIC, device, user, 0.0, 1.0, ()), "cluster size cap"))
            continue
        sets.union(device, user)
        found.links.append(Link(DETERMINISTIC, device, user, 1.0, owner_evidence(device, user)))
    for email, group in sorted(email_groups):
        present = sorted(n for n in group if n in sets.parent)
        _join_email(sets, email, present, max_devices=max_devices, found=found, duplicates=duplicates)
    ordered = sorted(
        (e for e in edges if e.a in sets.parent and e.b in sets.parent),
        key=lambda e: (e.method != TRAIT_PROBABILISTIC, -e.score, -e.weight, e.a, e.b),
    )
    for edge in ordered:
        reason = _guard(sets, edge, shared, cannot_link, max_devices)
        if reason == "same person":
            continue
        trait = edge.method == TRAIT_PROBABILISTIC
        if reason == "two user ids" and trait and edge.score >= duplicate_threshold:
            ua, ub = sorted((sets.user[sets.find(edge.a)], sets.user[sets.find(edge.b)]))
            duplicates.setdefault((ua, ub), Duplicate(ua, ub, edge.method, edge.score, evidence_of(edge)))
        if trait and edge.score < trait_threshold:
            continue
        if reason:
            found.refused.append(Refusal(edge, reason))
            continue
        sets.union(edge.a, edge.b)
        found.links.append(Link(edge.method, edge.a, edge.b, edge.score, evidence_of(edge)))
    for root, members in sets.members.items():
        pid = sets.user.get(root) or min(members)
        for node in members:
            found.person[node] = pid
    found.duplicates.extend(duplicates.values())
    return found


def _join_email(
    sets: _Sets,
    email: str,
    present: list[str],
    *,
    max_devices: int,
    found: Clustering,
    duplicates: dict[tuple[str, str], Duplicate],
) -> None:
    """Join every node that used ``email``, unless that would join two accounts (then: duplicates)."""
    roots = sorted({sets.find(n) for n in present})
    users = sorted({sets.user[r] for r in roots if r in sets.user})
    evidence = {"email": email[:19]}
    if len(users) > 1:
        for i, ua in enumerate(users):
            for ub in users[i + 1 :]:
                duplicates.setdefault((ua, ub), Duplicate(ua, ub, DETERMINISTIC, 1.0, evidence))
        return
    if not present or sum(sets.devices(r) for r in roots) > max_devices:
        return
    first = present[0]
    for node in present[1:]:
        if sets.find(node) != sets.find(first):
            sets.union(first, node)
            found.links.append(Link(DETERMINISTIC, first, node, 1.0, evidence))


def _guard(
    sets: _Sets, edge: Edge, shared: Collection[str], cannot_link: Callable[[str, str], bool], max_devices: int
) -> str:
    ra, rb = sets.find(edge.a), sets.find(edge.b)
    if ra == rb:
        return "same person"
    if ra in sets.user and rb in sets.user:
        return "two user ids"
    if edge.method != TRAIT_PROBABILISTIC and (edge.a in shared or edge.b in shared):
        return "shared device"
    if sets.devices(ra) + sets.devices(rb) > max_devices:
        return "cluster size cap"
    devices_a = [n for n in sets.members[ra] if n.startswith("a:")]
    devices_b = [n for n in sets.members[rb] if n.startswith("a:")]
    if any(cannot_link(x, y) for x in devices_a for y in devices_b):
        return "concurrent activity"
    return ""
