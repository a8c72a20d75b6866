"""Bot detection: rules, the anomaly detector, alerts; and simulated bots against simulated people."""

from __future__ import annotations

import pickle
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from river import anomaly

from models.ingest import RowBuilder, Sessionizer
from models.scoring.bots import BOT_UA, HST_FEATURES, BotDetector, hst_features, is_bot_user_agent
from models.simulator import SimulationConfig, simulate
from schemas.alerts import Alert, alert_id
from schemas.records import EventRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HUMAN_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


def human(rng: random.Random) -> dict[str, float]:
    pages = float(rng.randint(1, 12))
    dwell = pages * rng.uniform(8.0, 60.0)
    return {
        "events": pages * rng.uniform(3.0, 6.0),
        "page_views": pages,
        "product_views": float(rng.randint(0, int(pages))),
        "dwell_seconds": dwell,
        "engaged_seconds": dwell * rng.uniform(0.3, 0.9),
        "max_scroll_depth": float(rng.choice((25, 50, 75, 100))),
        "clicks": float(rng.randint(0, 4)),
    }


def snapshots(rows: list[EventRow]) -> dict[str, tuple[dict[str, float], str, str]]:
    """Per session: the final snapshot keys the detector reads, its user agent, its anonymousId."""
    out: dict[str, tuple[dict[str, float], str, str]] = {}
    times: dict[str, list[datetime]] = defaultdict(list)
    for row in rows:
        x = out[row.session_id][0] if row.session_id in out else defaultdict(float)
        x["events"] += 1
        if row.type == "page":
            x["page_views"] += 1
        elif row.event == "Element Clicked":
            x["clicks"] += 1
        elif row.event == "Product Viewed":
            x["product_views"] += 1
        elif row.event == "Page Engagement":
            x["engaged_seconds"] += orjson.loads(row.properties)["engagement_time_ms"] / 1000
        elif row.event == "Scroll Depth Reached":
            x["max_scroll_depth"] = max(x["max_scroll_depth"], orjson.loads(row.properties)["depth"])
        times[row.session_id].append(row.event_at)
        x["dwell_seconds"] = (max(times[row.session_id]) - min(times[row.session_id])).total_seconds()
        out[row.session_id] = (x, row.user_agent, row.anonymous_id)
    return {sid: (dict(x), ua, aid) for sid, (x, ua, aid) in out.items()}


@pytest.fixture(scope="module")
def simulated() -> tuple[dict[str, tuple[dict[str, float], str, str]], set[str]]:
    sim = simulate(SimulationConfig(users=40, days=2, seed=4, bot_session_share=0.2))
    build, sessionize = RowBuilder(), Sessionizer()
    devices: dict[str, object] = {}
    rows = []
    for i, line in enumerate(sim.collected_events()):  # with receivedAt, so event times are true
        row = build(line, source=f"t:{i}", received_at=T0)
        assert isinstance(row, EventRow)
        state, out = sessionize(row, line, devices.get(row.device_key))  # type: ignore[arg-type]
        devices[row.device_key] = state
        assert isinstance(out, EventRow)
        rows.append(out)
    bot_devices = {aid for bot in sim.truth()["bots"].values() for aid in bot["anonymous_ids"]}
    return snapshots(rows), bot_devices


def test_simulated_bot_sessions_score_above_every_human_session(
    simulated: tuple[dict[str, tuple[dict[str, float], str, str]], set[str]],
) -> None:
    sessions, bot_devices = simulated
    detector = BotDetector(window_size=20)
    for x, _, aid in sessions.values():  # the trees learn people only, as the caller arranges
        if aid not in bot_devices:
            detector.learn_one(x)
    bots = [detector.score_one(x, user_agent=ua) for x, ua, aid in sessions.values() if aid in bot_devices]
    people = [detector.score_one(x, user_agent=ua) for x, ua, aid in sessions.values() if aid not in bot_devices]
    assert len(bots) >= 5
    assert len(people) >= 20
    assert min(bots) > max(people)
    assert min(bots) >= detector.threshold > max(people)
    disguised = [x for x, ua, aid in sessions.values() if aid in bot_devices and not BOT_UA.search(ua)]
    assert disguised, "half the simulated bot agents use a browser's user agent"
    assert all(detector.is_bot(x, user_agent=HUMAN_UA) for x in disguised)  # caught by behaviour alone


