"""Attribution: the model contract, conservation to the cent, the store's window and lifecycle, and state round trips.

The data-driven models are checked against independent brute force in ``test_attribution_bruteforce.py``.
"""

from __future__ import annotations

import copy
import inspect
import pickle
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.attribution import (
    MODEL_CLASSES,
    AttributionError,
    AttributionModel,
    FirstTouch,
    IncrementalAttribution,
    LastNonDirect,
    LastTouch,
    Linear,
    MarkovAttribution,
    PositionBased,
    ShapleyAttribution,
    TimeDecay,
    Touch,
    TouchpointPaths,
    default_models,
    split_cents,
    to_cents,
)
from schemas.attribution import (
    ATTRIBUTION_CREDIT_COLUMNS,
    BUDGET_RECOMMENDATION_COLUMNS,
    EXAMPLE_CREDIT,
    AttributionCredit,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CHANNELS = ("paid_search", "organic_search", "email", "display", "direct")


def touch(channel: str, day: float, session: str | None = None, campaign: str = "") -> Touch:
    return Touch(
        channel=channel, campaign=campaign, at=T0 + timedelta(days=day), session_id=session or f"{channel}{day}"
    )


def path(*channels: str) -> list[Touch]:
    return [touch(c, i / 24, f"s{i}") for i, c in enumerate(channels)]


def every_model() -> list[AttributionModel]:
    return [*default_models(), MarkovAttribution(order=2, refit_every=1), MarkovAttribution(order=3)]


def trained(models: list[AttributionModel], seed: int = 0, paths: int = 60) -> list[AttributionModel]:
    rng = random.Random(seed)
    for _ in range(paths):
        p = path(*rng.choices(CHANNELS, k=rng.randint(1, 5)))
        for m in models:
            m.learn_one(p, converted=rng.random() < 0.4)
    return models


def cents_by_model(credits: list[AttributionCredit]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for c in credits:
        totals[c.model] = totals.get(c.model, 0) + to_cents(c.credit)
    return totals


# --- the contract, for every model ------------------------------------------------------------------------


@pytest.mark.parametrize("model", every_model(), ids=lambda m: m.name)
def test_contract(model: AttributionModel) -> None:
    params = inspect.signature(type(model)).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    p = path("display", "email", "direct")
    before = copy.deepcopy(p)
    weights = model.predict_one(p, at=T0 + timedelta(days=1))  # before learning: sensible weights
    assert len(weights) == 3
    assert all(w >= 0 for w in weights)
    assert sum(weights) > 0
    assert p == before
    trained([model])
    clone = pickle.loads(pickle.dumps(model))
    revived = MODEL_CLASSES[model.to_dict()["model"]].from_dict(orjson.loads(orjson.dumps(model.to_dict())))
    expected = model.predict_one(p, at=T0 + timedelta(days=1))
    assert clone.predict_one(p, at=T0 + timedelta(days=1)) == expected
    assert revived.predict_one(p, at=T0 + timedelta(days=1)) == expected
    assert revived.to_dict() == model.to_dict()
    assert repr(model).startswith(type(model).__name__)


def test_data_driven_models_predict_linear_before_learning() -> None:
    p = path("display", "email", "email", "direct")
    for model in (MarkovAttribution(), MarkovAttribution(order=2), ShapleyAttribution(), IncrementalAttribution()):
        assert model.predict_one(p, at=T0) == [1.0] * 4
        assert model.model_version.endswith(".0")


# --- rules ----------------------------------------------------------------------------------------------


def test_rule_models() -> None:
    at = T0 + timedelta(days=14)
    p = [touch("display", 0), touch("email", 7), touch("direct", 14)]
    assert FirstTouch().predict_one(p, at=at) == [1.0, 0.0, 0.0]
    assert LastTouch().predict_one(p, at=at) == [0.0, 0.0, 1.0]
    assert LastNonDirect().predict_one(p, at=at) == [0.0, 1.0, 0.0]
    assert LastNonDirect().predict_one([touch("direct", 0), touch("direct", 1)], at=at) == [0.0, 1.0]
    assert TimeDecay().predict_one(p, at=at) == [0.25, 0.5, 1.0]
    assert TimeDecay(half_life_days=14).predict_one(p[:1], at=at) == [0.5]
    assert TimeDecay().predict_one([touch("email", 20)], at=at) == [1.0]  # clock skew: a touch after it
    assert PositionBased().predict_one(p[:1], at=at) == [1.0]
    assert split_cents(999, PositionBased().predict_one(p[:2], at=at)) == [500, 499]
    assert split_cents(1000, PositionBased().predict_one([*p, touch("email", 10)], at=at)) == [400, 100, 100, 400]
    assert Linear().predict_one(p, at=at) == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="half_life_days"):
        TimeDecay(half_life_days=0)
    with pytest.raises(ValueError, match="first and last"):
        PositionBased(first=0.7, last=0.7)


# --- money ----------------------------------------------------------------------------------------------


@given(st.integers(-(10**14), 10**14), st.lists(st.floats(0, 1e6), min_size=1, max_size=30))
def test_split_cents_conserves_and_stays_within_a_cent_of_the_quota(total: int, weights: list[float]) -> None:
    shares = split_cents(total, weights)
    assert sum(shares) == total
    assert shares == split_cents(total, weights)
    weight_sum = sum(weights)
    for share, w in zip(shares, weights, strict=True):
        quota = total * w / weight_sum if weight_sum else total / len(weights)
        assert abs(share - quota) <= 1 + abs(quota) * 1e-9


def test_split_cents_ties_go_to_the_earlier_touch_and_bad_weights_raise() -> None:
    assert split_cents(2, [1.0, 1.0, 1.0]) == [1, 1, 0]
    assert split_cents(1, [0.0, 0.0]) == [1, 0]
    with pytest.raises(ValueError, match="no weights"):
        split_cents(1, [])
    with pytest.raises(ValueError, match="non-negative"):
        split_cents(1, [1.0, -1.0])
    assert to_cents(Decimal("0.005")) == 0
    assert to_cents(Decimal("0.015")) == 2
    with pytest.raises(AttributionError):
        to_cents(float("inf"))


revenues = st.one_of(
    st.just(0.01),
    st.just(0.0),
    st.floats(0.01, 1e9).map(lambda r: round(r, 2)),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1e12"), places=2),
    st.integers(1, 10**9),
)
paths_strategy = st.lists(
    st.tuples(st.sampled_from(CHANNELS), st.floats(0, 29.9), st.sampled_from(["", "bf", "brand"])),
    min_size=0,
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(touches=paths_strategy, revenue=revenues, seed=st.integers(0, 3))
def test_every_models_credits_sum_to_the_revenue_to_the_cent(
    touches: list[tuple[str, float, str]], revenue: float | Decimal | int, seed: int
) -> None:
    store = TouchpointPaths(models=trained(every_model(), seed=seed, paths=20 * seed))
    for i, (channel, day, campaign) in enumerate(touches):
        store.add("p", touch(channel, day, f"s{i}", campaign))
    credits = store.convert("p", conversion_id="o", revenue=revenue, currency="EUR", at=T0 + timedelta(days=30))
    expected = to_cents(revenue)
    assert cents_by_model(credits) == {m.name: expected for m in store.attributors}
    assert all(
        c.revenue == expected / 100 and c.currency == "EUR" and c.event_at == T0 + timedelta(days=30) for c in credits
    )
    assert all(round(c.credit, 2) == c.credit for c in credits)
    for model in store.attributors:
        rows = [c for c in credits if c.model == model.name]
        assert [c.touch_index for c in rows] == sorted({c.touch_index for c in rows})
        assert all(c.model_version == model.model_version for c in rows)


# --- the store ------------------------------------------------------------------------------------------


def test_conversion_consumes_the_window_and_keeps_later_touches() -> None:
    store = TouchpointPaths()
    store.add("p", touch("display", 0))  # 31 days before the conversion: outside the window
    store.add("p", touch("email", 1))  # exactly 30 days before: inside
    credits = store.convert("p", conversion_id="o1", revenue=10, currency="USD", at=T0 + timedelta(days=31))
    touched = {(c.model, c.channel) for c in credits if c.channel != "baseline"}  # the incremental model's rest
    assert touched == {(m.name, "email") for m in store.attributors}
    assert "p" not in store
    store.add("p", touch("email", 40))
    store.add("p", touch("direct", 45.1))  # after the conversion (arrived early): kept for the next one
    credits = store.convert("p", conversion_id="o2", revenue=10, currency="USD", at=T0 + timedelta(days=45))
    assert {c.channel for c in credits} - {"baseline"} == {"email"}
    assert [t.channel for t in store["p"]] == ["direct"]


def test_add_is_idempotent_ordered_and_bounded() -> None:
    store = TouchpointPaths(lookback_days=10, max_touches=3)
    store.add("p", touch("email", 5, "a"))
    store.add("p", touch("display", 2, "b"))  # late: goes first
    store.add("p", touch("email", 5, "a"))  # redelivered
    assert [t.session_id for t in store["p"]] == ["b", "a"]
    store.add("p", touch("direct", 13, "c"))  # pushes b (11 days older) out of the window
    assert [t.session_id for t in store["p"]] == ["a", "c"]
    for i in range(5):
        store.add("p", touch("direct", 14 + i, f"d{i}"))
    assert [t.session_id for t in store["p"]] == ["d2", "d3", "d4"]
    assert len(store) == 1
    assert list(store) == ["p"]


def test_expire_learns_ended_paths_as_non_converting() -> None:
    markov, shapley = MarkovAttribution(), ShapleyAttribution()
    store = TouchpointPaths(models=[Linear(), markov, shapley])
    store.add("gone", touch("display", 0))
    store.add("gone", touch("email", 1))
    store.add("active", touch("email", 20))
    assert store.expire(T0 + timedelta(days=31)) == 0  # the last touch is exactly 30 days old
    assert store.expire(T0 + timedelta(days=31, seconds=1)) == 1
    assert "gone" not in store
    assert "active" in store
    assert (markov.paths_learned, markov.conversions_learned) == (1, 0)
    assert shapley.sets == {("display", "email"): [1, 0]}
    assert markov.counts[()] == {("display",): 1}


_OPS = st.sampled_from(["add", "add", "add", "convert", "merge", "forget", "copy", "expire", "expire"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_OPS, st.integers(0, 2), st.integers(0, 96), st.integers(0, 48)), max_size=60))
def test_expire_ends_exactly_the_paths_past_the_lookback(ops: list[tuple[str, int, int, int]]) -> None:
    """Whatever happened to the paths (touches out of order, conversions, merges, erasure, a restore from
    JSON or a pickle), ``expire`` ends exactly the paths whose last touch is past the lookback.

    Time moves on by up to 4 days an operation; a touch is up to 2 days late."""
    store = TouchpointPaths(models=[Linear()], lookback_days=3)
    now = T0
    for i, (op, person, advance, late) in enumerate(ops):
        pid, now = f"p{person}", now + timedelta(hours=advance)
        if op == "add":
            store.add(pid, Touch(channel="email", campaign="", at=now - timedelta(hours=late), session_id=str(i)))
        elif op == "convert":
            store.convert(pid, conversion_id=f"o{i}", revenue=1, currency="USD", at=now - timedelta(hours=late))
        elif op == "merge":
            store.merge(pid, f"p{(person + 1) % 3}")
        elif op == "forget":
            store.forget(pid)
        elif op == "copy":
            store = pickle.loads(pickle.dumps(store)) if i % 2 else TouchpointPaths.from_json(store.to_json())
        else:
            before = dict(store)
            ended = {p for p, path in before.items() if path[-1].at < now - store.lookback}
            assert store.expire(now) == len(ended)
            assert set(store) == set(before) - ended


def test_merge_interleaves_paths_in_time_order() -> None:
    store = TouchpointPaths()
    store.add("anon", touch("display", 1, "x"))
    store.add("anon", touch("email", 3, "y"))
    store.add("user", touch("paid_search", 2, "z"))
    store.add("user", touch("email", 3, "y"))  # the same session seen under both ids
    store.merge("anon", "user")
    store.merge("user", "user")
    assert "anon" not in store
    assert [t.session_id for t in store["user"]] == ["x", "z", "y"]
    credits = store.convert("user", conversion_id="o", revenue=3, currency="USD", at=T0 + timedelta(days=4))
    assert [c.channel for c in credits if c.model == "linear"] == ["display", "paid_search", "email"]
    store.merge("user", "third")  # remembered conversions move too: a redelivery is still recognised
    again = store.convert("third", conversion_id="o", revenue=3, currency="USD", at=T0 + timedelta(days=4))
    assert [c.channel for c in again if c.model == "linear"] == ["display", "paid_search", "email"]


def test_forget_erases_the_person() -> None:
    store = TouchpointPaths()
    store.add("p", touch("email", 1))
    store.convert("p", conversion_id="o1", revenue=5, currency="USD", at=T0 + timedelta(days=1))
    store.add("p", touch("display", 2))
    assert store.forget("p")
    assert not store.forget("p")
    assert "p" not in store
    assert b'"p"' not in store.to_json()
    credits = store.convert("p", conversion_id="o2", revenue=5, currency="USD", at=T0 + timedelta(days=2))
    assert {c.channel for c in credits} == {"direct"}  # nothing left: the no-touch rule


def test_a_conversion_without_touches_goes_to_direct_and_teaches_nothing() -> None:
    markov = MarkovAttribution()
    store = TouchpointPaths(models=[LastTouch(), markov], direct_channel="(none)")
    credits = store.convert("p", conversion_id="o", revenue=12.5, currency="USD", at=T0)
    assert [(c.channel, c.campaign, c.touch_index, c.credit) for c in credits] == [("(none)", "", 0, 12.5)] * 2
    assert markov.paths_learned == 0


def test_a_redelivered_conversion_gets_the_same_touches_and_teaches_nothing_twice() -> None:
    markov = MarkovAttribution(refit_every=1)
    store = TouchpointPaths(models=[Linear(), markov])
    store.add("p", touch("email", 1))
    store.add("p", touch("direct", 2))
    first = store.convert("p", conversion_id="o", revenue=7, currency="USD", at=T0 + timedelta(days=2))
    second = store.convert("p", conversion_id="o", revenue=7, currency="USD", at=T0 + timedelta(days=2))
    assert first == second
    assert markov.paths_learned == 1
    store.add("q", Touch(channel="email", campaign="", at=T0, session_id=""))
    store.add("q", Touch(channel="display", campaign="", at=T0, session_id=""))  # unknown: never the same one
    assert len(store["q"]) == 2
    store.convert("q", conversion_id="", revenue=1, currency="USD", at=T0 + timedelta(days=2))
    assert (
        store.convert("q", conversion_id="", revenue=1, currency="USD", at=T0 + timedelta(days=2))[0].channel
        == "direct"
    )
    store.expire(T0 + timedelta(days=40))  # the memory of conversions ends with the lookback
    assert store.conversions == {}


def test_same_input_gives_identical_credits() -> None:
    def run() -> list[AttributionCredit]:
        rng = random.Random(5)
        store = TouchpointPaths(models=every_model())
        out = []
        for i in range(400):
            person = f"p{rng.randint(0, 30)}"
            at = T0 + timedelta(hours=i)
            store.add(person, Touch(channel=rng.choice(CHANNELS), campaign="", at=at, session_id=str(i)))
            if rng.random() < 0.1:
                out += store.convert(
                    person, conversion_id=f"o{i}", revenue=rng.randint(1, 9999) / 100, currency="USD", at=at
                )
            if i % 24 == 0:
                store.expire(at)
        return out

    first = run()
    assert len({c.model_version for c in first if c.model == "markov"}) > 1
    assert first == run()


def test_state_round_trips_through_json_and_pickle() -> None:
    rng = random.Random(1)
    store = TouchpointPaths(models=every_model(), lookback_days=20)
    for i in range(300):
        person = f"p{rng.randint(0, 20)}"
        at = T0 + timedelta(hours=3 * i)
        store.add(person, Touch(channel=rng.choice(CHANNELS), campaign="c", at=at, session_id=str(i)))
        if rng.random() < 0.15:
            store.convert(person, conversion_id=f"o{i}", revenue=10, currency="USD", at=at)
        if i % 50 == 0:
            store.expire(at)
    copies = [TouchpointPaths.from_json(store.to_json()), pickle.loads(pickle.dumps(store))]
    for other in copies:
        assert other.to_json() == store.to_json()
        assert dict(other) == dict(store)
    later = T0 + timedelta(days=40)
    for s in (store, *copies):
        s.add("p3", Touch(channel="email", campaign="", at=later, session_id="new"))
    expected = store.convert("p3", conversion_id="x", revenue=99.99, currency="USD", at=later)
    for other in copies:
        assert other.convert("p3", conversion_id="x", revenue=99.99, currency="USD", at=later) == expected


def test_naive_times_are_utc_and_bad_settings_raise() -> None:
    naive = Touch(channel="email", campaign="", at=datetime(2026, 11, 1), session_id="s")  # noqa: DTZ001
    assert naive.at == T0
    paris = Touch(channel="email", campaign="", at=datetime.fromisoformat("2026-11-01T01:00:00+01:00"), session_id="s")
    assert paris.at == T0
    assert paris.to_dict()["at"] == "2026-11-01T00:00:00+00:00"
    with pytest.raises(ValueError, match="its own name"):
        TouchpointPaths(models=[MarkovAttribution(), MarkovAttribution(refit_every=1)])
    with pytest.raises(ValueError, match="lookback_days"):
        TouchpointPaths(lookback_days=0)
    with pytest.raises(ValueError, match="order"):
        MarkovAttribution(order=0)
    with pytest.raises(AttributionError):
        TouchpointPaths().convert("p", conversion_id="o", revenue=float("nan"), currency="USD", at=T0)


# --- records --------------------------------------------------------------------------------------------

times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
credits_strategy = st.builds(
    AttributionCredit,
    conversion_id=st.text(max_size=20),
    person_id=st.text(max_size=20),
    model=st.sampled_from(sorted(MODEL_CLASSES)),
    channel=st.text(max_size=20),
    campaign=st.text(max_size=20),
    touch_index=st.integers(0, 1000),
    credit=st.integers(-(10**12), 10**12).map(lambda c: c / 100),
    revenue=st.integers(-(10**12), 10**12).map(lambda c: c / 100),
    currency=st.sampled_from(["USD", "EUR"]),
    event_at=times,
    model_version=st.text(max_size=20),
)


@settings(max_examples=50)
@given(credits_strategy)
def test_credit_round_trips(credit: AttributionCredit) -> None:
    assert AttributionCredit.from_json(credit.to_json()) == credit


def test_columns_are_the_field_order() -> None:
    assert ATTRIBUTION_CREDIT_COLUMNS == (
        "conversion_id", "person_id", "model", "channel", "campaign", "touch_index", "credit", "revenue",
        "currency", "event_at", "model_version", "schema_version",
    )  # fmt: skip
    assert BUDGET_RECOMMENDATION_COLUMNS[:2] == ("day", "channel")
    assert orjson.loads(EXAMPLE_CREDIT.to_json())["event_at"] == "2026-11-01T10:00:00.123000+00:00"
