"""The value stage shared by both runtimes, and the worker's checkpoint of it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from schemas.records import EXAMPLE_ROW, EventRow
from streams.app import ValueCheckpoint
from streams.pipeline import Pipeline, is_order
from streams.settings import Settings


def orders(n: int) -> list[EventRow]:
    return [
        dataclasses.replace(
            EXAMPLE_ROW,
            order_id=f"o{i}",
            person_id=f"p{i % 7}",
            revenue=20.0 + i,
            event_at=EXAMPLE_ROW.event_at + timedelta(days=i),
        )
        for i in range(n)
    ]


def test_only_completed_orders_with_revenue_count() -> None:
    assert is_order(EXAMPLE_ROW)
    assert not is_order(dataclasses.replace(EXAMPLE_ROW, revenue=None))
    assert not is_order(dataclasses.replace(EXAMPLE_ROW, event="Checkout Started"))


def test_value_is_idempotent_under_redelivery() -> None:
    pipeline = Pipeline(Settings())
    rows = orders(14)  # p3 buys o3 and o10
    for row in rows:
        pipeline.value(row)
    again = pipeline.value(rows[3])  # o3 redelivered
    assert again.values[0].frequency == 2
    assert again.values[0].monetary == (23.0 + 30.0) / 2


def test_checkpoint_round_trip_keeps_what_the_model_learned(tmp_path: Path) -> None:
    first = Pipeline(Settings())
    for row in orders(30):
        first.value(row)
    checkpoint = ValueCheckpoint(tmp_path / "value.pickle")
    checkpoint.save(first, offset=29)
    restored = Pipeline(Settings())
    assert checkpoint.restore(restored) == 29
    for person in ("p0", "p3", "p6"):
        assert restored.value_model.predict_one({"person_id": person}) == first.value_model.predict_one(
            {"person_id": person}
        )
    assert ValueCheckpoint(tmp_path / "missing.pickle").restore(Pipeline(Settings())) == -1
