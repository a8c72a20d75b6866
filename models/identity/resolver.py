"""The identity resolver: events in, a person per device, links, merges, splits and duplicates out.

Each event updates the evidence (:mod:`models.identity.evidence`), rescores the candidate pairs whose
inputs changed (:mod:`models.identity.scoring`), and, when a tie or an above-threshold edge changed,
re-clusters the affected part of the graph from scratch (:func:`models.identity.graph.cluster`): the
connected component of the changed nodes, including every node of the persons they were in. Because that
clustering sorts its inputs and the evidence is order-free, the persons after any interleaving of the
same events are the same (``tests/models/test_identity_resolver.py`` shuffles the simulator's traffic).

A probabilistic union is undone as soon as the evidence that made it falls below the threshold or a guard
rail contradicts it (two accounts on either side, concurrent activity, a browser shared by two accounts);
the update then carries a ``split`` :class:`schemas.identity.PersonChange`. So does a device that withdraws
analytics consent: it leaves its person (reason ``consent withdrawn``) and its evidence is dropped.

>>> from dataclasses import replace
>>> from schemas.records import EXAMPLE_ROW
>>> resolver = IdentityResolver()
>>> resolver.observe(replace(EXAMPLE_ROW, anonymous_id="d1")).person_id
'a:d1'
>>> update = resolver.observe(replace(EXAMPLE_ROW, anonymous_id="d1", user_id="usr_1", type="identify"))
>>> update.person_id, [(c.kind, c.old_person_id, c.new_person_id) for c in update.changes]
('u:usr_1', [('merge', 'a:d1', 'u:usr_1')])
>>> update.links[0].method, update.links[0].anonymous_id, update.links[0].user_id
('deterministic', 'd1', 'usr_1')
>>> resolver.person_of("d1"), resolver.person_of("user:usr_1"), resolver.person_of("never-seen")
('u:usr_1', 'u:usr_1', 'a:never-seen')
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from models.identity.devices import DEVICE_MODEL
from models.identity.evidence import EvidenceStore, Touched, device_node, user_node
from models.identity.fellegi_sunter import FellegiSunter
from models.identity.graph import Duplicate, Link
from models.identity.hashing import KeyedHash
from models.identity.records import duplicate_record, link_record, person_changes, withdrawn
from models.identity.regions import cluster_region, region_of
from models.identity.scoring import PairScorer
from models.identity.traits import TRAIT_MODEL
from schemas.identity import IdentityLink, PersonChange, ProbableDuplicate
from schemas.records import EventRow


@dataclass(slots=True)
class IdentityUpdate:
    """What one call changed. ``person_id`` is the event's person (empty for ``forget``/``rebuild``)."""

    person_id: str
    links: list[IdentityLink] = field(default_factory=list)
    changes: list[PersonChange] = field(default_factory=list)
    duplicates: list[ProbableDuplicate] = field(default_factory=list)
    erased: tuple[str, ...] = ()


