"""Behaviour models on simulated traffic against its ground truth: bots, engagement, churn, sentiment.

    python -m benchmarks.behaviour --json benchmarks/results/behaviour.json

Simulator traffic (``--users`` people over ``--days``, ``--seed``) goes through ingest exactly as the
pipeline runs it (``RowBuilder`` then ``Sessionizer``, in arrival order). Each session's rows are folded into
the feature snapshot the scoring models read (:class:`SessionFeatures`, a local re-implementation of the
snapshot keys, so this benchmark does not depend on the feature module), and then, row by row as a worker
would: the bot detector scores every row's snapshot and flags a session the first time it crosses its
threshold; the engagement scorer scores every row; unflagged rows go to the churn model (keyed by the
simulator's true person id: identity resolution is another model), whose labels are resolved by
``advance(latest event time - 1 hour)`` after every row, and its snapshots to the retention trigger. A
session ends after 30 minutes without events (event time); then, if it was not flagged, its final snapshot
teaches the engagement CDF and the bot detector's trees. Reported:

* ``bots``: precision and recall of the flagged sessions against the truth (a session is a bot's when its
  anonymousId is one of a bot's devices), how many events it took to flag, and the ROC AUC of the final
  score and of the Half-Space Trees score alone (the unsupervised part, without the rules);
* ``engagement``: the distribution of final scores of human sessions (each scored before it was learned,
  after the first 500), and how they relate to purchase (AUC and point-biserial correlation);
* ``churn``: the check-ins' labels resolved in event time; prequential ROC AUC, log loss and Brier score
  (probability predicted at check-in time, labels whose window closed inside the period, so both outcomes
  were possible), overall and after the model had learned 200 labels, next to the base rate, single-feature
  baselines and an oracle that knows whether each person has dropped out and their latent purchase rate
  (the ceiling on this traffic); each customer's risk at the end of the period against the truth (dropped
  out by then; no purchase in the holdout); retention alerts and the share that was right (no order within
  the horizon, per the truth's orders);
* ``sentiment``: sign agreement of feedback sentiment with the simulator's labels, plain VADER vs ours;
* ``latency_us``: p50/p99 of each call.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import math
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy.stats import rankdata

from benchmarks import figures_json
from models.ingest import RowBuilder, Sessionizer
from models.scoring.bots import BotDetector
from models.scoring.churn import ChurnLabel, ChurnModel, ChurnSnapshot
from models.scoring.engagement import EngagementScorer
from models.scoring.retention import RetentionTrigger
from models.scoring.sentiment import FeedbackSentiment
from models.simulator import SimulationConfig, simulate
from models.times import epoch_ms
from schemas.alerts import Alert
from schemas.records import EventRow

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
GAP_MS = 30 * 60_000
LATENESS = timedelta(hours=1)
WARMUP_SESSIONS = 500
WARMUP_LABELS = 200
_COUNTED = {
    "Product Viewed": "product_views",
    "Product List Viewed": "product_list_views",
    "Product Added": "cart_adds",
    "Product Removed": "cart_removes",
    "Checkout Started": "checkout_starts",
    "Checkout Failed": "checkout_failures",
    "Products Searched": "searches",
    "Element Clicked": "clicks",
    "Rage Click": "rage_clicks",
    "Dead Click": "dead_clicks",
}


class DeviceHistory:
    """A device's sessions and orders before the current session (for the history keys of the snapshot)."""

    __slots__ = ("last_visit_ms", "order_ms", "visit_ms")

    def __init__(self) -> None:
        self.visit_ms: list[int] = []
        self.order_ms: list[int] = []
        self.last_visit_ms = -1

    def keys(self, at: int) -> dict[str, float]:
        visits = self.visit_ms
        return {
            "visits_1h": float(len(visits) - bisect.bisect_left(visits, at - HOUR_MS)),
            "visits_7d": float(len(visits) - bisect.bisect_left(visits, at - 7 * DAY_MS)),
            "visits_30d": float(len(visits) - bisect.bisect_left(visits, at - 30 * DAY_MS)),
            "orders_30d": float(len(self.order_ms) - bisect.bisect_left(self.order_ms, at - 30 * DAY_MS)),
            "orders_total": float(len(self.order_ms)),
            "days_since_last_order": (at - self.order_ms[-1]) / DAY_MS if self.order_ms else 365.0,
            "days_since_last_visit": (at - self.last_visit_ms) / DAY_MS if self.last_visit_ms >= 0 else 365.0,
        }


