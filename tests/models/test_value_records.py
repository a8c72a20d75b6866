"""Wire forms of the customer value records and of the per-person summary: any value survives a round trip.

(These would live under tests/schemas/; they sit here with the rest of issue #7 until the lead moves them.)
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from models.value.summary import CustomerSummary
from schemas.alerts import Alert
from schemas.value import CUSTOMER_VALUE_COLUMNS, HIGH_VALUE_ALERT_COLUMNS, CustomerValue, HighValueAlert

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
# hypothesis takes naive bounds and attaches the time zone itself.
times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
text = st.text(max_size=30)
scores = st.integers(0, 5)

values = st.builds(
    CustomerValue,
    person_id=text,
    recency_days=finite,
    frequency=st.integers(0, 10**6),
    monetary=finite,
    r_score=scores,
    f_score=scores,
    m_score=scores,
    segment=text,
    p_alive=st.floats(0.0, 1.0),
    expected_purchases=finite,
    expected_revenue=finite,
    currency=text,
    horizon_days=finite,
    model_version=text,
    computed_at=times,
)
alerts = st.builds(
    HighValueAlert,
    person_id=text,
    expected_revenue=finite,
    threshold=finite,
    currency=text,
    reasons=st.lists(text, max_size=5).map(tuple),
    alerted_at=times,
    model_version=text,
)


@settings(max_examples=50)
@given(values)
def test_customer_value_round_trips(value: CustomerValue) -> None:
    assert CustomerValue.from_json(value.to_json()) == value


@settings(max_examples=50)
@given(alerts)
def test_high_value_alert_round_trips(alert: HighValueAlert) -> None:
    assert HighValueAlert.from_json(alert.to_json()) == alert


@settings(max_examples=50)
@given(alerts)
def test_a_high_value_alert_is_published_in_the_shape_of_every_alert(alert: HighValueAlert) -> None:
    published = Alert.from_json(alert.as_alert().to_json())
    assert (published.kind, published.person_id, published.session_id) == ("high_value", alert.person_id, "")
    assert (published.score, published.threshold) == (alert.expected_revenue, alert.threshold)
    assert published.reasons == list(alert.reasons)
    assert published.alert_id == alert.as_alert().alert_id  # deterministic: a redo publishes the same id


def test_columns_follow_the_warehouse_conventions() -> None:
    assert CUSTOMER_VALUE_COLUMNS[0] == "person_id"
    assert "computed_at" in CUSTOMER_VALUE_COLUMNS
    assert "currency" in CUSTOMER_VALUE_COLUMNS
    assert "model_version" in HIGH_VALUE_ALERT_COLUMNS
    assert all(c == c.lower() and " " not in c for c in CUSTOMER_VALUE_COLUMNS + HIGH_VALUE_ALERT_COLUMNS)


@settings(max_examples=50)
@given(
    st.lists(
        st.tuples(st.integers(0, 10**13), st.floats(0.0, 1e6), st.text(max_size=8)),
        min_size=1,
        max_size=30,
    )
)
def test_summary_round_trips_and_counts_every_order(orders: list[tuple[int, float, str]]) -> None:
    at, revenue, order_id = orders[0]
    summary = CustomerSummary.first_order(at_ms=at, revenue=revenue, order_id=order_id)
    for at, revenue, order_id in orders[1:]:
        summary = summary.with_order(at_ms=at, revenue=revenue, order_id=order_id)
    assert CustomerSummary.from_json(summary.to_json()) == summary
    assert summary.orders == len(orders)
    assert summary.first_ms == min(o[0] for o in orders)
    assert summary.last_ms == max(o[0] for o in orders)
    assert math.isclose(summary.revenue, sum(o[1] for o in orders), rel_tol=1e-9, abs_tol=1e-6)
    assert 0.0 <= summary.t_x_days <= summary.age_days(now_ms=summary.last_ms)
