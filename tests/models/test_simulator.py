"""The traffic simulator: determinism, the configured rates, truth/event consistency, noise, validation."""

from __future__ import annotations

import dataclasses
import io
import math
import random
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import models.simulator as simulator_package
from models.channels import ChannelClassifier
from models.simulator import (
    Funnel,
    Simulation,
    SimulationConfig,
    SimulationConfigError,
    simulate,
    spend_ndjson,
    truth_json,
    write_ndjson,
)
from models.simulator.config import PAID_CHANNELS
from models.simulator.formats import iso_ms, uuid4
from models.simulator.noise import INVALID_KINDS, KINDS

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HOUR_MS = 3_600_000


def _ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


@dataclasses.dataclass(frozen=True)
class Row:
    """The fields of an emitted event the tests look at (whole parsed events would not fit in memory)."""

    received: int
    type: str
    event: str | None
    message_id: str
    anonymous_id: str
    user_id: str | None
    timestamp: int
    sent_at: int
    properties: dict[str, Any]
    context: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class World:
    sim: Simulation
    lines: list[bytes]
    rows: list[Row]
    truth: dict[str, Any]

    def human_sessions(self) -> list[dict[str, Any]]:
        return [s for s in self.truth["sessions"] if not s["bot"]]


_KEEP_PROPS = frozenset({"Order Completed", "Checkout Started", "Product Added", "Cart Viewed"})


def _row(received: int, line: bytes) -> Row:
    ev = orjson.loads(line)
    name = ev.get("event")
    ctx = ev["context"]
    return Row(
        received=received,
        type=ev["type"],
        event=name,
        message_id=ev["messageId"],
        anonymous_id=ev["anonymousId"],
        user_id=ev.get("userId"),
        timestamp=_ms(ev["timestamp"]),
        sent_at=_ms(ev["sentAt"]),
        properties=ev.get("properties", {}) if name in _KEEP_PROPS else {},
        context={k: ctx[k] for k in ("ip", "userAgent", "consent", "traits", "campaign", "library") if k in ctx},
    )


@pytest.fixture(scope="module")
def world() -> World:
    sim = simulate(SimulationConfig(users=1200, days=30, seed=11))
    timed = list(sim.timed_events())
    rows = [_row(received, line) for received, line in timed]
    return World(sim=sim, lines=[line for _, line in timed], rows=rows, truth=sim.truth())


NOISY = SimulationConfig(users=300, days=14, seed=5, malformed_rate=0.05)


@pytest.fixture(scope="module")
def noisy() -> tuple[Simulation, list[tuple[int, bytes]]]:
    sim = simulate(NOISY)
    return sim, list(sim.timed_events())


# -- determinism -------------------------------------------------------------------------------------------


def test_same_seed_gives_same_bytes() -> None:
    config = SimulationConfig(users=150, days=7, seed=3, malformed_rate=0.03)
    a, b = simulate(config), simulate(config)
    assert list(a.events()) == list(b.events())
    assert a.spend() == b.spend()
    assert truth_json(a) == truth_json(b)
    assert list(a.events()) == list(a.events()), "a second pass over the same simulation differs"


def test_different_seed_gives_different_bytes() -> None:
    a = simulate(SimulationConfig(users=150, days=7, seed=3))
    b = simulate(SimulationConfig(users=150, days=7, seed=4))
    assert list(a.events()) != list(b.events())
    assert truth_json(a) != truth_json(b)


# -- the shape of an event ---------------------------------------------------------------------------------


