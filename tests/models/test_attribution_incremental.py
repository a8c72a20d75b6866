"""The incremental model: lift gets credit, the baseline gets the rest, and revenue is conserved to the cent."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.attribution import IncrementalAttribution, Touch, TouchpointPaths, to_cents

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CHANNELS = ("email", "display", "direct", "paid_search")


def touch(channel: str, hours: float, session: str) -> Touch:
    return Touch(channel=channel, campaign="", at=T0 + timedelta(hours=hours), session_id=session)


def simulate(store: TouchpointPaths, *, seed: int, persons: int = 400, lift: dict[str, float]) -> None:
    """Sessions of ``persons`` people; a session buys with 5%, raised in log-odds by its channel's ``lift``."""
    rng = random.Random(seed)
    for p in range(persons):
        hours = rng.uniform(0, 48)
        for s in range(rng.randint(1, 6)):
            channel = rng.choice(CHANNELS)
            store.add(f"p{p}", touch(channel, hours, f"{p}.{s}"))
            logit = -2.94 + lift.get(channel, 0.0)
            if rng.random() < 1 / (1 + 2.718281828**-logit):
                at = T0 + timedelta(hours=hours)
                store.convert(f"p{p}", conversion_id=f"o{p}.{s}", revenue=50.0, currency="USD", at=at)
            hours += rng.uniform(1, 72)
    store.expire(T0 + timedelta(days=400))


def test_a_channel_with_lift_gets_more_than_one_without_at_the_same_volume() -> None:
    model = IncrementalAttribution(refit_every=50)
    store = TouchpointPaths(models=[model])
    simulate(store, seed=1, persons=1500, lift={"email": 1.2})  # display: same volume, no lift
    touches, baseline = model.predict_with_baseline([touch("display", 0, "a"), touch("email", 1, "b")], at=T0)
    assert touches[1] > 2 * touches[0]
    assert baseline > 0
    only_display, base = model.predict_with_baseline([touch("display", 0, "a")], at=T0)
    assert only_display[0] < base  # without lift most of a display conversion is baseline
    assert model.predict_with_baseline([touch("direct", 0, "a")], at=T0)[0] == [0.0]


def test_the_store_emits_a_baseline_row_after_the_touches() -> None:
    model = IncrementalAttribution(refit_every=1)
    store = TouchpointPaths(models=[model])
    simulate(store, seed=2, lift={"email": 1.0})
    store.add("q", touch("direct", 0, "x"))
    store.add("q", touch("email", 1, "y"))
    credits = store.convert("q", conversion_id="o", revenue=99.99, currency="USD", at=T0 + timedelta(hours=1))
    assert [c.channel for c in credits] == ["email", "baseline"]  # direct is the counterfactual: no credit
    assert [c.touch_index for c in credits] == [1, 2]
    assert sum(to_cents(c.credit) for c in credits) == 9999
    assert credits[-1].campaign == ""
    assert {c.model_version for c in credits} == {model.model_version}


def test_learns_every_session_once_from_the_store() -> None:
    model = IncrementalAttribution()
    store = TouchpointPaths(models=[model])
    store.add("p", touch("display", 0, "a"))
    store.add("p", touch("email", 1, "b"))  # display did not convert
    store.add("p", touch("email", 1, "b"))  # redelivered: nothing
    store.convert("p", conversion_id="o", revenue=5, currency="USD", at=T0 + timedelta(hours=1))
    store.convert("p", conversion_id="o", revenue=5, currency="USD", at=T0 + timedelta(hours=1))
    store.add("p", touch("direct", 30, "c"))
    store.expire(T0 + timedelta(days=60))
    assert (model.trials_learned, model.conversions_learned) == (3, 1)


@settings(max_examples=30, deadline=None)
@given(
    touches=st.lists(st.tuples(st.sampled_from(CHANNELS), st.floats(0, 700)), min_size=0, max_size=10),
    cents=st.integers(0, 10**9),
    seed=st.integers(0, 2),
)
def test_touches_and_baseline_add_up_to_the_revenue_to_the_cent(
    touches: list[tuple[str, float]], cents: int, seed: int
) -> None:
    store = TouchpointPaths(models=[IncrementalAttribution(refit_every=7)])
    simulate(store, seed=seed, persons=60, lift={"email": 0.8, "paid_search": 0.4})
    for i, (channel, hours) in enumerate(touches):
        store.add("z", touch(channel, hours, f"z{i}"))
    credits = store.convert("z", conversion_id="o", revenue=cents / 100, currency="USD", at=T0 + timedelta(days=30))
    assert sum(to_cents(c.credit) for c in credits) == cents
    assert credits
    assert len({c.touch_index for c in credits}) == len(credits)