@pytest.mark.parametrize(
    ("user_agent", "is_bot"),
    [
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", True),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0", True),
        ("python-requests/2.32.3", True),
        ("curl/8.5.0", True),
        ("Scrapy/2.11.2 (+https://scrapy.org)", True),
        ("Mozilla/5.0 (Linux; Android 12; Cubot X50) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36", False),
        (HUMAN_UA, False),
        ("", False),
    ],
)
def test_known_bot_user_agents(user_agent: str, is_bot: bool) -> None:
    x = {"events": 3.0, "page_views": 1.0, "dwell_seconds": 20.0, "engaged_seconds": 10.0}
    assert BotDetector().is_bot(x, user_agent=user_agent) is is_bot


def test_rules_need_enough_pages_and_the_threshold_is_configurable() -> None:
    burst = {"events": 4.0, "page_views": 4.0, "dwell_seconds": 1.0}  # fast but too short to judge
    assert BotDetector().score_one(burst) == 0.0
    crawl = {"events": 6.0, "page_views": 6.0, "dwell_seconds": 3.0, "engaged_seconds": 2.0}
    assert BotDetector().score_one(crawl) == pytest.approx(0.9)  # machine timing only
    assert BotDetector().is_bot(crawl)
    assert not BotDetector(threshold=0.95).is_bot(crawl)
    assert BotDetector(min_seconds_per_page=0.5).score_one(crawl) == 0.0
    reader = {"events": 40.0, "page_views": 8.0, "dwell_seconds": 400.0, "engaged_seconds": 0.0}
    assert BotDetector().score_one(reader) == pytest.approx(0.9)  # pages and no human signal at all
    assert BotDetector().score_one({**reader, "max_scroll_depth": 25.0}) == 0.0


def test_anomaly_detector_ranks_after_warm_up_and_does_not_flag_alone_by_default() -> None:
    rng = random.Random(1)
    detector, eager = BotDetector(window_size=50), BotDetector(window_size=50, anomaly_weight=1.0)
    odd = {"events": 400.0, "page_views": 200.0, "dwell_seconds": 4000.0, "engaged_seconds": 3900.0,
           "max_scroll_depth": 100.0, "clicks": 1000.0, "product_views": 100.0}  # fmt: skip
    assert detector.anomaly_rank(odd) == 0.0  # not warmed up
    for _ in range(200):
        x = human(rng)
        detector.learn_one(x)
        eager.learn_one(x)
    typical = human(rng)
    assert detector.anomaly_score(odd) > detector.anomaly_score({**typical, "page_views": 6.0})
    assert detector.anomaly_rank(odd) > 0.99
    assert 0.0 < detector.score_one(odd) < detector.threshold  # suspicious, not flagged
    assert eager.is_bot(odd)
    assert any("half-space trees" in reason for reason in eager.reasons(odd))
    assert all(0.0 <= v <= 1.0 for v in hst_features(odd).values())