def test_events_are_single_json_objects_with_the_common_fields(world: World) -> None:
    assert world.lines
    for line in world.lines:
        assert b"\n" not in line
        assert line.startswith(b"{")
        assert line.endswith(b"}")
    for line in world.lines[:3000]:
        ev = orjson.loads(line)
        assert ev["type"] in {"track", "identify", "page", "alias"}
        assert ISO_MS.match(ev["timestamp"])
        assert ISO_MS.match(ev["sentAt"])
        assert ev["context"]["library"] == {"name": "revstream-sim", "version": "1"}
        assert ev["context"]["device"]["type"] in {"desktop", "mobile", "tablet"}
        assert {"ip", "userAgent", "locale", "page", "os"} <= ev["context"].keys()
        if ev["type"] == "page":
            assert ev["properties"] == ev["context"]["page"]
        if ev["type"] == "alias":
            assert ev["previousId"] == ev["anonymousId"]
    assert len({r.message_id for r in world.rows}) == len(world.rows), "messageIds must be unique"


def test_landing_pages_carry_utm_or_referrer(world: World) -> None:
    first = {s["first_message_id"]: s for s in world.human_sessions()}
    landing = {}
    for line in world.lines:
        ev = orjson.loads(line)
        if ev["messageId"] in first:
            landing[ev["messageId"]] = ev
    assert len(landing) == len(first)
    classify = ChannelClassifier(site_hosts=["shop.example.com"])
    for mid, session in first.items():
        ev = landing[mid]
        assert ev["type"] == "page"
        page, channel = ev["properties"], session["channel"]
        utm = ev["context"].get("campaign", {})
        found = classify(utm_source=utm.get("source", ""), utm_medium=utm.get("medium", ""), referrer=page["referrer"])
        assert found == channel, (found, session)
        if session["campaign"] is not None:
            assert "utm_source=" in page["url"]
            assert f"utm_campaign={session['campaign']}" in page["url"]
            assert ev["context"]["campaign"]["name"] == session["campaign"]
        else:
            assert "utm_" not in page["url"]
            assert "campaign" not in ev["context"]
        if channel in {"organic_search", "organic_social", "referral"}:
            assert page["referrer"].startswith("https://")
        if channel == "direct":
            assert page["referrer"] == ""


# -- the configured rates ----------------------------------------------------------------------------------


def test_purchase_rate_matches_the_latent_probabilities(world: World) -> None:
    sessions = world.human_sessions()
    bought = sum(s["purchased"] for s in sessions)
    assert 0.02 <= bought / len(sessions) <= 0.04
    expected = sum(s["purchase_probability"] for s in sessions)
    sd = math.sqrt(sum(s["purchase_probability"] * (1 - s["purchase_probability"]) for s in sessions))
    assert abs(bought - expected) < 4 * sd


def test_funnel_reach_matches_the_configured_funnel(world: World) -> None:
    f = world.sim.config.funnel

    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    not_bought = [s for s in world.human_sessions() if not s["purchased"]]
    for stage, share in enumerate((f.product_view, f.add_to_cart, f.cart_view, f.checkout)):
        reached = [s for s in not_bought if s["funnel_depth"] >= stage]
        shift = [f.intent_slope * (logit(s["purchase_probability"]) - logit(f.reference_probability)) for s in reached]
        probs = [1 / (1 + math.exp(-(logit(share) + x))) for x in shift]
        observed = sum(s["funnel_depth"] > stage for s in reached)
        sd = math.sqrt(sum(p * (1 - p) for p in probs))
        assert abs(observed - sum(probs)) < 4 * sd + 1, f"funnel stage {stage}"


def test_funnel_events_match_the_truth(world: World) -> None:
    sessions = world.human_sessions()
    names = Counter(r.event for r in world.rows if r.type == "track")
    assert names["Order Completed"] == sum(s["purchased"] for s in sessions)
    assert names["Checkout Started"] == sum(s["funnel_depth"] >= 4 for s in sessions)
    assert names["Cart Viewed"] == sum(s["funnel_depth"] >= 3 for s in sessions)
    assert names["Product Added"] >= sum(s["funnel_depth"] >= 2 for s in sessions)
    assert names["Product Viewed"] >= sum(s["funnel_depth"] >= 1 for s in sessions)
    for name in ("Scroll Depth Reached", "Page Engagement", "Element Clicked", "Rage Click", "Dead Click"):
        assert names[name] > 0, name
    for name in ("JS Error", "Checkout Failed", "Feedback Submitted", "Products Searched", "Product Removed"):
        assert names[name] > 0, name