class SessionFeatures:
    """One session's snapshot keys, folded row by row (the keys and meanings of the scoring snapshot)."""

    __slots__ = ("counts", "first_ms", "flag_events", "flagged", "last_ms", "orders", "person", "snapshot", "start_ms")

    def __init__(self, row: EventRow, history: DeviceHistory, person: str) -> None:
        at = epoch_ms(row.event_at)
        self.start_ms = self.first_ms = self.last_ms = at
        self.person = person
        self.flagged = False
        self.flag_events = 0
        self.orders = 0
        self.counts: dict[str, float] = dict.fromkeys(
            ("events", "page_views", "product_views", "product_list_views", "cart_adds", "cart_removes"), 0.0
        )
        self.counts |= dict.fromkeys(
            ("cart_value", "checkout_starts", "checkout_failures", "searches", "engaged_seconds"), 0.0
        )
        self.counts |= dict.fromkeys(("max_scroll_depth", "clicks", "rage_clicks", "dead_clicks", "errors"), 0.0)
        self.counts |= history.keys(at)
        self.counts[f"channel={row.channel}"] = 1.0
        self.counts[f"device={row.device_type or 'unknown'}"] = 1.0
        self.snapshot: dict[str, float] = {}

    def update(self, row: EventRow) -> dict[str, float]:
        at = epoch_ms(row.event_at)
        previous = self.last_ms
        self.first_ms, self.last_ms = min(self.first_ms, at), max(self.last_ms, at)
        c = self.counts
        c["events"] += 1.0
        name = row.event
        if row.type in ("page", "screen"):
            c["page_views"] += 1.0
        elif name in _COUNTED:
            c[_COUNTED[name]] += 1.0
            if name in ("Product Added", "Product Removed"):
                props = orjson.loads(row.properties)
                value = float(props.get("price") or 0.0) * float(props.get("quantity") or 1.0)
                c["cart_value"] = max(c["cart_value"] + (value if name == "Product Added" else -value), 0.0)
        elif name == "Page Engagement":
            c["engaged_seconds"] += float(orjson.loads(row.properties).get("engagement_time_ms") or 0.0) / 1000.0
        elif name == "Scroll Depth Reached":
            depth = float(orjson.loads(row.properties).get("depth") or 0.0)
            c["max_scroll_depth"] = max(c["max_scroll_depth"], min(depth, 100.0))
        elif name.endswith("Error"):
            c["errors"] += 1.0
        dwell = (self.last_ms - self.first_ms) / 1000.0
        c["dwell_seconds"] = dwell
        c["events_per_minute"] = c["events"] / max(dwell / 60.0, 1.0)
        c["seconds_since_last_event"] = max(at - previous, 0) / 1000.0 if c["events"] > 1 else 0.0
        self.snapshot = dict(c)
        return self.snapshot


def percentiles_us(samples: Sequence[int]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    a = np.asarray(samples, dtype=np.float64) / 1000.0
    return {
        "n": len(samples),
        "p50": round(float(np.percentile(a, 50)), 1),
        "p99": round(float(np.percentile(a, 99)), 1),
        "mean": round(float(a.mean()), 1),
    }


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """ROC AUC by the Mann-Whitney statistic (ties count half); None without both classes."""
    y = np.asarray(labels, dtype=bool)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return round(float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)), 4)


def log_loss(probas: Sequence[float], labels: Sequence[bool]) -> float:
    p = np.clip(np.asarray(probas, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, dtype=np.float64)
    return round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 4)


def rows(sim_lines: Iterable[bytes]) -> Iterable[EventRow]:
    """Valid, sessionised rows in arrival order, as the pipeline's two ingest stages produce them."""
    build, sessionize = RowBuilder(), Sessionizer()
    devices: dict[str, Any] = {}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for i, line in enumerate(sim_lines):
        row = build(line, source=f"sim:{i + 1}", received_at=now)
        if not isinstance(row, EventRow):
            continue
        state, out = sessionize(row, line, devices.get(row.device_key))
        devices[row.device_key] = state
        if isinstance(out, EventRow):
            yield out


class Timer:
    """Per-call wall times in nanoseconds, by name."""

    def __init__(self) -> None:
        self.samples: dict[str, list[int]] = defaultdict(list)

    def since(self, name: str, start_ns: int) -> None:
        self.samples[name].append(time.perf_counter_ns() - start_ns)


@dataclass
class Stream:
    """Everything the run produced: the models, per-session outcomes, churn labels and alerts."""

    bots: BotDetector = field(default_factory=BotDetector)
    engagement: EngagementScorer = field(default_factory=EngagementScorer)
    churn: ChurnModel = field(default_factory=lambda: ChurnModel(horizon_days=30.0))
    trigger: RetentionTrigger = field(default_factory=RetentionTrigger)
    timer: Timer = field(default_factory=Timer)
    finished: list[dict[str, Any]] = field(default_factory=list)
    labels: list[ChurnLabel] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    warm_at: datetime | None = None  # event time when the churn model had learned WARMUP_LABELS labels
    rows: int = 0


