"""Markov removal effects and Shapley values against independent brute force on small path sets.

Nothing here is shared with the implementation: the Markov chain is rebuilt from the paths with string states
and solved by iterating ``x <- r + Q x`` to convergence (the sum over all walks from the start), and the
Shapley values average marginal contributions over every permutation of the channels.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.attribution import MarkovAttribution, ShapleyAttribution, Touch, TouchpointPaths
from models.attribution.markov import DENSE_STATES

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PathSet = list[tuple[list[str], bool]]


def as_touches(channels: list[str]) -> list[Touch]:
    return [
        Touch(channel=c, campaign="", at=T0 + timedelta(hours=i), session_id=str(i)) for i, c in enumerate(channels)
    ]


def brute_markov(paths: PathSet, order: int) -> tuple[float, dict[str, float]]:
    """Conversion probability and removal effects by iterating the chain to convergence."""
    successors: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for channels, converted in paths:
        state, history = "^", []
        for c in channels:
            history.append(c)
            nxt = ">".join(history[-order:])
            successors[state][nxt] += 1
            state = nxt
        successors[state]["$conv" if converted else "$null"] += 1

    def conversion_probability(removed: str | None) -> float:
        def value(state: str, x: dict[str, float]) -> float:
            if state == "$conv":
                return 1.0
            if state == "$null" or (removed is not None and removed in state.split(">")):
                return 0.0
            return x[state]

        x = dict.fromkeys(successors, 0.0)
        for _ in range(200_000):
            new = {}
            for state, counts in successors.items():
                total = sum(counts.values())
                new[state] = sum(n / total * value(t, x) for t, n in counts.items())
            delta = max(abs(new[s] - x[s]) for s in x)
            x = new
            if delta < 1e-15:
                break
        return x["^"]

    p = conversion_probability(None)
    seen = {c for path, _ in paths for c in path}
    return p, {c: 1 - conversion_probability(c) / p for c in seen}


def brute_shapley(paths: PathSet, prior: float, players: set[str] | None = None) -> dict[str, float]:
    """Shapley values of the smoothed best-observed-subset game, averaged over every permutation."""
    counts: dict[frozenset[str], list[int]] = {}
    for channels, converted in paths:
        tally = counts.setdefault(frozenset(channels), [0, 0])
        tally[0] += 1
        tally[1] += converted
    overall = sum(c for _, c in counts.values()) / sum(n for n, _ in counts.values())
    rates = {s: (c + prior * overall) / (n + prior) for s, (n, c) in counts.items()}
    if players is None:
        players = set().union(*counts)

    def v(coalition: frozenset[str]) -> float:
        if not coalition:
            return 0.0
        # a set is seen as its players; a set without any (only capped-off channels) is worth nothing
        return max([r for s, r in rates.items() if s & players and s & players <= coalition] + [0.0])

    orders = list(itertools.permutations(sorted(players)))
    phi = dict.fromkeys(players, 0.0)
    for order in orders:
        coalition: frozenset[str] = frozenset()
        for c in order:
            phi[c] += v(coalition | {c}) - v(coalition)
            coalition = coalition | {c}
    return {c: total / len(orders) for c, total in phi.items()}


path_sets = st.lists(
    st.tuples(st.lists(st.sampled_from("abcd"), min_size=1, max_size=5), st.booleans()),
    min_size=1,
    max_size=25,
).filter(lambda ps: any(converted for _, converted in ps))


@pytest.mark.parametrize("order", [1, 2, 3])
@settings(max_examples=30, deadline=None)
@given(paths=path_sets)
def test_markov_removal_effects_match_brute_force(order: int, paths: PathSet) -> None:
    model = MarkovAttribution(order=order)
    for channels, converted in paths:
        model.learn_one(as_touches(channels), converted=converted)
    effects = model.removal_effects()
    p, expected = brute_markov(paths, order)
    assert model.conversion_probability == pytest.approx(p, rel=1e-9, abs=1e-12)
    assert effects.keys() == expected.keys()
    for c, e in expected.items():
        assert effects[c] == pytest.approx(e, rel=1e-9, abs=1e-9)


def test_a_large_chain_solved_sparse_matches_brute_force() -> None:
    rng = random.Random(2)
    paths: PathSet = [(rng.choices("abcdefghijklmn", k=rng.randint(1, 5)), rng.random() < 0.3) for _ in range(250)]
    model = MarkovAttribution(order=2)
    for channels, converted in paths:
        model.learn_one(as_touches(channels), converted=converted)
    assert len(model.counts) > DENSE_STATES
    effects = model.removal_effects()
    p, expected = brute_markov(paths, 2)
    assert model.conversion_probability == pytest.approx(p, rel=1e-9)
    assert effects == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_markov_by_hand() -> None:
    # start -> a 2/3, -> b 1/3; a -> b 1/2, -> null 1/2; b -> conv 1. P = 2/3; without a 1/3; without b 0.
    paths: PathSet = [(["a", "b"], True), (["a"], False), (["b"], True)]
    model = MarkovAttribution(refit_every=1)
    for channels, converted in paths:
        model.learn_one(as_touches(channels), converted=converted)
    assert model.removal_effects() == pytest.approx({"a": 0.5, "b": 1.0})
    assert model.conversion_probability == pytest.approx(2 / 3)
    # the path's channels share by removal effect, a channel's touches share its part evenly
    store = TouchpointPaths(models=[model])
    for i, c in enumerate(["a", "b", "b"]):
        store.add("p", Touch(channel=c, campaign="", at=T0 + timedelta(hours=i), session_id=str(i)))
    credits = store.convert("p", conversion_id="o", revenue=100, currency="USD", at=T0 + timedelta(hours=3))
    # after learning this path too: start -> a 3/4; a -> b 2/3; b converts surely (via a self-loop once);
    # P = 3/4 * 2/3 + 1/4 = 3/4, without a 1/4, without b 0: effects 2/3 and 1, so a : b = 2/3 : 1
    assert model.removal_effects() == pytest.approx({"a": 2 / 3, "b": 1.0})
    assert [(c.channel, c.credit) for c in credits] == [("a", 40.0), ("b", 30.0), ("b", 30.0)]


def test_second_order_chain_remembers_where_the_person_came_from() -> None:
    # After "b", a person who came from "a" always converts and one who did not never does: an order-1 chain
    # averages the two; an order-2 chain sees that removing "a" loses every conversion.
    paths: PathSet = [(["a", "b"], True), (["c", "b"], False)] * 5
    first, second = MarkovAttribution(), MarkovAttribution(order=2)
    for channels, converted in paths:
        first.learn_one(as_touches(channels), converted=converted)
        second.learn_one(as_touches(channels), converted=converted)
    assert first.removal_effects() == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.5})
    assert second.removal_effects() == pytest.approx({"a": 1.0, "b": 1.0, "c": 0.0})


@settings(max_examples=40, deadline=None)
@given(paths=path_sets, prior=st.sampled_from([0.0, 1.0, 10.0]))
def test_shapley_values_match_every_permutation(paths: PathSet, prior: float) -> None:
    model = ShapleyAttribution(prior_paths=prior)
    for channels, converted in paths:
        model.learn_one(as_touches(channels), converted=converted)
    values = model.shapley_values()
    expected = brute_shapley(paths, prior)
    assert values.keys() == expected.keys()
    for c, phi in expected.items():
        assert values[c] == pytest.approx(phi, rel=1e-12, abs=1e-12)


def test_shapley_efficiency_and_the_channel_cap() -> None:
    paths: PathSet = [(["a"], True), (["a", "b"], True), (["b"], False), (["c"], True), (["a", "c"], False)]
    paths += [(["a"], False)] * 3 + [(["b"], False)] * 2
    model = ShapleyAttribution(prior_paths=1.0)
    for channels, converted in paths:
        model.learn_one(as_touches(channels), converted=converted)
    values = model.shapley_values()
    # efficiency: the values add up to v(all channels), the best smoothed rate of any observed set
    overall = 3 / 10
    best = max((1 + overall) / (4 + 1), (1 + overall) / (1 + 1), (0 + overall) / (3 + 1), (1 + overall) / (1 + 1))
    assert sum(values.values()) == pytest.approx(best)
    capped = ShapleyAttribution(prior_paths=1.0, max_channels=2)  # c is the least frequent: it does not play
    for channels, converted in paths:
        capped.learn_one(as_touches(channels), converted=converted)
    capped_values = capped.shapley_values()
    assert capped_values["c"] == 0.0
    expected = brute_shapley(paths, 1.0, players={"a", "b"})
    assert {k: capped_values[k] for k in "ab"} == pytest.approx(expected)
