"""The ``persons`` view follows the person stage's decisions in the order it made them, not event time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from schemas.identity import EXAMPLE_CHANGE, EXAMPLE_LINK
from sinks import ClickHouseSink


def test_the_latest_decision_wins_even_with_an_older_event_time(warehouse_dsn: str) -> None:
    later, earlier = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    # First decided: d2 joins d1's person, on an event of 2 November ...
    link = dataclasses.replace(EXAMPLE_LINK, linked_at=later, seq=10)
    # ... then d2 is split off again, on an event of 1 November that arrived late.
    split = dataclasses.replace(EXAMPLE_CHANGE, old_person_id="a:d1", new_person_id="a:d2", changed_at=earlier, seq=11)
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        sink.insert("identity_links", [link], token="l")
        sink.insert("person_changes", [split], token="c")
        assert dict(sink.query("SELECT id, person_id FROM persons").result_rows) == {"d1": "a:d1", "d2": "a:d2"}
        relinked = dataclasses.replace(link, linked_at=earlier, seq=12)  # and linked once more, decided last
        sink.insert("identity_links", [relinked], token="l2")
        assert dict(sink.query("SELECT id, person_id FROM persons").result_rows) == {"d1": "a:d1", "d2": "a:d1"}
