"""Identity resolution on simulated traffic against its ground truth: accuracy, bounds, speed, memory.

    python -m benchmarks.identity --json benchmarks/results/identity.json

The simulator (``--users``, ``--days``, ``--seed``) renders its traffic as a collector stores it; every
line goes through ``RowBuilder`` (failed lines are skipped) and then, in arrival order, through
``IdentityResolver.observe``. Scoring is pairwise over the devices seen in the traffic:

* a *predicted pair* is two devices the resolver put in one person; it is correct when the two devices
  share a true user (a family computer belongs to both people who use it, so linking it to either is
  right). Bots are devices too: a bot joined to a person is an error;
* a *true pair* is two devices of one person, neither of them shared. Shared devices are scored apart:
  the share of them attached to a device of one of their users;
* precision = correct predicted pairs / predicted pairs; recall = true pairs predicted / true pairs.

Breakdowns: by the method of the link that first joined a predicted pair (deterministic, then trait,
then device links, as the resolver applies them); errors by relation (same household, same office,
strangers); recall by household size and office workers. Every missed true pair is put in the first class
that applies: a device that denied analytics consent (never linked, by design), two different accounts
(never merged, by design: reported as probable duplicates), no evidence at all (no account, email or
trait tie and no IP shared by at most ``max_ip_devices`` devices), or evidence that did not reach the
threshold. The first three bound the recall any resolver with these rules and this blocking can reach.
The last is split by what that evidence was (``below_threshold_detail``): ``traits`` (both devices, or
their accounts, stated contact details, so the trait model weighed them), ``own_ip`` (a small IP block
that only this person's devices used: a one-person home, where the block itself is strong evidence), or
``housemates_ip`` (every small IP the two share was also used by someone else's device, almost always a
housemate's: the IP cannot tell them apart, only device behaviour can).

Also: probable duplicate accounts against the simulator's second accounts; a sweep of the device
threshold (``with_thresholds``); the device model ``refit`` estimates from deterministically labelled
pairs; order independence (the same traffic in another arrival order, each device's events kept in
their order as a device-keyed partition keeps them: nodes whose person differs, probabilistic links that
differ); throughput and per-event latency of ``observe``; and memory: the resolver's state measured with
tracemalloc while a pickled copy is loaded, per device seen, next to the checkpoint size.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import pickle
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import figures_json
from models.identity import IdentityResolver
from models.ingest import RowBuilder
from models.simulator import SimulationConfig, simulate
from schemas.records import EventRow

METHODS = ("deterministic", "trait_probabilistic", "device_probabilistic")
SWEEP = (0.99, 0.9, 0.8, 0.7, 0.6, 0.5)
Pair = tuple[str, str]


def event_rows(users: int, days: int, seed: int) -> tuple[list[EventRow], dict[str, Any], float]:
    sim = simulate(SimulationConfig(users=users, days=days, seed=seed))
    build = RowBuilder()
    received = datetime(2026, 11, 1, tzinfo=UTC)
    start = time.perf_counter()
    rows = [build(raw, source=f"sim:{n}", received_at=received) for n, raw in enumerate(sim.collected_events())]
    seconds = time.perf_counter() - start
    return [r for r in rows if isinstance(r, EventRow)], sim.truth(), seconds


def observe_all(resolver: IdentityResolver, rows: list[EventRow]) -> dict[str, Any]:
    latencies = []
    clock = time.perf_counter_ns
    counts: Counter[str] = Counter()
    gc.disable()
    try:
        start = time.perf_counter()
        for row in rows:
            t0 = clock()
            update = resolver.observe(row)
            latencies.append(clock() - t0)
            counts["links"] += len(update.links)
            counts["changes"] += len(update.changes)
            counts["splits"] += sum(c.kind == "split" for c in update.changes)
            counts["duplicates"] += len(update.duplicates)
        seconds = time.perf_counter() - start
    finally:
        gc.enable()
    latencies.sort()
    return {
        "events": len(rows),
        "seconds": round(seconds, 2),
        "events_per_second": round(len(rows) / seconds),
        "latency_us": {
            "mean": round(statistics.fmean(latencies) / 1000, 1),
            "p50": round(latencies[len(latencies) // 2] / 1000, 1),
            "p99": round(latencies[int(len(latencies) * 0.99)] / 1000, 1),
            "max": round(latencies[-1] / 1000, 1),
        },
        "emitted": dict(counts),
    }


def interleaved(rows: list[EventRow], seed: int) -> list[EventRow]:
    """Another arrival order: each device keeps the order of its own events, devices interleave at random."""
    queues: dict[str, list[EventRow]] = defaultdict(list)
    for r in rows:
        queues[r.device_key].append(r)
    keys = [k for k, q in queues.items() for _ in q]
    random.Random(seed).shuffle(keys)
    position = dict.fromkeys(queues, 0)
    out = []
    for k in keys:
        out.append(queues[k][position[k]])
        position[k] += 1
    return out


def order_check(resolver: IdentityResolver, rows: list[EventRow], seed: int) -> dict[str, Any]:
    """The final persons and probabilistic links after another arrival order, against ``resolver``'s."""
    other = IdentityResolver()
    for row in interleaved(rows, seed):
        other.observe(row)
    mine, theirs = resolver.assignment(), other.assignment()

    def probabilistic(r: IdentityResolver) -> set[tuple[str, str, str, str]]:
        return {
            (lk.method, lk.anonymous_id, lk.user_id, lk.other_anonymous_id)
            for lk in r.links()
            if lk.method != "deterministic"
        }

    return {
        "nodes": len(mine),
        "nodes_with_another_person": sum(mine[n] != theirs.get(n) for n in mine) + len(theirs.keys() - mine.keys()),
        "probabilistic_links": len(probabilistic(resolver)),
        "probabilistic_links_differing": len(probabilistic(resolver) ^ probabilistic(other)),
    }


