"""The part of the identity graph an update can affect, and its clustering inputs.

When evidence about some nodes changes, only their connected component can change persons: the nodes
reachable through account ties, shared emails and above-threshold edges, plus every node of the persons
they are in now (a split needs the whole old person). :func:`region_of` finds it; :func:`cluster_region`
collects that region's evidence and clusters it (:func:`models.identity.graph.cluster`).

>>> from dataclasses import replace
>>> from schemas.records import EXAMPLE_ROW
>>> from models.identity.evidence import EvidenceStore
>>> from models.identity.scoring import PairScorer
>>> store, scorer = EvidenceStore(ip_cap=6, email_cap=8, trait_cap=40), PairScorer(device_threshold=0.99,
...                                                                                trait_threshold=0.99)
>>> _ = store.add(replace(EXAMPLE_ROW, anonymous_id="d1", user_id="u1"))
>>> region = region_of({"a:d1"}, store=store, scorer=scorer, person={}, members={})
>>> sorted(region), cluster_region(region, store=store, scorer=scorer, max_devices=8).person["a:d1"]
(['a:d1', 'u:u1'], 'u:u1')
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from models.identity.devices import VIA_NAMES, concurrent
from models.identity.evidence import EvidenceStore, device_node, user_node
from models.identity.graph import Clustering, cluster
from models.identity.scoring import Edge, PairScorer


def region_of(
    seeds: Set[str],
    *,
    store: EvidenceStore,
    scorer: PairScorer,
    person: Mapping[str, str],
    members: Mapping[str, Set[str]],
) -> set[str]:
    """Every node connected to ``seeds`` by a tie, a shared email, an edge or a current person."""
    seen: set[str] = set()
    todo = list(seeds)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(members.get(person.get(node, node), ()))
        kind, ident = node[0], node[2:]
        if kind == "a":
            device = store.devices.get(ident)
            if device is not None:
                todo.extend(user_node(u) for u in device.users)
        else:
            user = store.users.get(ident)
            if user is not None:
                todo.extend(device_node(d) for d in user.devices)
        todo.extend(store.email_neighbours(node))
        todo.extend(scorer.neighbours(node))
    return seen


def cluster_region(
    region: Set[str],
    *,
    store: EvidenceStore,
    scorer: PairScorer,
    max_devices: int,
    trait_threshold: float = 0.0,
    duplicate_threshold: float = 0.0,
) -> Clustering:
    """Cluster the nodes of ``region`` that still exist, from their evidence and edges."""
    nodes = [n for n in region if (n[2:] in store.devices if n[0] == "a" else n[2:] in store.users)]
    owner: dict[str, str] = {}
    shared: set[str] = set()
    groups: dict[str, tuple[str, ...]] = {}
    edges: dict[tuple[str, str, str], Edge] = {}
    for node in nodes:
        holder = store.devices[node[2:]] if node[0] == "a" else store.users[node[2:]]
        if node[0] == "a" and store.devices[node[2:]].users:
            device = store.devices[node[2:]]
            owner[node] = user_node(device.dominant_user())
            if len(device.users) > 1:
                shared.add(node)
        for email in holder.emails:
            if email not in groups:
                groups[email] = tuple(sorted(store.emails.pairable(email)))
        for edge in scorer.edges_of(node):
            edges[(edge.method, edge.a, edge.b)] = edge

    def owner_evidence(device: str, user: str) -> dict[str, Any]:
        evidence = store.devices[device[2:]]
        count, via = evidence.users[user[2:]]
        out: dict[str, Any] = {"via": [name for bit, name in VIA_NAMES if via & bit], "events": count}
        if len(evidence.users) > 1:
            out["shared_device_accounts"] = len(evidence.users)
        return out

    return cluster(
        nodes,
        owner=owner,
        email_groups=groups.items(),
        edges=edges.values(),
        shared=shared,
        cannot_link=lambda a, b: concurrent(store.devices[a[2:]], store.devices[b[2:]]),
        max_devices=max_devices,
        trait_threshold=trait_threshold,
        duplicate_threshold=duplicate_threshold,
        evidence_of=lambda e: e.evidence(scorer.model_of(e)),
        owner_evidence=owner_evidence,
    )