def test_channel_mix_matches_the_configuration(world: World) -> None:
    sessions = world.human_sessions()
    mix = world.sim.config.channel_mix
    total = sum(mix.values())
    counts = Counter(s["channel"] for s in sessions)
    for channel, weight in mix.items():
        assert abs(counts[channel] / len(sessions) - weight / total) < 0.02, channel


def test_devices_per_person_match_the_configuration(world: World) -> None:
    persons = world.truth["persons"].values()
    counts = Counter(len(p["devices"]) for p in persons)
    assert set(counts) <= {1, 2, 3}
    weights = world.sim.config.device_counts
    for n, weight in enumerate(weights, start=1):
        assert abs(counts[n] / len(persons) - weight / sum(weights)) < 0.05, n
    types = Counter(d["type"] for d in world.truth["devices"].values() if not d["person_id"].startswith("bot_"))
    assert types["mobile"] > types["desktop"] > types["tablet"] > 0


# -- truth against events ----------------------------------------------------------------------------------


def test_truth_is_consistent_with_the_events(world: World) -> None:
    truth = world.truth
    assert {r.anonymous_id for r in world.rows} <= truth["device_person"].keys()
    completed = {r.properties["order_id"]: r for r in world.rows if r.event == "Order Completed"}
    orders = {o["order_id"]: o for o in truth["orders"]}
    assert completed.keys() == orders.keys()
    for order_id, row in completed.items():
        assert row.properties["revenue"] == orders[order_id]["revenue"]
        assert row.properties["currency"] == orders[order_id]["currency"]
        assert truth["device_person"][row.anonymous_id] == orders[order_id]["person_id"] or (
            row.anonymous_id in truth["shared_devices"]
        )
    ids = {r.message_id for r in world.rows}
    assert {s["first_message_id"] for s in truth["sessions"]} <= ids
    assert {c["message_id"] for c in truth["consent_changes"]} == {
        r.message_id for r in world.rows if r.event == "Segment Consent Preference Updated"
    }
    assert {f["message_id"] for f in truth["feedback"]} == {
        r.message_id for r in world.rows if r.event == "Feedback Submitted"
    }
    summary = truth["summary"]
    assert summary["lines"] == len(world.lines)
    assert summary["events"] == len(world.lines)
    assert summary["orders"] == len(completed)
    assert summary["sessions"] == len(truth["sessions"])
    assert orjson.loads(truth_json(world.sim)) == orjson.loads(orjson.dumps(truth))


def test_customer_truth_follows_the_customer_process(world: World) -> None:
    truth = world.truth
    per_person = Counter(o["person_id"] for o in truth["orders"])
    sessions_by_person: defaultdict[str, list[str]] = defaultdict(list)
    for s in truth["sessions"]:
        if s["person_id"] is not None:
            sessions_by_person[s["person_id"]].append(s["started_at"])
    for person_id, customer in truth["customers"].items():
        assert customer["purchases"] == per_person[person_id]
        dropped = customer["dropped_out_at"]
        if dropped is not None:
            assert not customer["alive_at_holdout_end"]
            assert max(sessions_by_person[person_id], default=dropped) <= dropped
            if not customer["alive_at_end"]:
                assert customer["holdout_purchases"] == 0
    assert sum(c["holdout_purchases"] for c in truth["customers"].values()) > 0
    assert any(not c["alive_at_end"] for c in truth["customers"].values())
    for request in truth["erasure_requests"]:
        assert max(sessions_by_person[request["person_id"]], default="") <= request["requested_at"]
        assert request["id"] in request["user_ids"] or request["id"] in request["anonymous_ids"]
    p = next(iter(truth["persons"].values()))
    assert {"purchase_rate", "dropout_prob", "mean_spend", "devices", "user_ids", "emails", "consent"} <= p.keys()
    assert set(truth["channel_effects"]) == set(world.sim.config.channel_mix)