def memory(resolver: IdentityResolver, devices: int) -> dict[str, Any]:
    blob = pickle.dumps(resolver)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    copy = pickle.loads(blob)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del copy
    return {
        "state_bytes": used,
        "bytes_per_device": round(used / devices),
        "checkpoint_bytes": len(blob),
        "checkpoint_bytes_per_device": round(len(blob) / devices),
    }


class Truth:
    """The simulator's truth about the devices seen in the traffic, and facts read from the traffic."""

    def __init__(self, truth: dict[str, Any], rows: list[EventRow], max_ip_devices: int) -> None:
        self.truth = truth
        devices = truth["devices"]
        self.seen = sorted({r.anonymous_id for r in rows if r.anonymous_id in devices})
        self.users = {a: frozenset(devices[a]["used_by"]) for a in self.seen}
        self.owner = {a: devices[a]["person_id"] for a in self.seen}
        self.human = [a for a in self.seen if self.owner[a].startswith("person_")]
        self.shared = {a for a in self.human if len(self.users[a]) > 1}
        persons = truth["persons"]
        self.household = {p: v["household"] for p, v in persons.items()}
        self.office = {p: v["office_ip"] for p, v in persons.items()}
        size = Counter(self.household.values())
        self.household_size = {p: size[h] for p, h in self.household.items()}
        self.person_of_user = {u: p for p, v in persons.items() for u in v["user_ids"]}
        denied: set[str] = set()
        accounts: dict[str, Counter[str]] = defaultdict(Counter)
        ip_devices: dict[str, set[str]] = defaultdict(set)
        self.identified: set[str] = set()
        for r in rows:
            if r.consent.get("analytics") is False:
                denied.add(r.anonymous_id)
            if r.user_id and r.anonymous_id:
                accounts[r.anonymous_id][r.user_id] += 1
            if r.type == "identify" and r.user_id and len(r.traits) > 2:
                self.identified.add(r.user_id)
        for r in rows:
            if r.ip and r.anonymous_id and r.anonymous_id not in denied:
                ip_devices[r.ip].add(r.anonymous_id)
        self.denied = denied
        self.stated = {r.anonymous_id for r in rows if len(r.traits) > 2 or "mail" in r.properties}
        self.account = {a: min(c, key=lambda u: (-c[u], u)) for a, c in accounts.items()}
        small = [members for members in ip_devices.values() if len(members) <= max_ip_devices]
        self.candidates = {pair for members in small for pair in itertools.combinations(sorted(members), 2)}
        self.own_ip = {
            pair
            for members in small
            if len({self.owner.get(a) for a in members}) == 1
            for pair in itertools.combinations(sorted(members), 2)
        }
        by_owner: dict[str, list[str]] = defaultdict(list)
        for a in self.human:
            if a not in self.shared:
                by_owner[self.owner[a]].append(a)
        self.true_pairs = {p for ds in by_owner.values() for p in itertools.combinations(sorted(ds), 2)}

    def correct(self, pair: Pair) -> bool:
        return bool(self.users[pair[0]] & self.users[pair[1]])

    def relation(self, pair: Pair) -> str:
        """How the true people behind a wrongly joined pair are related."""
        a, b = (min(self.users[d]) for d in pair)
        if not a.startswith("person_") or not b.startswith("person_"):
            return "bot"
        if self.household[a] == self.household[b]:
            return "household"
        if self.office[a] is not None and self.office[a] == self.office[b]:
            return "office"
        return "strangers"

    def missed_reason(self, pair: Pair) -> str:
        a, b = pair
        if a in self.denied or b in self.denied:
            return "consent_denied"
        ua, ub = self.account.get(a), self.account.get(b)
        if ua and ub and ua != ub:
            return "two_accounts"
        if pair not in self.candidates and not (ua and ua == ub):
            return "no_evidence"
        return "below_threshold"

    def below_threshold_detail(self, pair: Pair) -> str:
        """What the evidence of a pair missed for want of weight was (see the module docstring)."""
        a, b = pair
        if (a in self.stated or self.account.get(a, "") in self.identified) and (
            b in self.stated or self.account.get(b, "") in self.identified
        ):
            return "traits"
        return "own_ip" if pair in self.own_ip else "housemates_ip"