def test_process_one_alerts_once_per_session_with_a_deterministic_id() -> None:
    detector = BotDetector(remember_sessions=2)
    crawl = {"events": 30.0, "page_views": 30.0, "dwell_seconds": 15.0}
    at = T0 + timedelta(minutes=3)
    alert = detector.process_one(crawl, user_agent="curl/8.5.0", person_id="a1", session_id="s1", at=at)
    assert alert is not None
    assert (alert.kind, alert.action, alert.model, alert.session_id) == ("bot", "exclude_session", "bots", "s1")
    assert alert.score >= alert.threshold == 0.5
    assert alert.reasons[0] == "user agent curl/"
    assert alert.alert_id == alert_id(kind="bot", person_id="a1", session_id="s1", alerted_at=at)
    assert Alert.from_json(alert.to_json()) == alert
    assert detector.process_one(crawl, user_agent="", person_id="a1", session_id="s1", at=at) is None
    assert detector.process_one({"page_views": 1.0}, user_agent="", person_id="a2", session_id="s2", at=at) is None
    for sid in ("s3", "s4"):
        assert detector.process_one(crawl, user_agent="", person_id="a", session_id=sid, at=at) is not None
    assert list(detector.flagged) == ["s3", "s4"]  # bounded memory


def test_alert_ids_differ_by_kind_person_session_and_time() -> None:
    base = {"kind": "bot", "person_id": "a", "session_id": "s", "alerted_at": T0}
    ids = {
        alert_id(**base),  # type: ignore[arg-type]
        alert_id(**{**base, "kind": "churn_risk"}),  # type: ignore[arg-type]
        alert_id(**{**base, "person_id": "b"}),  # type: ignore[arg-type]
        alert_id(**{**base, "session_id": "t"}),  # type: ignore[arg-type]
        alert_id(**{**base, "alerted_at": T0 + timedelta(milliseconds=1)}),  # type: ignore[arg-type]
    }
    assert len(ids) == 5
    assert alert_id(**base) == alert_id(**base)  # type: ignore[arg-type]


def test_a_window_walked_into_the_trees_at_its_end_scores_as_walking_each_session_at_once() -> None:
    rng = random.Random(3)
    sessions = [human(rng) for _ in range(130)]
    probes = [human(rng) for _ in range(20)]
    detector = BotDetector(window_size=25)
    eager = anomaly.HalfSpaceTrees(
        n_trees=10, height=8, window_size=25, limits=dict.fromkeys(HST_FEATURES, (0.0, 1.0)), seed=42
    )
    for i, x in enumerate(sessions, 1):
        detector.learn_one(x)
        eager.learn_one(hst_features(x))
        if i >= 25:
            assert [detector.anomaly_score(p) for p in probes] == [eager.score_one(hst_features(p)) for p in probes]
    assert detector._window  # 130 sessions: the last five wait for their window's end


def test_the_pickled_detector_resumes_mid_window_and_reuses_the_trees_pickle() -> None:
    rng = random.Random(4)
    detector, straight = BotDetector(window_size=25), BotDetector(window_size=25)
    for _ in range(60):
        x = human(rng)
        detector.learn_one(x)
        straight.learn_one(x)
    blob = pickle.dumps(detector)
    cached = detector._trees_pickle
    assert cached is not None
    pickle.dumps(detector)
    assert detector._trees_pickle is cached  # the trees did not change: their pickle is reused
    restored = pickle.loads(blob)
    for _ in range(40):
        x = human(rng)
        restored.learn_one(x)
        straight.learn_one(x)
    probe = human(rng)
    assert restored.n_learned == straight.n_learned == 100
    assert restored.anomaly_score(probe) == straight.anomaly_score(probe) > 0.0
    assert restored.ranks.n == straight.ranks.n


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "python-requests/2.31.0",
        "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 12; Cubot X30) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0",
    ],
)
def test_the_memoised_user_agent_check_answers_as_the_pattern(user_agent: str) -> None:
    expected = BOT_UA.search(user_agent) is not None
    assert is_bot_user_agent(user_agent) is expected
    assert is_bot_user_agent(user_agent) is expected  # from memory
    clean = {"page_views": 5.0, "dwell_seconds": 600.0, "max_scroll_depth": 50.0, "clicks": 3.0}
    assert (BotDetector().score_one(clean, user_agent=user_agent) >= 0.98) is expected
