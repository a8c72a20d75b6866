"""The scoring stage: per-device features, purchase propensity, bots, engagement, shared by both runtimes.

It runs where sessions are made (the device-keyed stage), on a batch of valid rows at a time so that the
XGBoost challenger, when one is loaded, scores the whole batch in one call. Device features live in a
mapping the caller owns (a dict embedded, a changelogged Faust table in Kafka mode); the learned models
(:class:`ScoringStage`) are one per input partition and pickle whole as a checkpoint.

Per row: the device's feature snapshot; a bot check when the session's page count reaches 5, 10, 20, 40
or 80 (cheap, and a bot is then excluded from learning); the propensity score (the champion's, or the
challenger's for the A/B share of sessions); a ``high_propensity`` alert once per session above the
threshold, only where consent grants personalisation. When event time passes a session's end (30 minutes
quiet), the session is labelled and learned from, gets its engagement score, and becomes a ``sessions`` row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog

from models.scoring import Challenger, Champion, DeviceFeatures, PropensityLearner
from models.scoring.bots import BotDetector
from models.scoring.engagement import EngagementScorer
from schemas.alerts import Alert
from schemas.records import EventRow
from schemas.scores import ModelMetric, Score, SessionRecord

log = structlog.get_logger(__name__)

_BOT_CHECKS = frozenset({5.0, 10.0, 20.0, 40.0, 80.0})
# The challenger file is looked at (a stat) at most this often: once per batch took 1.6% of the worker's
# event loop at 1,000 events/s, and a retrained model need not arrive faster than this.
CHALLENGER_CHECK_SECONDS = 1.0


@dataclass
class ScoringUpdate:
    scores: list[Score] = field(default_factory=list)
    sessions: list[SessionRecord] = field(default_factory=list)
    metrics: list[ModelMetric] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def extend(self, other: ScoringUpdate) -> None:
        self.scores.extend(other.scores)
        self.sessions.extend(other.sessions)
        self.metrics.extend(other.metrics)
        self.alerts.extend(other.alerts)

    def tables(self) -> dict[str, list[object]]:
        return {
            "scores": list(self.scores),
            "sessions": list(self.sessions),
            "model_metrics": list(self.metrics),
            "alerts": list(self.alerts),
        }


class ScoringStage:
    """The learned scoring state of one partition (see the module docstring)."""

    _checked_at = -math.inf  # when the challenger file was last looked at (time.monotonic); not pickled

    def __init__(
        self,
        *,
        propensity_alert_threshold: float = 0.5,
        challenger_share: float = 0.1,
        challenger_path: Path | None = None,
    ) -> None:
        self.propensity_alert_threshold = propensity_alert_threshold
        self.challenger_share = challenger_share
        self.challenger_path = challenger_path
        self.learner = PropensityLearner(champion=Champion(challenger_share=challenger_share))
        self.bots = BotDetector()
        self.engagement = EngagementScorer()
        self.challenger: Challenger | None = None
        self._challenger_mtime = 0.0
        self._alerted: dict[str, None] = {}

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["challenger"] = None  # reloaded from its file, which is the source of truth
        state["_challenger_mtime"] = 0.0
        state.pop("_checked_at", None)
        return state

    def reload_challenger(self, *, now: float | None = None) -> None:
        """Hot-load the challenger when its file (written by ``revstream train``) appears or changes; the
        file is looked at once per ``CHALLENGER_CHECK_SECONDS`` at most (``now``: ``time.monotonic()``)."""
        path = self.challenger_path
        now = time.monotonic() if now is None else now
        if path is None or now - self._checked_at < CHALLENGER_CHECK_SECONDS:
            return
        self._checked_at = now
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime != self._challenger_mtime:
            self.challenger = Challenger.load(path)
            self._challenger_mtime = mtime
            log.info("challenger loaded", path=str(path), model_version=self.challenger.model_version)

    def process_batch(
        self,
        rows: Sequence[EventRow],
        features: MutableMapping[str, DeviceFeatures],
        *,
        clock: Callable[[], datetime],
    ) -> ScoringUpdate:
        update = ScoringUpdate()
        if not rows:
            return update
        started = time.perf_counter()
        snapshots = []
        for row in rows:
            key = row.device_key
            device = features.get(key) or DeviceFeatures()
            snapshots.append(device.update(row))
            features[key] = device  # reassigned so a Faust table writes its changelog
        challenger = self.challenger
        extra: Sequence[float | None] = (
            challenger.predict_batch(snapshots) if challenger is not None else [None] * len(rows)
        )
        version = challenger.model_version if challenger is not None else ""
        per_row_ms = (time.perf_counter() - started) * 1000 / len(rows)
        for row, snapshot, p in zip(rows, snapshots, extra, strict=True):
            t0 = time.perf_counter()
            bot = self._bot_check(row, snapshot, update)
            published = self.learner.observe(row, snapshot, bot=bot, challenger=p, challenger_version=version)
            if published is None:
                continue
            latency = per_row_ms + (time.perf_counter() - t0) * 1000
            score = published.to_score(row, scored_at=clock(), latency_ms=round(latency, 3))
            update.scores.append(score)
            self._propensity_alert(row, score, bot, update)
        watermark = max(r.event_at for r in rows)
        self.expire(watermark, update)
        return update

    def expire(self, watermark: datetime, update: ScoringUpdate) -> None:
        """Finish the sessions quiet since before ``watermark``: label, learn, engagement, ``sessions`` rows."""
        for done in self.learner.expire(watermark):
            record = done.record
            snapshot = record.features()
            record.engagement = round(self.engagement.score_one(snapshot), 2)
            if not record.bot:
                self.engagement.learn_one(snapshot)
                self.bots.learn_one(snapshot)
            update.sessions.append(record)
            self._alerted.pop(record.session_id, None)
        update.metrics.extend(self.learner.drain_metrics())

    def forget(self, ids: set[str]) -> None:
        """Erasure: drop the open sessions of these persons (their snapshots are about them)."""
        pending = self.learner.pending
        for session_id in [sid for sid, session in pending.items() if session.person_id in ids]:
            del pending[session_id]

    def _bot_check(self, row: EventRow, snapshot: dict[str, float], update: ScoringUpdate) -> bool:
        session = row.session_id
        if session in self.bots.flagged:
            return True
        if snapshot.get("page_views", 0.0) not in _BOT_CHECKS:
            return False
        alert = self.bots.process_one(
            snapshot, user_agent=row.user_agent, person_id=row.person_id, session_id=session, at=row.event_at
        )
        if alert is None:
            return False
        update.alerts.append(alert)
        return True

    def _propensity_alert(self, row: EventRow, score: Score, bot: bool, update: ScoringUpdate) -> None:
        threshold = self.propensity_alert_threshold
        if bot or score.score < threshold or row.session_id in self._alerted:
            return
        if not (row.consent.get("personalisation", True) and row.consent.get("marketing", True)):
            return  # a nudge to a shopper is personalisation and marketing: both must be granted
        self._alerted[row.session_id] = None
        update.alerts.append(
            Alert.create(
                kind="high_propensity",
                person_id=row.person_id,
                session_id=row.session_id,
                score=score.score,
                threshold=threshold,
                reasons=[f"{score.model} {score.score:.2f}"],
                action="personalise_offer",
                alerted_at=row.event_at,
                model=score.model,
                model_version=score.model_version,
            )
        )