class Runner:
    """Drives the models over the rows as a worker would (see the module docstring)."""

    def __init__(self, truth: dict[str, Any]) -> None:
        self.out = Stream()
        self.bot_devices = {aid for bot in truth["bots"].values() for aid in bot["anonymous_ids"]}
        self.first_message_person = {
            s["first_message_id"]: s["person_id"] for s in truth["sessions"] if s["person_id"] is not None
        }
        self.device_person: dict[str, str] = truth["device_person"]
        self.histories: dict[str, DeviceHistory] = defaultdict(DeviceHistory)
        self.open: dict[str, tuple[SessionFeatures, str]] = {}
        self.latest_ms = 0

    def row(self, row: EventRow) -> None:
        out, timer = self.out, self.out.timer
        out.rows += 1
        at = epoch_ms(row.event_at)
        self.latest_ms = max(self.latest_ms, at)
        key = row.device_key
        opened = self.open.get(row.session_id)
        if opened is None:
            person = self.first_message_person.get(row.message_id) or self.device_person.get(row.anonymous_id, "")
            opened = self.open[row.session_id] = (SessionFeatures(row, self.histories[key], person), key)
        s = opened[0]
        x = s.update(row)
        if row.event == "Order Completed":
            self.histories[key].order_ms.append(at)
            s.orders += 1
        if not s.flagged:
            t0 = time.perf_counter_ns()
            score = out.bots.score_one(x, user_agent=row.user_agent)
            timer.since("bots.score_one", t0)
            if score >= out.bots.threshold:
                s.flagged, s.flag_events = True, int(x["events"])
        t0 = time.perf_counter_ns()
        out.engagement.score_one(x)
        timer.since("engagement.score_one", t0)
        if not s.flagged and s.person:
            self._churn(replace(row, person_id=s.person))
        wm = datetime.fromtimestamp((self.latest_ms - LATENESS // timedelta(milliseconds=1)) / 1000, UTC)
        t0 = time.perf_counter_ns()
        update = out.churn.advance(wm)
        timer.since("churn.advance", t0)
        out.labels.extend(update.labels)
        if out.warm_at is None and out.churn.n_labels >= WARMUP_LABELS:
            out.warm_at = wm
        for snap in update.snapshots:
            self._trigger(snap)
        if out.rows % 2000 == 0:
            self.finish(self.latest_ms - GAP_MS)
            gc.collect(1)

    def _churn(self, row: EventRow) -> None:
        t0 = time.perf_counter_ns()
        snap = self.out.churn.observe(row)
        self.out.timer.since("churn.observe", t0)
        if snap is not None:
            self.out.timer.since("churn.observe (returning a snapshot)", t0)
            self._trigger(snap)

    def _trigger(self, snap: ChurnSnapshot) -> None:
        t0 = time.perf_counter_ns()
        alert = self.out.trigger.process_one(snap, self.out.churn)
        self.out.timer.since("retention.process_one", t0)
        if alert is not None:
            self.out.alerts.append(alert)

    def finish(self, before_ms: int) -> None:
        """End the sessions whose latest event is before ``before_ms``; learn the unflagged ones."""
        out = self.out
        for sid in [sid for sid, (s, _) in self.open.items() if s.last_ms < before_ms]:
            s, key = self.open.pop(sid)
            x = s.snapshot
            history = self.histories[key]
            history.visit_ms.append(s.start_ms)
            history.last_visit_ms = max(history.last_visit_ms, s.last_ms)
            out.finished.append(
                {
                    "bot": key in self.bot_devices,
                    "flagged": s.flagged,
                    "flag_events": s.flag_events,
                    "score": out.bots.score_one(x),
                    "hst": out.bots.anomaly_score(x) if out.bots.n_learned >= out.bots.window_size else None,
                    "engagement": out.engagement.score_one(x) if out.engagement.n_sessions >= WARMUP_SESSIONS else None,
                    "purchased": s.orders > 0,
                }
            )
            if not s.flagged:
                t0 = time.perf_counter_ns()
                out.engagement.learn_one(x)
                out.timer.since("engagement.learn_one", t0)
                t0 = time.perf_counter_ns()
                out.bots.learn_one(x)
                out.timer.since("bots.learn_one", t0)


def bot_report(finished: list[dict[str, Any]]) -> dict[str, Any]:
    is_bot = [f["bot"] for f in finished]
    flagged = [f["flagged"] for f in finished]
    tp = sum(1 for b, f in zip(is_bot, flagged, strict=True) if b and f)
    fp = sum(1 for b, f in zip(is_bot, flagged, strict=True) if f and not b)
    fn = sum(1 for b, f in zip(is_bot, flagged, strict=True) if b and not f)
    trained = [f for f in finished if f["hst"] is not None]
    hst, hst_bot = [f["hst"] for f in trained], [f["bot"] for f in trained]
    flag_events = [f["flag_events"] for f in finished if f["bot"] and f["flagged"]]
    return {
        "sessions": len(finished),
        "bot_sessions": sum(is_bot),
        "flagged": sum(flagged),
        "precision": round(tp / max(tp + fp, 1), 4),
        "recall": round(tp / max(tp + fn, 1), 4),
        "false_positives": fp,
        "false_negatives": fn,
        "events_to_flag_median": float(np.median(flag_events)) if flag_events else None,
        "final_score_auc": auc([f["score"] for f in finished], is_bot),
        "hst_only_auc": auc(hst, hst_bot),
        "hst_only_bot_mean": round(float(np.mean([h for h, b in zip(hst, hst_bot, strict=True) if b] or [0])), 4),
        "hst_only_human_mean": round(float(np.mean([h for h, b in zip(hst, hst_bot, strict=True) if not b] or [0])), 4),
        "hst_only_recall_at_1pct_fpr": _recall_at_fpr(hst, hst_bot),
    }


def engagement_report(finished: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [f for f in finished if not f["bot"] and f["engagement"] is not None]
    if not scored:
        return {"human_sessions_scored": 0}
    scores = np.asarray([f["engagement"] for f in scored])
    bought = np.asarray([f["purchased"] for f in scored], dtype=np.float64)
    return {
        "human_sessions_scored": len(scored),
        "quantiles": {f"p{q}": round(float(np.percentile(scores, q)), 1) for q in (10, 25, 50, 75, 90)},
        "mean": round(float(scores.mean()), 1),
        "purchase_rate": round(float(bought.mean()), 4),
        "mean_score_purchasers": round(float(scores[bought == 1].mean()), 1) if bought.any() else None,
        "mean_score_others": round(float(scores[bought == 0].mean()), 1),
        "purchase_auc": auc(scores.tolist(), bought.astype(bool).tolist()),
        "purchase_point_biserial_r": round(float(np.corrcoef(scores, bought)[0, 1]), 4) if bought.any() else None,
    }


def prequential(labels: list[ChurnLabel]) -> dict[str, Any]:
    y = [label.churned for label in labels]
    p = [label.proba for label in labels]
    if not y:
        return {"labels": 0}
    base = float(np.mean(y))
    return {
        "labels": len(y),
        "churn_rate": round(base, 4),
        "auc": auc(p, y),
        "log_loss": log_loss(p, y),
        "log_loss_base_rate": log_loss([base] * len(y), y),
        "brier": round(float(np.mean((np.asarray(p) - np.asarray(y, dtype=float)) ** 2)), 4),
    }


def churn_report(out: Stream, truth: dict[str, Any], period_end: datetime) -> dict[str, Any]:
    churn = out.churn
    horizon = timedelta(days=churn.horizon_days)
    closed = [label for label in out.labels if label.at + horizon <= period_end]
    y = [label.churned for label in closed]
    warm = [label for label in closed if out.warm_at is not None and label.at >= out.warm_at]
    persons, customers = truth["persons"], truth["customers"]

    def oracle(label: ChurnLabel) -> float:
        """P(no order in the horizon) knowing whether the person is still alive and their purchase rate."""
        dropped = customers[label.person_id]["dropped_out_at"]
        if dropped is not None and datetime.fromisoformat(dropped) <= label.at:
            return 1.0
        return math.exp(-persons[label.person_id]["purchase_rate"] * churn.horizon_days)

    end_scores: dict[str, float] = {}
    for pid in churn.activities:
        risk = churn.predict_person(pid, period_end)
        if risk is not None and pid in customers:
            end_scores[pid] = risk
    dropout = {pid: persons[pid]["dropout_prob"] for pid in end_scores}
    median_dropout = float(np.median(list(dropout.values()))) if dropout else 0.0
    order_times: dict[str, list[datetime]] = defaultdict(list)
    for o in truth["orders"]:
        order_times[o["person_id"]].append(datetime.fromisoformat(o["session_started_at"]))
    judged = [  # an alert was right if the person then placed no order within the horizon
        not any(a.alerted_at < t <= a.alerted_at + horizon for t in order_times[a.person_id])
        for a in out.alerts
        if a.alerted_at + horizon <= period_end
    ]
    weights = churn._classifier.weights  # a benchmark may look inside
    return {
        "horizon_days": churn.horizon_days,
        "visit_snapshots": churn.n_snapshots,
        "checkins": churn.n_checkins,
        "labels_learned": churn.n_labels,
        "prequential": prequential(closed),
        "warm_from": out.warm_at.isoformat() if out.warm_at is not None else None,
        "prequential_after_warmup": prequential(warm),
        "oracle_auc": auc([oracle(label) for label in closed], y),
        "recency_only_auc": auc([label.features["days_since_last_order"] for label in closed], y),
        "days_since_previous_session_only_auc": auc(
            [label.features["days_since_previous_session"] for label in closed], y
        ),
        "customers_scored_at_end": len(end_scores),
        "end_auc_vs_dropped_out": auc(
            list(end_scores.values()), [not customers[pid]["alive_at_end"] for pid in end_scores]
        ),
        "end_auc_vs_no_holdout_purchase": auc(
            list(end_scores.values()), [customers[pid]["holdout_purchases"] == 0 for pid in end_scores]
        ),
        "end_auc_vs_true_dropout_prob_above_median": auc(
            list(end_scores.values()), [dropout[pid] > median_dropout for pid in end_scores]
        ),
        "retention_alerts": len(out.alerts),
        "retention_alerts_from_checkins": sum(1 for a in out.alerts if not a.session_id),
        "retention_alerts_judged": len(judged),
        "retention_alert_precision": round(float(np.mean(judged)), 4) if judged else None,
        "top_weights": {k: round(v, 3) for k, v in sorted(weights.items(), key=lambda kv: -abs(kv[1]))[:8]},
    }


def sentiment_report(feedback: list[dict[str, Any]]) -> dict[str, Any]:
    ours, plain = FeedbackSentiment(), FeedbackSentiment(lexicon=(), clauses=False)
    sign = {"positive": 1, "neutral": 0, "negative": -1}

    def agreement(f: Callable[[str], float]) -> float:
        hits = 0
        for item in feedback:
            score = f(item["text"])
            hits += (1 if score >= 0.05 else -1 if score <= -0.05 else 0) == sign[item["sentiment"]]
        return round(hits / max(len(feedback), 1), 4)

    def negative_recall(f: Callable[[str], float]) -> float:
        negative = [item for item in feedback if item["sentiment"] == "negative"]
        return round(sum(f(item["text"]) <= -0.05 for item in negative) / max(len(negative), 1), 4)

    return {
        "feedback": len(feedback),
        "agreement_vader": agreement(plain),
        "agreement_ours": agreement(ours),
        "negative_recall_vader": negative_recall(plain),
        "negative_recall_ours": negative_recall(ours),
    }


def run(users: int, days: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    sim = simulate(SimulationConfig(users=users, days=days, seed=seed))
    truth = sim.truth()
    period_end = datetime.fromisoformat(truth["period"]["end"])
    runner = Runner(truth)
    gc.disable()
    try:
        for row in rows(sim.collected_events()):
            runner.row(row)
        runner.finish(runner.latest_ms + 1)
        runner.out.labels.extend(runner.out.churn.advance(period_end - LATENESS).labels)
    finally:
        gc.enable()
    out = runner.out
    return {
        "traffic": {
            "users": users,
            "days": days,
            "seed": seed,
            "rows": out.rows,
            "sessions": truth["summary"]["sessions"],
            "bot_sessions": truth["summary"]["bot_sessions"],
            "orders": truth["summary"]["orders"],
            "seconds": round(time.perf_counter() - started, 1),
        },
        "bots": bot_report(out.finished),
        "engagement": engagement_report(out.finished),
        "churn": churn_report(out, truth, period_end),
        "sentiment": sentiment_report(truth["feedback"]),
        "latency_us": {name: percentiles_us(samples) for name, samples in sorted(out.timer.samples.items())},
    }


def _recall_at_fpr(scores: Sequence[float], labels: Sequence[bool], fpr: float = 0.01) -> float | None:
    """Recall at the score that only ``fpr`` of the negatives exceed."""
    negatives = sorted((s for s, y in zip(scores, labels, strict=True) if not y), reverse=True)
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    if not negatives or not positives:
        return None
    cut = negatives[max(math.floor(fpr * len(negatives)) - 1, 0)]
    return round(sum(s > cut for s in positives) / len(positives), 4)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.behaviour", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        **run(args.users, args.days, args.seed),
    }
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    print(figures_json(result, args.json), end="")
    return result


if __name__ == "__main__":
    main()