def test_identity_is_not_trivial(world: World) -> None:
    truth = world.truth
    assert truth["shared_devices"], "no shared devices"
    homes = Counter(p["home_ip"] for p in truth["persons"].values())
    assert max(homes.values()) >= 2, "no household shares an IP"
    offices = defaultdict(set)
    for p in truth["persons"].values():
        if p["office_ip"] is not None:
            offices[p["office_ip"]].add(p["household"])
    assert any(len(households) >= 2 for households in offices.values()), "no office shared across households"
    kinds = Counter(k for d in truth["duplicate_persons"] for k in d["kinds"])
    assert kinds["second_account"] > 0
    assert kinds["guest_checkout"] > 0
    guests = [r for r in world.rows if r.event == "Order Completed" and r.user_id is None]
    assert guests
    for row in guests:
        assert row.properties["email"] == row.context["traits"]["email"]
    identified = {r.user_id for r in world.rows if r.type == "identify"}
    all_ids = {u for p in truth["persons"].values() for u in p["user_ids"]}
    assert identified
    assert identified <= all_ids
    assert any(len(p["emails"]) > 1 for p in truth["persons"].values())


def test_consent_context_follows_the_person(world: World) -> None:
    truth = world.truth
    persons = truth["persons"]
    changed = {c["person_id"] for c in truth["consent_changes"]}
    without = sum(p["consent"] is None for p in persons.values()) / len(persons)
    assert 0.02 < without < 0.12
    for row in world.rows[:20000]:
        owner = truth["device_person"][row.anonymous_id]
        if owner.startswith("bot_") or owner in changed or row.anonymous_id in truth["shared_devices"]:
            continue
        assert row.context.get("consent") == persons[owner]["consent"]


def test_timestamps_are_sorted_with_small_disorder(world: World) -> None:
    received = [r.received for r in world.rows]
    assert received == sorted(received)
    skew = {aid: d["clock_skew_ms"] for aid, d in world.truth["devices"].items()}
    corrected_max = raw_max = 0
    worst_corrected = worst_raw = 0
    for row in world.rows:
        corrected = row.received - (row.sent_at - row.timestamp)
        # Segment's correction removes the client clock skew (up to the network latency)
        assert abs(row.timestamp - skew[row.anonymous_id] - corrected) <= 600
        worst_corrected = max(worst_corrected, corrected_max - corrected)
        corrected_max = max(corrected_max, corrected)
        if skew[row.anonymous_id] == 0:
            worst_raw = max(worst_raw, raw_max - row.timestamp)
            raw_max = max(raw_max, row.timestamp)
    assert 0 < worst_corrected <= 10_000
    assert 0 < worst_raw <= 10_000
    start = world.sim.config.start
    first, last = min(r.timestamp for r in world.rows), max(r.timestamp for r in world.rows)
    assert first >= start.timestamp() * 1000 - 2 * HOUR_MS
    assert last <= (world.sim.config.end + timedelta(hours=2)).timestamp() * 1000
    assert any(s != 0 for s in skew.values())


def test_bots_have_machine_timing_and_never_scroll(world: World) -> None:
    truth = world.truth
    bot_devices = {aid for b in truth["bots"].values() for aid in b["anonymous_ids"]}
    assert bot_devices
    assert any(s["bot"] for s in truth["sessions"])
    pages: defaultdict[str, list[int]] = defaultdict(list)
    for row in world.rows:
        if row.anonymous_id in bot_devices:
            assert row.event not in {"Scroll Depth Reached", "Page Engagement", "Element Clicked"}
            if row.type == "page":
                pages[row.anonymous_id].append(row.timestamp)
    for times in pages.values():
        gaps = [b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False) if b - a < 60_000]
        if len(gaps) >= 5:
            mean = sum(gaps) / len(gaps)
            assert mean < 1000
            assert max(abs(g - mean) for g in gaps) < 0.2 * mean + 20
    assert any(b["bot_like_user_agent"] for b in truth["bots"].values())