def pairs_of(groups: Iterable[list[str]]) -> set[Pair]:
    return {p for g in groups for p in itertools.combinations(sorted(g), 2)}


def predicted_pairs(person: dict[str, str], devices: list[str]) -> set[Pair]:
    groups: dict[str, list[str]] = defaultdict(list)
    for a in devices:
        groups[person.get(f"a:{a}", f"a:{a}")].append(a)
    return pairs_of(groups.values())


def accuracy(resolver: IdentityResolver, t: Truth) -> dict[str, Any]:
    person = resolver.assignment()
    predicted = predicted_pairs(person, t.seen)
    human = set(t.human)
    correct = {p for p in predicted if t.correct(p)}
    found = predicted & t.true_pairs
    out: dict[str, Any] = {
        "predicted_pairs": len(predicted),
        "true_pairs": len(t.true_pairs),
        "precision": round(len(correct) / len(predicted), 4) if predicted else 1.0,
        "recall": round(len(found) / len(t.true_pairs), 4),
        "errors_by_relation": dict(Counter(t.relation(p) for p in predicted - correct)),
    }
    attached = [
        s
        for s in t.shared
        if any(person.get(f"a:{o}") == person.get(f"a:{s}") for o in human - {s} if t.users[o] & t.users[s])
    ]
    out["shared_devices"] = {"devices": len(t.shared), "attached_to_a_user": len(attached)}
    bots = [a for a in t.seen if a not in human]
    bot_true = pairs_of([[a for a in bots if t.owner[a] == b] for b in {t.owner[a] for a in bots}])
    out["bots"] = {"true_pairs": len(bot_true), "recovered": len(bot_true & predicted)}
    return out


