"""From a re-clustering to the records the pipeline emits: links, person changes, probable duplicates.

:func:`person_changes` compares the persons of a region before and after a re-clustering. Nodes that
moved from one person id to another are grouped by (old, new): ``merge`` when every remaining node of the
old person went there (the old id no longer exists), ``split`` when only some did. A node seen for the
first time is not a change, even when it joins an existing person at once.

>>> from datetime import UTC, datetime
>>> from models.identity.graph import Clustering, Link
>>> at = datetime(2026, 11, 1, tzinfo=UTC)
>>> link = Link("deterministic", "a:d1", "u:u1", 1.0, {"via": ["identify"]})
>>> after = Clustering(person={"a:d1": "u:u1", "u:u1": "u:u1"}, links=[link], duplicates=[], refused=[])
>>> [(c.kind, c.old_person_id, c.new_person_id, c.anonymous_ids)
...  for c in person_changes({"a:d1": "a:d1", "u:u1": "u:u1"}, after, created={"u:u1"}, old_links={},
...                          reason="", at=at)]
[('merge', 'a:d1', 'u:u1', ('d1',))]
>>> link_record(link, "u:u1", at).evidence
'{"via":["identify"]}'
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from models.identity.graph import Clustering, Duplicate, Link
from schemas.identity import DETERMINISTIC, IdentityLink, PersonChange, ProbableDuplicate


def dumps(value: Any) -> str:
    """Evidence as compact JSON with sorted keys (equal evidence, equal text)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def person_changes(
    old_pid: Mapping[str, str],
    after: Clustering,
    *,
    created: set[str],
    old_links: Mapping[tuple[str, str, str], Link],
    reason: str,
    at: datetime,
) -> list[PersonChange]:
    """The merges and splits between the persons before (``old_pid``) and ``after`` a re-clustering.

    ``reason`` overrides the explanation (``consent withdrawn``, ``erased``); otherwise a merge says
    ``linked`` and a split names the guard rail that refused a lost link (``two user ids``, ``shared
    device``, ``concurrent activity``, ``cluster size cap``), ``main account changed`` or ``evidence
    withdrawn`` (a score fell below the threshold).
    """
    new_pid = after.person
    moves: dict[tuple[str, str], list[str]] = defaultdict(list)
    remaining: Counter[str] = Counter()
    for node, old in old_pid.items():
        if node in new_pid:
            remaining[old] += 1
            if old != new_pid[node] and not (node in created and old == node):
                moves[(old, new_pid[node])].append(node)
    new_keys = {(link.method, link.a, link.b) for link in after.links}
    out = []
    for (old, new), nodes in sorted(moves.items()):
        moved = set(nodes)
        kind = "merge" if len(nodes) == remaining[old] else "split"
        if kind == "merge":
            methods = sorted({lk.method for lk in after.links if lk.a in moved or lk.b in moved})
            why = reason or "linked"
        else:
            lost = {k: lk for k, lk in old_links.items() if k not in new_keys and (lk.a in moved or lk.b in moved)}
            methods = sorted({lk.method for lk in lost.values()})
            why = reason or _split_reason(lost, after)
        out.append(
            PersonChange(
                kind=kind,
                old_person_id=old,
                new_person_id=new,
                anonymous_ids=tuple(sorted(n[2:] for n in nodes if n[0] == "a")),
                user_ids=tuple(sorted(n[2:] for n in nodes if n[0] == "u")),
                reason=why,
                evidence=dumps({"methods": methods}),
                changed_at=at,
            )
        )
    return out


def withdrawn(node: str, old_person: str, *, at: datetime) -> PersonChange:
    """The split of a device that withdrew analytics consent from its person: it is its own person again,
    and nothing more is kept or linked about it."""
    return PersonChange(
        kind="split",
        old_person_id=old_person,
        new_person_id=node,
        anonymous_ids=(node[2:],) if node[0] == "a" else (),
        user_ids=(node[2:],) if node[0] == "u" else (),
        reason="consent withdrawn",
        evidence=dumps({"methods": []}),
        changed_at=at,
    )


def _split_reason(lost: Mapping[tuple[str, str, str], Link], after: Clustering) -> str:
    """Why links were lost: the guard rail that refused one of them, a change of main account, or less
    evidence than before."""
    refused = sorted(r.reason for r in after.refused if (r.edge.method, r.edge.a, r.edge.b) in lost)
    if refused:
        return refused[0]
    if any(lk.method == DETERMINISTIC for lk in lost.values()):
        return "main account changed"
    return "evidence withdrawn"


def link_record(link: Link, person_id: str, at: datetime) -> IdentityLink:
    """The ``identity_links`` row of a union: device + account, or device + device."""
    devices = [n[2:] for n in (link.a, link.b) if n[0] == "a"]
    users = [n[2:] for n in (link.a, link.b) if n[0] == "u"]
    return IdentityLink(
        anonymous_id=devices[0] if devices else "",
        user_id=users[0] if users else "",
        other_anonymous_id=devices[1] if len(devices) > 1 else "",
        person_id=person_id,
        method=link.method,
        score=round(link.score, 6),
        evidence=dumps(link.evidence),
        linked_at=at,
    )


def duplicate_record(dup: Duplicate, person_a: str, person_b: str, at: datetime) -> ProbableDuplicate:
    """The ``probable_duplicates`` row of two accounts that look like one person."""
    return ProbableDuplicate(
        user_id=dup.user_a[2:],
        other_user_id=dup.user_b[2:],
        person_id=person_a,
        other_person_id=person_b,
        method=dup.method,
        score=round(dup.score, 6),
        evidence=dumps(dup.evidence),
        detected_at=at,
    )