def test_spend_covers_every_day_channel_and_campaign(world: World) -> None:
    from schemas import MarketingSpend

    spend = world.sim.spend()
    config = world.sim.config
    days = {(config.start + timedelta(days=d)).date().isoformat() for d in range(config.days)}
    assert {(r["date"], r["channel"]) for r in spend} == {(d, c) for d in days for c in PAID_CHANNELS}
    keys = [(r["date"], r["channel"], r["campaign"]) for r in spend]
    assert len(keys) == len(set(keys))
    for r in spend:
        MarketingSpend.model_validate(r)
        assert r["currency"] == "USD"
        assert r["impressions"] >= r["clicks"] >= 0
        assert r["cost"] >= 0
        assert r["cost"] == round(r["cost"], 2)
    sessions = Counter(
        (s["started_at"][:10], s["channel"], s["campaign"]) for s in world.truth["sessions"] if s["campaign"]
    )
    clicks = {(r["date"], r["channel"], r["campaign"]): r["clicks"] for r in spend}
    for key, n in sessions.items():
        assert clicks[key] >= n, key
    email = sum(r["cost"] for r in spend if r["channel"] == "email")
    search = sum(r["cost"] for r in spend if r["channel"] == "paid_search")
    assert 0 < email < search


# -- noise -------------------------------------------------------------------------------------------------


def test_every_noise_kind_appears_and_is_recorded(noisy: tuple[Simulation, list[tuple[int, bytes]]]) -> None:
    sim, timed = noisy
    malformed = sim.truth()["malformed"]
    assert set(malformed["counts"]) == set(KINDS)
    for kind in KINDS:
        assert malformed["counts"][kind] > 0, kind
        assert len(malformed["message_ids"][kind]) == malformed["counts"][kind]
    lines = [line for _, line in timed]
    copies = Counter(lines)
    assert sum(n - 1 for n in copies.values()) == malformed["counts"]["duplicate"]
    truncated = 0
    late: dict[str, int] = {}
    for line in lines:
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            truncated += 1
            continue
        if isinstance(ev.get("timestamp"), str) and "messageId" in ev:
            late[ev["messageId"]] = _ms(ev["sentAt"]) - _ms(ev["timestamp"])
    assert truncated == malformed["counts"]["truncated_json"]
    assert all(late[m] >= HOUR_MS for m in malformed["message_ids"]["late"])
    assert all(late[m] >= 20_000 for m in malformed["message_ids"]["out_of_order"])
    rate = sum(malformed["counts"].values()) / sim.truth()["summary"]["events"]
    assert 0.03 < rate < 0.07


def test_no_noise_when_the_rate_is_zero(world: World) -> None:
    malformed = world.truth["malformed"]
    assert all(n == 0 for n in malformed["counts"].values())
    assert all(not ids for ids in malformed["message_ids"].values())
    assert len(set(world.lines)) == len(world.lines)


def test_noise_leaves_the_clean_events_byte_identical(noisy: tuple[Simulation, list[tuple[int, bytes]]]) -> None:
    sim, timed = noisy
    touched = {m for ids in sim.truth()["malformed"]["message_ids"].values() for m in ids}
    clean = simulate(dataclasses.replace(NOISY, malformed_rate=0.0))
    noisy_lines = {line for _, line in timed}
    kept = [line for line in clean.events() if orjson.loads(line)["messageId"] not in touched]
    assert len(kept) > 0.9 * len(noisy_lines)
    assert all(line in noisy_lines for line in kept)


# -- validation against the schemas ------------------------------------------------------------------------


def test_every_clean_event_validates(world: World) -> None:
    from schemas import EventError, parse_event

    failures: list[tuple[bytes, EventError]] = []
    for line in world.lines:
        try:
            parse_event(line)
        except EventError as e:
            failures.append((line[:200], e))
    assert not failures, failures[:3]


