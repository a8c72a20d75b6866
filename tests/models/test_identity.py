"""Identity resolution parts: keyed hashes, Fellegi-Sunter, blocking, traits, device evidence, clustering."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.identity.blocks import BlockIndex
from models.identity.devices import MAX_BUCKETS, MAX_PRODUCTS, DeviceEvidence, compare_devices, software_of
from models.identity.fellegi_sunter import MISSING, Comparison, FellegiSunter
from models.identity.graph import cluster
from models.identity.hashing import KeyedHash
from models.identity.scoring import Edge
from models.identity.traits import TRAIT_MODEL, TraitProfile, canonical_first, compare_traits, normalise_name
from schemas.identity import (
    EXAMPLE_CHANGE,
    EXAMPLE_DUPLICATE,
    EXAMPLE_LINK,
    IDENTITY_LINK_COLUMNS,
    METHODS,
    IdentityLink,
    PersonChange,
    ProbableDuplicate,
)

KEYS = KeyedHash(key=b"test-key")


def profile(**traits: object) -> TraitProfile:
    out = TraitProfile.from_traits(traits, keys=KEYS)
    assert out is not None
    return out


def levels(a: TraitProfile, b: TraitProfile) -> dict[str, str]:
    return {
        c.name: c.levels[level]
        for c, level in zip(TRAIT_MODEL.comparisons, compare_traits(a, b), strict=True)
        if level != MISSING
    }


# -- records -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "kind"),
    [(EXAMPLE_LINK, IdentityLink), (EXAMPLE_CHANGE, PersonChange), (EXAMPLE_DUPLICATE, ProbableDuplicate)],
)
def test_records_round_trip_json_and_pickle(record: object, kind: type) -> None:
    assert kind.from_json(record.to_json()) == record  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(record)) == record


text = st.text(max_size=20)
times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis attaches the time zone itself
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
scores = st.floats(0.0, 1.0)
evidence = st.dictionaries(text, st.integers(-(2**53), 2**53) | text, max_size=3).map(
    lambda d: orjson.dumps(d).decode()
)


@given(
    st.builds(IdentityLink, anonymous_id=text, user_id=text, other_anonymous_id=text, person_id=text,
              method=st.sampled_from(METHODS), score=scores, evidence=evidence, linked_at=times),
    st.builds(PersonChange, kind=st.sampled_from(["merge", "split"]), old_person_id=text, new_person_id=text,
              anonymous_ids=st.lists(text, max_size=3).map(tuple), user_ids=st.lists(text, max_size=3).map(tuple),
              reason=text, evidence=evidence, changed_at=times),
    st.builds(ProbableDuplicate, user_id=text, other_user_id=text, person_id=text, other_person_id=text,
              method=st.sampled_from(METHODS), score=scores, evidence=evidence, detected_at=times),
)  # fmt: skip
def test_any_identity_record_survives_its_wire_form(
    link: IdentityLink, change: PersonChange, duplicate: ProbableDuplicate
) -> None:
    assert IdentityLink.from_json(link.to_json()) == link
    assert PersonChange.from_json(change.to_json()) == change
    assert ProbableDuplicate.from_json(duplicate.to_json()) == duplicate


def test_identity_link_columns_follow_the_warehouse_conventions() -> None:
    assert IDENTITY_LINK_COLUMNS[:4] == ("anonymous_id", "user_id", "other_anonymous_id", "person_id")
    assert IDENTITY_LINK_COLUMNS[-3:] == ("linked_at", "seq", "schema_version")


# -- hashing -------------------------------------------------------------------------------------------


def test_keyed_hash_normalises_and_passes_hashed_values_through() -> None:
    assert KEYS.email(" Ann@Example.COM") == KEYS.email("ann@example.com")
    assert KEYS.email("ann@example.com") != KeyedHash(key=b"other").email("ann@example.com")
    hashed = KEYS.email("ann@example.com")
    assert KEYS.email(hashed) == hashed
    assert KEYS.phone("+44 7700 900123") == KEYS.phone("447700900123")


# -- Fellegi-Sunter ------------------------------------------------------------------------------------


def test_weights_sum_present_fields_and_posterior_rises_with_weight() -> None:
    model = FellegiSunter(
        comparisons=(
            Comparison(name="a", levels=("y", "n"), m=(0.8, 0.2), u=(0.1, 0.9)),
            Comparison(name="b", levels=("y", "n"), m=(0.9, 0.1), u=(0.3, 0.7)),
        ),
        prior=0.1,
    )
    assert model.weight((0, MISSING)) == pytest.approx(3.0)
    assert model.weight((0, 0)) > model.weight((0, MISSING)) > model.weight((1, MISSING))
    assert model.probability(model.weight((0, 0))) > model.probability(model.weight((1, 1)))
    assert model.probability(0.0) == pytest.approx(0.1)
    assert model.probability(1e6) == 1.0
    assert model.probability(-1e6) == 0.0
    assert pickle.loads(pickle.dumps(model)).weight((0, 0)) == model.weight((0, 0))


def test_em_recovers_parameters_of_generated_pairs() -> None:
    rng = random.Random(3)
    truth_m, truth_u, prior = (0.95, 0.8, 0.7, 0.9), (0.1, 0.3, 0.2, 0.05), 0.3
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(20_000):
        match = rng.random() < prior
        pattern = tuple(int(rng.random() >= (m if match else u)) for m, u in zip(truth_m, truth_u, strict=True))
        counts[pattern] = counts.get(pattern, 0) + 1
    start = FellegiSunter(
        comparisons=tuple(Comparison(name=str(i), levels=("y", "n"), m=(0.6, 0.4), u=(0.4, 0.6)) for i in range(4)),
        prior=0.5,
    )
    fitted = start.fit(counts)
    assert fitted.prior == pytest.approx(prior, abs=0.02)
    for c, m, u in zip(fitted.comparisons, truth_m, truth_u, strict=True):
        assert c.m[0] == pytest.approx(m, abs=0.03)
        assert c.u[0] == pytest.approx(u, abs=0.03)
    assert start.fit_prior(counts).comparisons == start.comparisons


def test_comparison_rejects_mismatched_levels() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Comparison(name="x", levels=("a",), m=(0.5, 0.5), u=(0.5, 0.5))


# -- blocking ------------------------------------------------------------------------------------------


@given(st.lists(st.sampled_from("abcdefgh"), max_size=30), st.randoms())
def test_block_membership_is_a_function_of_the_member_set(members: list[str], rng: random.Random) -> None:
    forward, shuffled = BlockIndex(cap=3, limit=6), BlockIndex(cap=3, limit=6)
    for m in members:
        forward.add("k", m)
    other = list(members)
    rng.shuffle(other)
    for m in other:
        shuffled.add("k", m)
    assert forward.size("k") == shuffled.size("k")
    assert set(forward.pairable("k")) == set(shuffled.pairable("k"))
    assert len(forward.pairable("k")) == (len(set(members)) if len(set(members)) <= 3 else 0)


def test_large_block_stays_large_and_pairs_nothing() -> None:
    index = BlockIndex(cap=2, limit=3)
    for m in "abcd":
        index.add("k", m)
    assert index.size("k") == 4
    assert not index.remove("k", "a")
    assert index.pairable("k") == ()
    assert list(index.keys()) == []
    with pytest.raises(ValueError, match="limit"):
        BlockIndex(cap=3, limit=2)


# -- traits --------------------------------------------------------------------------------------------


def test_names_fold_accents_and_nicknames_map_to_the_formal_name() -> None:
    assert normalise_name("Zoë O'Neil-Smith") == "zoeoneilsmith"
    assert canonical_first("bill") == "william"
    assert canonical_first("ann") == "ann"


def test_profile_reads_segment_traits_in_either_case_and_hashes_contact_details() -> None:
    snake = profile(first_name="Ann", last_name="Lee", email="Ann.Lee@x.com", phone="+1 555 0100",
                    address={"postal_code": "m5v 2t6"}, birthday="1990-04-01")  # fmt: skip
    camel = profile(firstName="Ann", lastName="Lee", email="ann.lee@x.com", phone="15550100",
                    address={"postalCode": "M5V2T6"}, birthday="1990-04-01T00:00:00Z")  # fmt: skip
    assert snake == camel
    assert snake.email.startswith("h1:")
    assert snake.phone.startswith("h1:")
    assert "ann.lee@x.com" not in repr(snake)
    assert snake.birth_year == "1990"
    assert profile(name="Ann Marie Lee") == TraitProfile(first="ann", last="lee")
    assert TraitProfile.from_traits({"plan": "gold"}, keys=KEYS) is None
    hashed = profile(email=KEYS.email("ann.lee@x.com"))
    assert hashed.email == snake.email
    assert hashed.email_local == ""


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ({"first_name": "William", "last_name": "Smith"}, {"first": "exact", "last": "exact"}),
        ({"first_name": "Bill", "last_name": "Smtih"}, {"first": "nickname", "last": "fuzzy"}),
        ({"first_name": "Will", "last_name": "Smith"}, {"first": "nickname", "last": "exact"}),
        ({"first_name": "Wiliam", "last_name": "Smyth"}, {"first": "fuzzy", "last": "fuzzy"}),
        ({"first_name": "Mary", "last_name": "Jones"}, {"first": "different", "last": "different"}),
        ({"first_name": "William", "email": "wiliam.smith@x.com"}, {"first": "exact", "email": "fuzzy"}),
        ({"first_name": "William", "email": "william.smith@x.com"}, {"first": "exact", "email": "exact"}),
        ({"first_name": "William", "email": "bill.s@y.com"}, {"first": "exact", "email": "different"}),
    ],
)
def test_trait_levels_cover_typos_transpositions_nicknames_and_missing_fields(
    other: dict[str, str], expected: dict[str, str]
) -> None:
    base = profile(first_name="William", last_name="Smith", email="william.smith@x.com")
    assert levels(base, profile(**other)) == expected
    assert compare_traits(base, profile(**other)) == compare_traits(profile(**other), base)


def test_blocking_keys_bring_nicknames_and_typos_together_but_not_strangers() -> None:
    base = set(profile(first_name="William", last_name="Smith").blocking_keys())
    assert base & set(profile(first_name="Bill", last_name="Smith").blocking_keys())
    assert base & set(profile(first_name="William", last_name="Smtih").blocking_keys())
    assert not base & set(profile(first_name="Mary", last_name="Jones").blocking_keys())
    phone = profile(first_name="X", phone="+1 555 0100").blocking_keys()
    assert any(k.startswith("p:h1:") for k in phone)


def test_second_account_outweighs_namesake_and_housemate() -> None:
    model = TRAIT_MODEL
    account = profile(first_name="William", last_name="Smith", email="william.smith@x.com", phone="+1 555 0100",
                      address={"postal_code": "10001"}, birthday="1980-02-03")  # fmt: skip
    second = profile(first_name="Bill", last_name="Smith", email="bill.smith@work.com", phone="+1 555 0100",
                     address={"postal_code": "10001"})  # fmt: skip
    namesake = profile(first_name="William", last_name="Smith", email="williamsmith@y.com", phone="+1 555 0199")
    housemate = profile(first_name="Mary", last_name="Smith", email="mary.smith@x.com", phone="+1 555 0142",
                        address={"postal_code": "10001"}, birthday="1982-07-01")  # fmt: skip

    def weight(other: TraitProfile) -> float:
        return model.weight(compare_traits(account, other))

    assert model.probability(weight(second)) >= 0.99
    assert model.probability(weight(namesake)) < 0.5
    assert model.probability(weight(housemate)) < 0.01


# -- device evidence -----------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 500), max_size=150), st.randoms())
def test_activity_window_keeps_the_latest_quarter_hours_whatever_the_order(
    buckets: list[int], rng: random.Random
) -> None:
    a, b = DeviceEvidence(), DeviceEvidence()
    for x in buckets:
        a.add_bucket(x)
    shuffled = list(buckets)
    rng.shuffle(shuffled)
    for x in shuffled:
        b.add_bucket(x)
    assert list(a.buckets) == list(b.buckets) == sorted(set(buckets))[-MAX_BUCKETS:]


@given(st.lists(st.sampled_from([f"p{i}" for i in range(20)]), max_size=40), st.randoms())
def test_cart_sketch_and_home_ip_are_order_free(products: list[str], rng: random.Random) -> None:
    a, b = DeviceEvidence(), DeviceEvidence()
    ips = [f"10.0.0.{i % 3}" for i in range(len(products))]
    for p, ip in zip(products, ips, strict=True):
        a.add_product(p)
        a.add_ip(ip)
    order = list(range(len(products)))
    rng.shuffle(order)
    for i in order:
        b.add_product(products[i])
        b.add_ip(ips[i])
    assert a.products == b.products
    assert len(a.products) <= MAX_PRODUCTS
    assert (a.home, a.ips) == (b.home, b.ips)


def test_context_keeps_the_smallest_value_and_reads_vendor_and_browser() -> None:
    ev = DeviceEvidence()
    assert ev.set_context("mobile", "iOS", "Mozilla/5.0 (iPhone) Version/18.0 Mobile Safari/604.1", "en-US")
    assert not ev.set_context("mobile", "iOS", "Mozilla/5.0 (iPhone) Version/18.0 Mobile Safari/604.1", "en-US")
    assert ev.set_context("mobile", "iOS", "", "de-DE")
    assert (ev.device_type, ev.software, ev.locale) == ("mobile", "apple/safari", "de-DE")
    assert software_of("Windows", "... Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0") == "microsoft/edg"


def test_interests_need_three_views_and_compare_by_shape() -> None:
    a, b = DeviceEvidence(), DeviceEvidence()
    for ev, cats in ((a, ["shoes", "shoes"]), (b, ["shoes", "shoes", "shoes"])):
        for c in cats:
            ev.add_category(c)
        ev.add_ip("10.0.0.1")
    assert a.interests is None
    assert compare_devices(a, b, {"10.0.0.1": 2})[3] == MISSING
    a.add_category("shoes")
    assert compare_devices(a, b, {"10.0.0.1": 2})[3] == 0


def test_dominant_user_counts_events_and_breaks_ties_by_id() -> None:
    ev = DeviceEvidence()
    ev.add_user("u2", 4)
    ev.add_user("u1", 4)
    assert ev.dominant_user() == "u1"
    assert ev.add_user("u2", 4)
    assert ev.dominant_user() == "u2"


# -- clustering ----------------------------------------------------------------------------------------


def edge(a: str, b: str, score: float = 0.995, method: str = "device_probabilistic") -> Edge:
    low, high = sorted((a, b))
    return Edge(method, low, high, 10.0, score, ())


def run(nodes: list[str], **kwargs: object) -> dict[str, str]:
    options: dict[str, object] = {
        "owner": {}, "email_groups": [], "edges": [], "shared": set(),
        "cannot_link": lambda a, b: False, "max_devices": 8,
    }  # fmt: skip
    options.update(kwargs)
    return cluster(nodes, **options).person  # type: ignore[arg-type]


def test_person_ids_are_canonical() -> None:
    person = run(["a:z", "a:b", "u:u9"], owner={"a:z": "u:u9"}, edges=[edge("a:b", "a:z")])
    assert person == {"a:z": "u:u9", "a:b": "u:u9", "u:u9": "u:u9"}
    assert run(["a:z", "a:b"], edges=[edge("a:b", "a:z")]) == {"a:z": "a:b", "a:b": "a:b"}


def test_two_accounts_are_never_merged_and_an_email_between_them_is_a_duplicate() -> None:
    found = cluster(
        ["a:d1", "a:d2", "a:d3", "u:u1", "u:u2"],
        owner={"a:d1": "u:u1", "a:d2": "u:u2"},
        email_groups=[("h1:e", ("a:d3", "u:u1", "u:u2"))],
        edges=[edge("a:d1", "a:d2"), edge("a:d3", "u:u1", method="trait_probabilistic")],
        shared=set(), cannot_link=lambda a, b: False, max_devices=8,
    )  # fmt: skip
    assert found.person["a:d1"] == "u:u1"
    assert found.person["a:d2"] == "u:u2"
    assert [(d.user_a, d.user_b, d.method) for d in found.duplicates] == [("u:u1", "u:u2", "deterministic")]
    assert found.person["a:d3"] == "u:u1"
    assert {r.reason for r in found.refused} == {"two user ids"}


def test_shared_devices_concurrency_and_the_size_cap_refuse_unions() -> None:
    shared = run(["a:s", "a:x", "u:u1"], owner={"a:s": "u:u1"}, edges=[edge("a:s", "a:x")], shared={"a:s"})
    assert shared["a:x"] == "a:x"
    busy = run(["a:p", "a:q"], edges=[edge("a:p", "a:q")], cannot_link=lambda a, b: True)
    assert busy["a:q"] == "a:q"
    capped = run([f"a:d{i}" for i in range(5)] + ["u:u"], owner={f"a:d{i}": "u:u" for i in range(5)}, max_devices=3)
    assert sorted(n for n, p in capped.items() if p == "u:u") == ["a:d0", "a:d1", "a:d2", "u:u"]


@given(st.randoms())
@settings(max_examples=30)
def test_clustering_does_not_depend_on_input_order(rng: random.Random) -> None:
    nodes = [f"a:d{i}" for i in range(8)] + ["u:u1", "u:u2"]
    edges = [edge(f"a:d{i}", f"a:d{j}", score=0.99 + 0.001 * ((i * 7 + j) % 5)) for i in range(8) for j in range(i)]
    owner = {"a:d1": "u:u1", "a:d5": "u:u2"}
    groups = [("h1:a", ("a:d2", "a:d7")), ("h1:b", ("a:d3", "u:u2"))]
    expected = run(nodes, owner=owner, edges=edges, email_groups=groups, max_devices=4)
    rng.shuffle(nodes)
    rng.shuffle(edges)
    rng.shuffle(groups)
    assert run(nodes, owner=dict(reversed(owner.items())), edges=edges, email_groups=groups, max_devices=4) == expected
