"""Churn risk: activity and features, check-ins labelled in event time, the retention trigger, privacy."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from models.scoring.churn import ChurnLabel, ChurnModel, ChurnSnapshot
from models.scoring.retention import RetentionTrigger
from models.scoring.sentiment import FeedbackSentiment
from schemas.alerts import Alert
from schemas.records import EXAMPLE_ROW, EventRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def row(person: str, day: float, event: str = "Product", *, session: str | None = None, **changes: Any) -> EventRow:
    fields: dict[str, Any] = {"type": "page", "order_id": "", "revenue": None}
    if event == "Order Completed":
        fields = {"type": "track", "order_id": f"o-{person}-{day}", "revenue": 50.0}
    elif event != "Product":
        fields["type"] = "track"
    return replace(
        EXAMPLE_ROW,
        message_id=f"m-{person}-{event}-{day}",
        person_id=person,
        session_id=session if session is not None else f"s-{person}-{day}",
        event=event,
        event_at=T0 + day * DAY,
        **{**fields, **changes},
    )


def feedback(person: str, day: float, text: str) -> EventRow:
    return row(person, day, "Feedback Submitted", properties=orjson.dumps({"text": text, "rating": 3}).decode())


def outcomes(labels: list[ChurnLabel]) -> dict[tuple[str, float], bool]:
    return {(label.person_id, (label.at - T0) / DAY): label.churned for label in labels}


# --- labels in event time ----------------------------------------------------------------------------------


def test_an_order_within_the_horizon_labels_0_and_silence_labels_1() -> None:
    model = ChurnModel(horizon_days=30.0, checkin_days=7.0)
    model.observe(row("buyer", 0, "Order Completed"))
    model.observe(row("lapser", 0, "Order Completed"))
    update = model.advance(T0 + 1 * DAY)
    assert sorted((s.person_id, s.cause) for s in update.snapshots) == [("buyer", "checkin"), ("lapser", "checkin")]
    model.observe(row("buyer", 20, "Order Completed"))
    labels: list[ChurnLabel] = []
    for day in range(1, 41):  # a watermark moving day by day, as after every event
        labels += model.advance(T0 + day * DAY).labels
    got = outcomes(labels)
    assert got["buyer", 0] is False  # ordered on day 20, inside [0, 30]
    assert got["buyer", 7] is False
    assert got["lapser", 0] is True  # nothing by day 30
    assert got["lapser", 7] is True
    assert ("lapser", 14) not in got  # its window closes on day 44: still pending
    assert all(label.proba == 0.5 for label in labels if label.at == T0)  # predicted at check-in time: the prior


def test_the_horizon_boundary_is_inclusive_and_the_check_in_precedes_the_order() -> None:
    model = ChurnModel(horizon_days=30.0)
    model.observe(row("p", 0, "Order Completed"))
    model.advance(T0)
    model.observe(row("p", 30, "Order Completed"))  # exactly at the end of day 0's window
    got = outcomes(model.advance(T0 + 30 * DAY).labels)
    assert got["p", 0] is False


def test_labels_are_learned_when_the_window_closes_not_when_the_order_arrives() -> None:
    model = ChurnModel(horizon_days=30.0)
    model.observe(row("p", 0, "Order Completed"))
    model.advance(T0)
    model.observe(row("p", 5, "Order Completed"))
    assert model.advance(T0 + 5 * DAY).labels == []
    assert model.n_labels == 0
    assert outcomes(model.advance(T0 + 30 * DAY).labels)["p", 0] is False
    assert model.n_labels == 1


def test_a_check_in_taken_late_sees_an_order_that_already_arrived() -> None:
    model = ChurnModel(horizon_days=30.0, checkin_days=7.0)
    model.observe(row("p", 0, "Order Completed"))
    model.observe(row("p", 10, "Order Completed"))  # before any advance: the day-0 and day-7 check-ins are late
    update = model.advance(T0 + 45 * DAY)
    assert update.snapshots[0].features["orders_total"] == 1.0  # features as of the check-in, not of now
    got = outcomes(update.labels)
    assert got["p", 0] is False
    assert got["p", 7] is False
    assert got["p", 14] is True  # 14 + 30 = 44: no order after day 10


def test_a_late_order_does_not_label_check_ins_taken_after_it() -> None:
    model = ChurnModel(horizon_days=30.0, checkin_days=7.0)
    model.observe(row("p", 0, "Order Completed"))
    model.advance(T0 + 8 * DAY)  # check-ins at 0 and 7
    model.observe(row("p", 3, "Order Completed"))  # delivered late
    got = outcomes(model.advance(T0 + 40 * DAY).labels)
    assert got["p", 0] is False
    assert got["p", 7] is True  # day 3 is before day 7's window


def test_check_ins_stop_after_max_silence_and_resume_with_activity() -> None:
    model = ChurnModel(horizon_days=10.0, checkin_days=7.0, max_silence_days=20.0)
    model.observe(row("p", 0, "Order Completed"))
    days = [(s.at - T0) / DAY for s in model.advance(T0 + 100 * DAY).snapshots]
    assert days == [0, 7, 14]
    model.observe(row("p", 101))
    assert [(s.at - T0) / DAY for s in model.advance(T0 + 102 * DAY).snapshots] == [101]


def test_only_customers_get_snapshots_and_replays_count_once() -> None:
    model = ChurnModel()
    assert model.observe(row("p", 0)) is None  # a visitor, not a customer
    order = row("p", 1, "Order Completed")
    first = model.observe(order)
    assert first is not None
    assert first.cause == "order"
    assert model.observe(order) is None  # at-least-once redelivery
    assert model.observe(replace(order, message_id="other-id")) is None  # same order_id
    visit = model.observe(row("p", 3))
    assert visit is not None
    assert visit.cause == "session_start"
    assert visit.features["orders_total"] == 1.0
    assert visit.features["days_since_last_order"] == 2.0
    assert model.observe(row("p", 3.001, "Scroll Depth Reached", session="s-p-3")) is None  # nothing new


def test_features_count_frustration_trends_and_sessions() -> None:
    model = ChurnModel(frustration_days=30.0, trend_days=90.0)
    model.observe(row("p", 0, "Order Completed"))
    model.observe(row("p", 100, "Order Completed"))
    model.observe(row("p", 125, "Rage Click", session="s-x"))  # 35 days before: out of the window
    model.observe(row("p", 150, "Checkout Failed", session="s-y"))
    model.observe(row("p", 151, "JS Error", session="s-y"))
    snap = model.observe(row("p", 160, "Dead Click", session="s-z"))
    assert snap is not None
    x = snap.features
    assert (x["rage_clicks"], x["checkout_failures"], x["errors"], x["dead_clicks"]) == (0.0, 1.0, 1.0, 1.0)
    assert (x["orders_recent"], x["orders_previous"], x["orders_total"]) == (1.0, 1.0, 2.0)
    assert (x["days_since_last_order"], x["order_interval_days"]) == (60.0, 100.0)
    assert x["overdue"] == pytest.approx(0.6)
    assert x["days_since_previous_session"] == 10.0  # s-y started on day 150
    assert x["sessions_30d"] == 2.0


# --- sentiment ------------------------------------------------------------------------------------------------


def test_feedback_sentiment_has_the_right_sign() -> None:
    sentiment = FeedbackSentiment()
    assert sentiment("Checkout failed twice, giving up.") < -0.05
    assert sentiment("Site is so slow on my phone.") < -0.05  # "slow" is in the domain lexicon only
    assert sentiment("Smooth experience, will shop again.") > 0.05
    assert FeedbackSentiment(lexicon=(), clauses=False)("The coupon code does not work, very frustrating.") > 0
    assert sentiment("The coupon code does not work, very frustrating.") < 0  # negation kept inside its clause
    assert pickle.loads(pickle.dumps(sentiment))("Great, thanks!") == sentiment("Great, thanks!")


def test_negative_feedback_lowers_the_feature_and_raises_a_trained_models_risk() -> None:
    model = ChurnModel()
    model.observe(row("angry", 0, "Order Completed"))
    model.observe(row("happy", 0, "Order Completed"))
    angry = model.observe(feedback("angry", 1, "Page keeps freezing when I try to pay."))
    happy = model.observe(feedback("happy", 1, "Great prices and fast shipping, thanks."))
    assert angry is not None
    assert happy is not None
    assert angry.features["feedback_sentiment"] < 0 < happy.features["feedback_sentiment"]
    assert (angry.features["negative_feedback"], happy.features["negative_feedback"]) == (1.0, 0.0)
    for i in range(400):  # a shop where unhappy customers leave
        x = angry.features if i % 2 else happy.features
        model.learn_one(x, bool(i % 2))
    assert model.predict_proba_one(angry.features) > 0.8
    assert model.predict_proba_one(happy.features) < 0.2
    assert any(reason.startswith("feedback_sentiment") for reason in model.explain(angry.features))


# --- the retention trigger ----------------------------------------------------------------------------------


def snapshot(person: str, day: float, proba: float = 0.9) -> ChurnSnapshot:
    features = {"days_since_last_order": 40.0 + day, "orders_total": 1.0}
    return ChurnSnapshot(person_id=person, session_id="", at=T0 + day * DAY, cause="checkin", features=features,
                         proba=proba)  # fmt: skip


def test_retention_alerts_respect_threshold_cooldown_and_model_age() -> None:
    model = ChurnModel()
    trigger = RetentionTrigger(threshold=0.8, cooldown=timedelta(days=14), min_labels=0)
    assert trigger.process_one(snapshot("a", 0, proba=0.79), model) is None
    first = trigger.process_one(snapshot("a", 0), model)
    assert first is not None
    assert (first.kind, first.action, first.score, first.threshold) == ("churn_risk", "retention_offer", 0.9, 0.8)
    assert trigger.process_one(snapshot("a", 13), model) is None  # cooling down
    assert trigger.process_one(snapshot("b", 13), model) is not None  # per person
    assert trigger.process_one(snapshot("a", 14), model) is not None
    assert trigger.process_one(snapshot("a", 5), model) is None  # late: inside the last alert's window
    assert trigger.n_alerts == 3
    young = RetentionTrigger(threshold=0.8, min_labels=10)
    assert young.process_one(snapshot("c", 0), model) is None  # a model that has learned nothing yet


def test_alert_reasons_name_the_signals_that_raise_risk_and_ids_are_deterministic() -> None:
    model = ChurnModel()
    for i in range(300):
        x = {"days_since_last_order": 5.0 + 60.0 * (i % 2), "orders_total": 1.0 + (i % 3)}
        model.learn_one(x, bool(i % 2))
    trigger = RetentionTrigger(threshold=0.5, min_labels=100, max_reasons=1)
    alert = trigger.process_one(snapshot("a", 30), model)
    assert alert is not None
    assert alert.reasons == ["days_since_last_order 70 (raises risk)"]
    again = RetentionTrigger(threshold=0.5, min_labels=100, max_reasons=1).process_one(snapshot("a", 30), model)
    assert again is not None
    assert again.alert_id == alert.alert_id
    assert Alert.from_json(alert.to_json()) == alert


# --- privacy and identity ------------------------------------------------------------------------------------


def test_forget_erases_activity_pending_check_ins_and_cooldown() -> None:
    model, trigger = ChurnModel(), RetentionTrigger(threshold=0.0, min_labels=0)
    model.observe(row("p", 0, "Order Completed"))
    model.observe(row("q", 0, "Order Completed"))
    model.advance(T0 + 8 * DAY)
    trigger.process_one(snapshot("p", 0), model)
    assert model.forget("p")
    assert trigger.forget("p")
    assert not model.forget("p")
    assert not trigger.forget("p")
    assert "p" not in model.activities
    assert all(entry.person_id != "p" for entry in model.pending.values())
    labels = model.advance(T0 + 100 * DAY).labels
    assert {label.person_id for label in labels} == {"q"}
    assert model.predict_person("p", T0 + 100 * DAY) is None
    assert trigger.process_one(snapshot("p", 1), model) is not None  # no cooldown left either


def test_merge_folds_activity_and_pending_check_ins_into_the_surviving_person() -> None:
    model, trigger = ChurnModel(checkin_days=7.0), RetentionTrigger(threshold=0.0, min_labels=0)
    model.observe(row("anon", 0, "Order Completed"))
    model.observe(row("user", 2, "Order Completed"))
    model.advance(T0 + 3 * DAY)  # check-ins: anon at 0, user at 2
    trigger.process_one(snapshot("anon", 3), model)
    model.merge("anon", "user")
    trigger.merge("anon", "user")
    assert "anon" not in model.activities
    assert trigger.process_one(snapshot("user", 4), model) is None  # anon's cooldown carried over
    features = model.features(
        model.activities["user"], int((T0 + 5 * DAY - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
    )
    assert features is not None
    assert features["orders_total"] == 2.0
    assert features["tenure_days"] == 5.0
    model.observe(row("user", 20, "Order Completed"))  # labels both former people's check-ins 0
    got = outcomes(model.advance(T0 + 60 * DAY).labels)
    assert got["user", 0] is False
    assert got["user", 2] is False
    model.merge("nobody", "user")  # unknown source: nothing happens
    assert "user" in model.activities


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="windows"):
        ChurnModel(horizon_days=0.0)
    with pytest.raises(ValueError, match="prior"):
        ChurnModel(prior=1.0)


def test_a_trigger_pickled_before_it_moved_to_retention_still_loads() -> None:
    trigger = RetentionTrigger(threshold=0.5, min_labels=0)
    trigger.last_alert_ms["p"] = 7
    # protocol 0 names classes as text lines, so the module can be swapped without fixing lengths
    old = pickle.dumps(trigger, protocol=0).replace(b"models.scoring.retention", b"models.scoring.churn")
    assert b"models.scoring.churn" in old
    loaded = pickle.loads(old)
    assert isinstance(loaded, RetentionTrigger)
    assert (loaded.threshold, loaded.last_alert_ms) == (0.5, {"p": 7})


def test_a_row_is_recorded_under_the_person_identity_resolved_it_to() -> None:
    model = ChurnModel(horizon_days=30.0)
    snapshot = model.observe(row("anon-device", 0, "Order Completed"), person_id="person-1")
    assert snapshot is not None
    assert snapshot.person_id == "person-1"
    assert list(model.activities) == ["person-1"]