def test_exactly_the_invalid_kinds_fail_validation(noisy: tuple[Simulation, list[tuple[int, bytes]]]) -> None:
    from schemas import EventError, parse_event

    sim, timed = noisy
    counts = sim.truth()["malformed"]["counts"]
    failed = 0
    for _, line in timed:
        try:
            parse_event(line)
        except EventError:
            failed += 1
    assert failed == sum(counts[k] for k in INVALID_KINDS)


# -- formats, helpers, config ------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_uuid4_matches_the_standard_library(seed: int) -> None:
    a, b = random.Random(seed), random.Random(seed)
    assert uuid4(a) == str(uuid.UUID(int=b.getrandbits(128), version=4))


@given(st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999))
def test_iso_ms_matches_datetime(ms: int) -> None:
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert iso_ms(ms) == when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert _ms(iso_ms(ms)) == ms


def test_ndjson_helpers_and_progress(tmp_path: Path) -> None:
    config = SimulationConfig(users=120, days=3, seed=9)
    people: list[int] = []
    sim = simulate(config, progress=people.append)
    assert sum(people) == config.users
    lines: list[int] = []
    path = tmp_path / "events.ndjson"
    count = write_ndjson(sim, path, progress=lines.append)
    assert count == sum(lines) > 0
    data = path.read_bytes()
    assert data.endswith(b"\n")
    assert data.split(b"\n")[:-1] == list(sim.events())
    buffer = io.BytesIO()
    assert write_ndjson(sim, buffer) == count
    assert buffer.getvalue() == data
    spend = spend_ndjson(sim).splitlines()
    assert [orjson.loads(line) for line in spend] == sim.spend()
    campaigns = {(r["channel"], r["campaign"]) for r in sim.spend()}
    assert len(spend) == config.days * len(campaigns)


def test_an_empty_world_is_allowed() -> None:
    sim = simulate(SimulationConfig(users=0, days=2))
    assert list(sim.events()) == []
    assert sim.truth()["summary"]["sessions"] == 0
    assert len(sim.spend()) > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"users": -1}, "users"),
        ({"days": 0}, "days"),
        ({"malformed_rate": 0.9}, "malformed_rate"),
        ({"start": datetime(2026, 11, 1)}, "UTC"),  # noqa: DTZ001 - a naive datetime is the point
        ({"channel_mix": {"tv": 1.0}}, "unknown"),
        ({"bot_session_share": 1.5}, "bot_session_share"),
        ({"spend_q": 1.0}, "spend_q"),
    ],
)
def test_config_rejects_bad_settings(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SimulationConfigError, match=message):
        SimulationConfig(**changes)


def test_config_is_frozen_and_recorded() -> None:
    config = SimulationConfig(users=10, funnel=Funnel(product_view=0.5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.users = 11  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.channel_mix["email"] = 1.0  # type: ignore[index]
    assert hash(config) == hash(SimulationConfig(users=10, funnel=Funnel(product_view=0.5)))
    assert config != SimulationConfig(users=10)
    recorded = config.to_dict()
    assert orjson.loads(orjson.dumps(recorded)) == recorded
    assert recorded["funnel"]["product_view"] == 0.5
    assert recorded["start"] == "2026-11-01T00:00:00Z"


def test_the_package_docstring_documents_every_setting() -> None:
    doc = simulator_package.__doc__ or ""
    missing = [f.name for f in dataclasses.fields(SimulationConfig) if f"``{f.name}``" not in doc]
    missing += [f.name for f in dataclasses.fields(Funnel) if f"``{f.name}``" not in doc]
    assert not missing


def _events(sim: Simulation) -> Iterator[dict[str, Any]]:
    for line in sim.events():
        yield orjson.loads(line)


def test_small_worlds_keep_their_promises_across_seeds() -> None:
    for seed in range(3):
        sim = simulate(SimulationConfig(users=40, days=5, seed=seed))
        truth = sim.truth()
        aids = {ev["anonymousId"] for ev in _events(sim)}
        assert aids <= truth["device_person"].keys()
        assert truth["summary"]["lines"] == sum(1 for _ in sim.events())
