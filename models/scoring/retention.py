"""Retention alerts: a churn-risk snapshot above a threshold becomes an offer, once per cooldown."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from models.scoring.churn import MODEL, MODEL_VERSION, ChurnSnapshot
from models.times import MS, epoch_ms
from schemas.alerts import Alert

if TYPE_CHECKING:
    from models.scoring.churn import ChurnModel


class RetentionTrigger:
    """A churn-risk alert with a retention offer when a customer's snapshot crosses ``threshold``.

    Feed it every snapshot: :meth:`ChurnModel.observe`'s and the check-ins of :meth:`ChurnModel.advance`.
    At most one alert per person per ``cooldown`` (event time: an offer needs time to work, and a late
    snapshot never re-alerts inside the window). No alert before the model has learned ``min_labels``
    examples (its prior is not a risk). ``reasons`` are the model's top ``max_reasons`` risk signals.

    >>> from datetime import UTC, datetime
    >>> from models.scoring.churn import ChurnModel
    >>> trigger, model = RetentionTrigger(threshold=0.4, min_labels=0), ChurnModel()
    >>> x = {"days_since_last_order": 45.0, "orders_total": 1.0}
    >>> snap = ChurnSnapshot(person_id="p1", session_id="s1", at=datetime(2026, 1, 1, tzinfo=UTC),
    ...                      cause="checkin", features=x, proba=0.5)
    >>> alert = trigger.process_one(snap, model)
    >>> alert.kind, alert.action, alert.score, trigger.process_one(snap, model)   # then a cooldown
    ('churn_risk', 'retention_offer', 0.5, None)
    """

    def __init__(
        self,
        *,
        threshold: float = 0.8,
        cooldown: timedelta = timedelta(days=14),
        min_labels: int = 200,
        max_reasons: int = 3,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.min_labels = min_labels
        self.max_reasons = max_reasons
        # learned state
        self.last_alert_ms: dict[str, int] = {}
        self.n_alerts = 0

    def predict_one(self, snapshot: ChurnSnapshot) -> bool:
        return snapshot.proba >= self.threshold

    def process_one(self, snapshot: ChurnSnapshot, model: ChurnModel) -> Alert | None:
        """The alert this snapshot raises, or None (below threshold, model too young, or cooling down)."""
        if not self.predict_one(snapshot) or model.n_labels < self.min_labels:
            return None
        at_ms = epoch_ms(snapshot.at)
        last = self.last_alert_ms.get(snapshot.person_id)
        if last is not None and at_ms < last + self.cooldown // MS:
            return None
        self.last_alert_ms[snapshot.person_id] = at_ms
        self.n_alerts += 1
        reasons = model.explain(snapshot.features, top=self.max_reasons) or [f"churn risk {snapshot.proba:.2f}"]
        return Alert.create(
            kind="churn_risk",
            person_id=snapshot.person_id,
            session_id=snapshot.session_id,
            score=snapshot.proba,
            threshold=self.threshold,
            reasons=reasons,
            action="retention_offer",
            alerted_at=snapshot.at,
            model=MODEL,
            model_version=MODEL_VERSION,
        )

    def forget(self, person_id: str) -> bool:
        return self.last_alert_ms.pop(person_id, None) is not None

    def merge(self, src: str, dst: str) -> None:
        last = self.last_alert_ms.pop(src, None)
        if last is not None and src != dst:
            self.last_alert_ms[dst] = max(last, self.last_alert_ms.get(dst, last))