class IdentityResolver:
    """Resolves devices and accounts into persons; see :mod:`models.identity` for the whole contract.

    Thresholds are posterior match probabilities. ``device_threshold`` (0.8) was chosen on the benchmark:
    the device model's posteriors are not calibrated (its fields are not independent given the match
    status) and 0.8 is the lowest value that keeps pairwise precision at 0.99 or more on simulated
    traffic (0.997 there; 0.7 gives 0.95). ``trait_threshold`` (0.99) joins a guest to a customer;
    ``duplicate_threshold`` (0.8) only reports two accounts for review, so it may be lower.
    ``max_ip_devices`` blocks device pairs to IPs used by at most that many devices (households, not
    offices or carrier NAT); ``max_email_nodes``/``max_trait_block`` do the same for emails and trait
    keys; ``max_devices`` caps a person. ``keys`` hashes contact details (:class:`KeyedHash`; pass the
    pipeline's key so that hashes match the ``h1:`` values ingest writes).
    """

    __slots__ = (
        "_duplicates",
        "_links",
        "_members",
        "_person",
        "_scorer",
        "_store",
        "device_model",
        "device_threshold",
        "duplicate_threshold",
        "keys",
        "max_devices",
        "max_email_nodes",
        "max_ip_devices",
        "max_trait_block",
        "trait_model",
        "trait_threshold",
    )

    def __init__(
        self,
        *,
        device_threshold: float = 0.8,
        trait_threshold: float = 0.99,
        duplicate_threshold: float = 0.8,
        max_ip_devices: int = 6,
        max_email_nodes: int = 8,
        max_trait_block: int = 40,
        max_devices: int = 16,
        device_model: FellegiSunter = DEVICE_MODEL,
        trait_model: FellegiSunter = TRAIT_MODEL,
        keys: KeyedHash | None = None,
    ) -> None:
        self.device_threshold = device_threshold
        self.trait_threshold = trait_threshold
        self.duplicate_threshold = duplicate_threshold
        self.max_ip_devices = max_ip_devices
        self.max_email_nodes = max_email_nodes
        self.max_trait_block = max_trait_block
        self.max_devices = max_devices
        self.device_model = device_model
        self.trait_model = trait_model
        self.keys = keys
        self._store = EvidenceStore(
            ip_cap=max_ip_devices, email_cap=max_email_nodes, trait_cap=max_trait_block, keys=keys
        )
        self._scorer = PairScorer(
            device_threshold=device_threshold,
            trait_threshold=min(trait_threshold, duplicate_threshold),
            device_model=device_model,
            trait_model=trait_model,
        )
        self._person: dict[str, str] = {}  # node -> person id, only where the two differ
        self._members: dict[str, set[str]] = {}  # person id -> nodes, only persons of two nodes or more
        self._links: dict[str, list[tuple[Link, datetime]]] = {}  # person id -> its links and when made
        self._duplicates: dict[tuple[str, str], tuple[Duplicate, datetime]] = {}

    # -- reading ---------------------------------------------------------------------------------------

    def person_of(self, device_key: str) -> str:
        """The person of an anonymousId or of a ``user:<userId>`` device key (its own id if unknown)."""
        node = user_node(device_key[5:]) if device_key.startswith("user:") else device_node(device_key)
        return self._person.get(node, node)

    def person_for(self, row: EventRow) -> str:
        """The person of an event: its account's person when it carries a userId, else its device's."""
        aid, uid = row.anonymous_id, row.user_id
        own = device_node(aid) if aid else user_node(uid)
        if aid in self._store.denied or self._store.forgotten(aid, uid):
            return own
        if uid and uid in self._store.users:
            node = user_node(uid)
            return self._person.get(node, node)
        return self._person.get(own, own)

    def assignment(self) -> dict[str, str]:
        """Every known node key (``a:``/``u:``) -> its person id."""
        nodes = [device_node(a) for a in self._store.devices] + [user_node(u) for u in self._store.users]
        return {n: self._person.get(n, n) for n in nodes}

    def links(self) -> list[IdentityLink]:
        """Every link currently holding persons together."""
        return [link_record(link, pid, at) for pid, links in self._links.items() for link, at in links]

    def duplicates(self) -> list[ProbableDuplicate]:
        """Every pair of accounts currently reported as one person's."""
        return [self._duplicate(d, at) for d, at in self._duplicates.values()]

    @property
    def models(self) -> tuple[FellegiSunter, FellegiSunter]:
        """The device and trait models in use (``refit`` replaces them)."""
        return self._scorer.device_model, self._scorer.trait_model

    # -- updating --------------------------------------------------------------------------------------

    def observe(self, row: EventRow) -> IdentityUpdate:
        """Fold one valid event into the evidence; the event's person and whatever changed."""
        aid, uid = row.anonymous_id, row.user_id
        store = self._store
        if (not aid and not uid) or store.forgotten(aid, uid):
            return IdentityUpdate(person_id=device_node(aid) if aid else user_node(uid))
        reason, left = "", ""
        touched = Touched()
        if aid and aid not in store.denied and row.consent.get("analytics") is False:
            node = device_node(aid)
            left = self._person.pop(node, node)
            store.denied.add(aid)
            touched = self._dropped([node])
            reason = "consent withdrawn"
        touched.update(store.add(row))
        update = self._settle(touched, at=row.event_at, reason=reason)
        if left and left != device_node(aid):  # its links are gone; say so, or the records still join it
            update.changes.append(withdrawn(device_node(aid), left, at=row.event_at))
        update.person_id = self.person_for(row)
        return update

    def forget(self, identifier: str, *, at: datetime) -> IdentityUpdate:
        """Erase the person that ``identifier`` (an anonymousId, userId, ``user:<userId>``, node key or
        person id) belongs to: every device and account of it, their evidence and links. Later events of
        those ids are ignored (an id not seen yet is remembered too). ``erased`` lists the node keys
        removed."""
        node = self._node_of(identifier)
        if node is None:
            # Not seen (yet): remember the id either way, so that a replay cannot bring it in.
            bare = identifier.removeprefix("user:")
            self._store.erased.update(self._store.keys.token(n) for n in (device_node(bare), user_node(bare)))
            return IdentityUpdate(person_id="")
        pid = self._person.get(node, node)
        nodes = sorted(self._members.get(pid, {node}))
        for n in nodes:
            self._store.erased.add(self._store.keys.token(n))
        update = self._settle(self._dropped(nodes), at=at, reason="erased")
        update.erased = tuple(nodes)
        return update

    def rebuild(self, *, at: datetime) -> IdentityUpdate:
        """Rescore every candidate pair and re-cluster everything (after a model change)."""
        store = self._store
        touched = Touched(devices=set(store.devices))
        touched.traits = {device_node(a) for a, d in store.devices.items() if d.profiles}
        touched.traits |= {user_node(u) for u, e in store.users.items() if e.profiles}
        touched.seeds = set(self.assignment())
        return self._settle(touched, at=at, reason="model refit")

    def refit(self, *, at: datetime, min_labelled: int = 50) -> IdentityUpdate:
        """Re-estimate the device model's m and u from the current candidate pairs, then rebuild.

        The deterministic evidence labels some candidate pairs for free: two devices logged in to one
        account are a match, two devices of two accounts are not (Fellegi-Sunter m from the first, u from
        the second; second accounts of one person add a little noise). With fewer than ``min_labelled``
        pairs of either kind the model is kept. The prior is kept too: EM over all candidates
        (:meth:`FellegiSunter.fit_prior`) overestimates it when fields depend on each other given the match
        status, as housemates' devices do (0.55 against a true 0.27 in the benchmark), and unsupervised EM
        of m and u finds "same household" rather than "same person". The trait model is kept: its labels
        would come from email links, which would bias the email field.
        """
        scorer = self._scorer
        _, matches, non_matches = scorer.device_patterns(self._store)
        if sum(matches.values()) >= min_labelled and sum(non_matches.values()) >= min_labelled:
            scorer.device_model = scorer.device_model.fit_labelled(matches, non_matches)
        return self.rebuild(at=at)

    def with_thresholds(self, *, device_threshold: float, trait_threshold: float, at: datetime) -> IdentityResolver:
        """A new resolver with other thresholds over a copy of this one's evidence and models (what-if)."""
        other = IdentityResolver(
            device_threshold=device_threshold,
            trait_threshold=trait_threshold,
            duplicate_threshold=self.duplicate_threshold,
            max_ip_devices=self.max_ip_devices,
            max_email_nodes=self.max_email_nodes,
            max_trait_block=self.max_trait_block,
            max_devices=self.max_devices,
            device_model=self._scorer.device_model,
            trait_model=self._scorer.trait_model,
            keys=self.keys,
        )
        other._store = copy.deepcopy(self._store)
        other.rebuild(at=at)
        return other

    # -- internals -------------------------------------------------------------------------------------

    def _node_of(self, identifier: str) -> str | None:
        store = self._store
        kind, _, rest = identifier.partition(":")
        if kind == "user" and rest in store.users:
            return user_node(rest)
        if (kind == "a" and rest in store.devices) or (kind == "u" and rest in store.users):
            return identifier
        if identifier in store.devices:
            return device_node(identifier)
        if identifier in store.users:
            return user_node(identifier)
        return None

    def _dropped(self, nodes: list[str]) -> Touched:
        touched = Touched()
        for node in nodes:
            touched.update(self._store.drop(node))
            touched.seeds |= self._scorer.drop(node)
        return touched

    def _settle(self, touched: Touched, *, at: datetime, reason: str) -> IdentityUpdate:
        store, scorer = self._store, self._scorer
        changed = set(touched.seeds)
        for aid in sorted(touched.devices):
            changed |= scorer.rescore_device(store, aid)
            # New activity can make a device concurrent with another device of its person, or stop it
            # being so (old quarter-hours age out): re-check the guards where a probabilistic edge is near.
            node = device_node(aid)
            pid = self._person.get(node, node)
            if any(scorer.has_edges(n) for n in self._members.get(pid, (node,))):
                changed.add(node)
        for node in sorted(touched.traits):
            changed |= scorer.rescore_traits(store, node)
        if not changed:
            return IdentityUpdate(person_id="")
        return self._recompute(changed, at=at, created=touched.created, reason=reason)

    def _recompute(self, seeds: set[str], *, at: datetime, created: set[str], reason: str) -> IdentityUpdate:
        region = region_of(seeds, store=self._store, scorer=self._scorer, person=self._person, members=self._members)
        result = cluster_region(
            region,
            store=self._store,
            scorer=self._scorer,
            max_devices=self.max_devices,
            trait_threshold=self.trait_threshold,
            duplicate_threshold=self.duplicate_threshold,
        )
        new_pid = result.person
        old_pid = {n: self._person.get(n, n) for n in region}
        old_links: dict[tuple[str, str, str], tuple[Link, datetime]] = {}
        for pid in set(old_pid.values()):
            for link, when in self._links.pop(pid, ()):
                old_links[(link.method, link.a, link.b)] = (link, when)
            self._members.pop(pid, None)
        for node in region:
            self._person.pop(node, None)
        by_new: dict[str, list[str]] = defaultdict(list)
        for node, pid in new_pid.items():
            by_new[pid].append(node)
            if pid != node:
                self._person[node] = pid
        for pid, members in by_new.items():
            if len(members) > 1:
                self._members[pid] = set(members)
        update = IdentityUpdate(person_id="")
        for link in result.links:
            key = (link.method, link.a, link.b)
            pid = new_pid[link.a]
            when = old_links[key][1] if key in old_links else at
            self._links.setdefault(pid, []).append((link, when))
            if key not in old_links:
                update.links.append(link_record(link, pid, at))
        self._update_duplicates(region, result.duplicates, at, update)
        update.changes = person_changes(
            old_pid,
            result,
            created=created,
            old_links={k: v[0] for k, v in old_links.items()},
            reason=reason,
            at=at,
        )
        return update

    def _update_duplicates(
        self, region: set[str], found: list[Duplicate], at: datetime, update: IdentityUpdate
    ) -> None:
        old = {k: v for k, v in self._duplicates.items() if k[0] in region or k[1] in region}
        for key in old:
            del self._duplicates[key]
        for dup in found:
            key = (dup.user_a, dup.user_b)
            when = old[key][1] if key in old else at
            self._duplicates[key] = (dup, when)
            if key not in old:
                update.duplicates.append(self._duplicate(dup, at))

    def _duplicate(self, dup: Duplicate, at: datetime) -> ProbableDuplicate:
        return duplicate_record(
            dup, self._person.get(dup.user_a, dup.user_a), self._person.get(dup.user_b, dup.user_b), at
        )