def by_method(resolver: IdentityResolver, t: Truth) -> dict[str, Any]:
    """Predicted pairs by the method of the link that first joined them."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    links = resolver.links()
    first: dict[Pair, str] = {}
    for method in METHODS:
        for link in links:
            if link.method == method:
                a = f"a:{link.anonymous_id}"
                b = f"u:{link.user_id}" if link.user_id else f"a:{link.other_anonymous_id}"
                parent[find(a)] = find(b)
        groups: dict[str, list[str]] = defaultdict(list)
        for d in t.seen:
            groups[find(f"a:{d}")].append(d)
        for pair in pairs_of(groups.values()):
            first.setdefault(pair, method)
    out = {}
    for method in METHODS:
        pairs = [p for p, m in first.items() if m == method]
        good = sum(t.correct(p) for p in pairs)
        out[method] = {
            "links": sum(lk.method == method for lk in links),
            "pairs": len(pairs),
            "precision": round(good / len(pairs), 4) if pairs else None,
            "true_pairs_found": sum(p in t.true_pairs for p in pairs),
        }
    return out


def recall_analysis(resolver: IdentityResolver, t: Truth) -> dict[str, Any]:
    predicted = predicted_pairs(resolver.assignment(), t.seen)
    missed = t.true_pairs - predicted
    reasons = Counter(t.missed_reason(p) for p in missed)
    detail = Counter(t.below_threshold_detail(p) for p in missed if t.missed_reason(p) == "below_threshold")
    total = len(t.true_pairs)
    unreachable = reasons["consent_denied"] + reasons["two_accounts"] + reasons["no_evidence"]
    segments: dict[str, list[Pair]] = defaultdict(list)
    for pair in t.true_pairs:
        p = t.owner[pair[0]]
        segments["single_person_household" if t.household_size[p] == 1 else "shared_household"].append(pair)
        if t.office[p] is not None:
            segments["office_worker"].append(pair)
    return {
        "missed_by_reason": dict(reasons),
        "below_threshold_detail": dict(detail),
        "recall_upper_bound": round((total - unreachable) / total, 4),
        "recall_by_segment": {
            k: {"true_pairs": len(v), "recall": round(sum(p in predicted for p in v) / len(v), 4)}
            for k, v in sorted(segments.items())
        },
    }


def duplicates(resolver: IdentityResolver, t: Truth) -> dict[str, Any]:
    truth = {
        tuple(sorted(d["user_ids"]))
        for d in t.truth["duplicate_persons"]
        if "second_account" in d["kinds"] and len(d["user_ids"]) == 2
    }
    found = {tuple(sorted((d.user_id, d.other_user_id))): d.method for d in resolver.duplicates()}
    right = {k for k in found if t.person_of_user.get(k[0]) == t.person_of_user.get(k[1])}
    reachable = {k for k in truth if k[0] in t.identified and k[1] in t.identified}
    return {
        "second_accounts": len(truth),
        "both_identified_with_traits": len(reachable),
        "reported": len(found),
        "correct": len(right),
        "found": len(right & truth),
        "false_by_method": dict(Counter(m for k, m in found.items() if k not in right)),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows, truth_dict, build_seconds = event_rows(args.users, args.days, args.seed)
    resolver = IdentityResolver()
    speed = observe_all(resolver, rows)
    t = Truth(truth_dict, rows, resolver.max_ip_devices)
    at = rows[-1].event_at
    result: dict[str, Any] = {
        "config": {"users": args.users, "days": args.days, "seed": args.seed, "devices_seen": len(t.seen)},
        "settings": {"device_threshold": resolver.device_threshold, "trait_threshold": resolver.trait_threshold,
                     "max_ip_devices": resolver.max_ip_devices, "max_devices": resolver.max_devices},
        "accuracy": accuracy(resolver, t),
        "by_method": by_method(resolver, t),
        "recall_analysis": recall_analysis(resolver, t),
        "duplicates": duplicates(resolver, t),
        "order": order_check(resolver, rows, args.seed),
        "speed": speed | {"row_build_seconds": round(build_seconds, 2)},
        "memory": memory(resolver, len(t.seen)),
    }  # fmt: skip
    sweep = {}
    for threshold in SWEEP:
        start = time.perf_counter()
        other = resolver.with_thresholds(device_threshold=threshold, trait_threshold=resolver.trait_threshold, at=at)
        acc = accuracy(other, t)
        sweep[str(threshold)] = {k: acc[k] for k in ("precision", "recall", "predicted_pairs")} | {
            "errors_by_relation": acc["errors_by_relation"],
            "rebuild_seconds": round(time.perf_counter() - start, 2),
        }
    result["device_threshold_sweep"] = sweep
    refitted = pickle.loads(pickle.dumps(resolver))
    refitted.refit(at=at)
    model = refitted.models[0]
    result["refit"] = {
        "prior": round(model.prior, 3),
        "weights": {c.name: dict(zip(c.levels, c.weights(), strict=True)) for c in model.comparisons},
        "accuracy": {k: accuracy(refitted, t)[k] for k in ("precision", "recall", "predicted_pairs")},
    }
    result["platform"] = {"python": sys.version.split()[0], "machine": platform.machine()}
    result["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    print_table(result)
    figures_json(result, args.json)
    return result


def print_table(r: dict[str, Any]) -> None:
    acc, rec, speed, mem = r["accuracy"], r["recall_analysis"], r["speed"], r["memory"]
    lines = [
        f"identity resolution: {r['config']['users']} people, {r['config']['days']} days, "
        f"{r['config']['devices_seen']} devices seen, {speed['events']} events",
        "",
        f"{'pairwise':<34}{'pairs':>10}{'precision':>11}{'recall':>9}",
        f"{'all methods':<34}{acc['predicted_pairs']:>10}{acc['precision']:>11}{acc['recall']:>9}",
    ]
    for method, m in r["by_method"].items():
        precision = "-" if m["precision"] is None else m["precision"]
        lines.append(f"  {method:<32}{m['pairs']:>10}{precision!s:>11}{m['true_pairs_found']:>9} true pairs")
    for segment, s in rec["recall_by_segment"].items():
        lines.append(f"  recall, {segment:<24}{s['true_pairs']:>10}{'':>11}{s['recall']:>9}")
    lines += [
        f"errors by relation: {acc['errors_by_relation'] or 'none'}",
        f"missed true pairs: {rec['missed_by_reason']}; recall upper bound {rec['recall_upper_bound']}",
        f"below threshold, by evidence: {rec['below_threshold_detail']}",
        f"shared devices attached to a user: {acc['shared_devices']['attached_to_a_user']}"
        f"/{acc['shared_devices']['devices']}; bot pairs recovered: {acc['bots']['recovered']}"
        f"/{acc['bots']['true_pairs']}",
        f"duplicate accounts: {r['duplicates']}",
        f"another arrival order: {r['order']}",
        "",
        f"{'device threshold':<34}{'pairs':>10}{'precision':>11}{'recall':>9}",
    ]
    for threshold, s in r["device_threshold_sweep"].items():
        lines.append(f"  {threshold:<32}{s['predicted_pairs']:>10}{s['precision']:>11}{s['recall']:>9}")
    refit = r["refit"]
    lines += [
        f"  {'refit, default threshold':<32}{refit['accuracy']['predicted_pairs']:>10}"
        f"{refit['accuracy']['precision']:>11}{refit['accuracy']['recall']:>9}",
        "",
        f"observe: {speed['events_per_second']} events/s, latency us {speed['latency_us']}",
        f"memory: {mem['bytes_per_device']} bytes/device in memory, {mem['checkpoint_bytes_per_device']} "
        f"bytes/device in the checkpoint ({mem['checkpoint_bytes']} bytes)",
        f"benchmark took {r['benchmark_seconds']} s",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