def test_deterministic_and_state_round_trips() -> None:
    def trained() -> tuple[IncrementalAttribution, TouchpointPaths]:
        model = IncrementalAttribution(refit_every=20)
        store = TouchpointPaths(models=[model])
        simulate(store, seed=3, lift={"email": 1.0})
        return model, store

    (model, store), (again, _) = trained(), trained()
    assert model.to_dict() == again.to_dict()
    path = [touch("display", 0, "a"), touch("email", 30, "b"), touch("paid_search", 31, "c")]
    expected = model.predict_with_baseline(path, at=T0)
    clone = pickle.loads(pickle.dumps(model))
    revived = IncrementalAttribution.from_dict(orjson.loads(orjson.dumps(model.to_dict())))
    for other in (clone, revived):
        assert other.predict_with_baseline(path, at=T0) == expected
        other.learn_trial(path, converted=True)  # the regression's state came along too
    model.learn_trial(path, converted=True)
    assert clone.to_dict() == revived.to_dict() == model.to_dict()
    assert TouchpointPaths.from_json(store.to_json()).to_json() == store.to_json()


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="half_lives_days"):
        IncrementalAttribution(half_lives_days=())
    with pytest.raises(ValueError, match="prior_variance"):
        IncrementalAttribution(prior_variance=0.0)


def test_a_pickle_of_the_sgd_version_resumes_from_its_averaged_coefficients() -> None:
    old = IncrementalAttribution.__new__(IncrementalAttribution)
    old.__setstate__({
        "half_lives_days": (1.0, 7.0), "reference_channel": "direct", "baseline_channel": "baseline",
        "learning_rate": 0.02, "l2": 0.0, "averaging": 3000, "refit_every": 1, "regression": object(),
        "averaged": {"": -3.0, "now:email": 1.2, "now:direct": 0.1}, "trials_learned": 900,
        "conversions_learned": 30, "learned_since_snapshot": 0, "n_snapshots": 2, "intercept": -3.0,
        "coefficients": {"now:email": 1.2, "now:direct": 0.1},
    })  # fmt: skip
    old.refit()
    assert (old.intercept, old.coefficients) == (-3.0, {"now:email": 1.2, "now:direct": 0.1})
    old.learn_trial([touch("email", 0, "a")], converted=True)
    old.refit()
    assert old.coefficients["now:email"] > 1.2  # learning goes on from there
    assert set(old.coefficients) == {"now:email", "now:direct"}


def test_draws_come_from_the_posterior_and_narrow_with_data() -> None:
    def spread(persons: int) -> tuple[float, float, IncrementalAttribution]:
        model = IncrementalAttribution(refit_every=1)
        simulate(TouchpointPaths(models=[model]), seed=4, persons=persons, lift={"email": 1.0})
        model.refit()
        rng = np.random.default_rng(0)
        lifts = []  # email's immediate lift over direct: the intercept and the now: terms alone are not identified
        for _ in range(400):
            drawn = model.draw(rng).coefficients
            lifts.append(drawn["now:email"] - drawn["now:direct"])
        return float(np.mean(lifts)), float(np.std(lifts)), model

    _, sd_small, _ = spread(150)
    mean_large, sd_large, model = spread(1500)
    assert sd_large < 0.5 * sd_small  # ten times the data: about a third of the spread
    contrast = np.zeros(len(model.mean))
    contrast[model.index["now:email"]], contrast[model.index["now:direct"]] = 1.0, -1.0
    assert mean_large == pytest.approx(float(contrast @ model.mean), abs=3 * sd_large / 20)  # 400 draws: sd / 20
    assert sd_large == pytest.approx(float(np.sqrt(contrast @ model.covariance @ contrast)), rel=0.15)
    lift = model.coefficients["now:email"] - model.coefficients["now:direct"]
    assert lift == pytest.approx(float(contrast @ model.mean))  # the model itself keeps predicting with the mean


def test_removal_effects_and_the_baseline_add_up_to_the_conversion_probability() -> None:
    model = IncrementalAttribution(refit_every=1)
    simulate(TouchpointPaths(models=[model]), seed=5, lift={"email": 1.0, "paid_search": 0.5})
    model.refit()
    drawn = model.draw(np.random.default_rng(1))
    path = [touch("paid_search", 0, "a"), touch("direct", 5, "b"), touch("email", 9, "c")]
    for m in (model, drawn):
        x = m.features(path)[-1]
        effects, baseline = m.removal_effects(x, {t.channel for t in path})
        assert set(effects) == {"paid_search", "email"}  # the reference is the counterfactual
        logit = m.intercept + sum(m.coefficients.get(k, 0.0) * v for k, v in x.items())
        assert sum(effects.values()) + baseline == pytest.approx(1 / (1 + np.exp(-logit)))
        touches, base = m.predict_with_baseline(path, at=T0)
        assert (sum(touches), base) == pytest.approx((sum(effects.values()), baseline))
    assert drawn.coefficients != model.coefficients
