"""Records revstream emits: warehouse rows and topic messages.

Field order is the ClickHouse column order (``sinks.migrations``). Empty string means "absent" for text
columns, as is usual in ClickHouse; ``revenue`` and ``sent_at`` are nullable because zero and absent differ.
``source`` names where the input came from (``topic:partition:offset`` in Kafka mode, ``file:line`` in
embedded mode), so any row can be traced to its original bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


@dataclass(slots=True, kw_only=True)
class EventRow:
    """One valid, de-duplicated, sessionised event: a row of ``events`` and a message on ``events``.

    A slotted dataclass rather than a pydantic model: it is built from an already validated event on the
    hot path, where a pydantic constructor cost more than the rest of the row's work. ``to_json`` and
    ``from_json`` are its wire form on Kafka (orjson; times as RFC 3339).

    >>> row = EventRow.from_json(EXAMPLE_ROW.to_json())
    >>> row == EXAMPLE_ROW, row.event_at.isoformat()
    (True, '2026-11-01T10:00:00.123000+00:00')
    """

    message_id: str
    type: str
    event: str
    anonymous_id: str
    user_id: str
    person_id: str
    session_id: str
    event_at: datetime
    received_at: datetime
    sent_at: datetime | None
    channel: str
    campaign: str
    utm_source: str
    utm_medium: str
    utm_term: str
    utm_content: str
    referrer: str
    page_url: str
    page_path: str
    page_title: str
    ip: str
    user_agent: str
    locale: str
    device_type: str
    os_name: str
    order_id: str
    revenue: float | None
    currency: str
    consent: dict[str, bool]
    properties: str
    traits: str
    source: str
    schema_version: int = SCHEMA_VERSION

    @property
    def device_key(self) -> str:
        return self.anonymous_id or f"user:{self.user_id}"

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> EventRow:
        return cls.from_fields(orjson.loads(data))

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> EventRow:
        """The row from its decoded JSON object (changed in place: the times are parsed)."""
        fields["event_at"] = datetime.fromisoformat(fields["event_at"])
        fields["received_at"] = datetime.fromisoformat(fields["received_at"])
        if fields["sent_at"] is not None:
            fields["sent_at"] = datetime.fromisoformat(fields["sent_at"])
        return cls(**fields)


@dataclass(slots=True, kw_only=True)
class ParsedEvent:
    """Stage 1 -> stage 2 (the device-keyed repartition): a row still to be sessionised, and its bytes.

    ``raw`` is text because an event that parsed is valid UTF-8; it is kept so that a duplicate found in
    stage 2 still reaches the failed stream with its original bytes.
    """

    row: EventRow
    raw: str

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> ParsedEvent:
        fields = orjson.loads(data)
        return cls(row=EventRow.from_fields(fields["row"]), raw=fields["raw"])


@dataclass(slots=True, frozen=True)
class Refused:
    """An input not processed because its consent denies ``purpose`` (or it names an erased id): counted per
    ``source`` (the input's coordinates, so a replay counts once), never stored."""

    message_id: str
    purpose: str
    event_at: datetime
    source: str


class FailedEvent(BaseModel):
    """An input that is not a valid event, with its original bytes, the reason and the stage."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    message_id: str
    stage: Annotated[str, Field(description="size | parse | validate | dedupe")]
    error: str
    raw: bytes
    source: str
    received_at: datetime
    schema_version: int = SCHEMA_VERSION


EVENT_COLUMNS = tuple(f.name for f in fields(EventRow))
FAILED_COLUMNS = tuple(FailedEvent.model_fields)

EXAMPLE_ROW = EventRow(
    message_id="m1", type="track", event="Order Completed", anonymous_id="a1", user_id="", person_id="a1",
    session_id="5f1c2b7a9d3e4c10", event_at=datetime(2026, 11, 1, 10, 0, 0, 123000, tzinfo=UTC),
    received_at=datetime(2026, 11, 1, 10, 0, 1, tzinfo=UTC), sent_at=None, channel="email",
    campaign="black-friday", utm_source="newsletter", utm_medium="email", utm_term="", utm_content="",
    referrer="", page_url="https://shop.example/checkout", page_path="/checkout", page_title="Checkout",
    ip="203.0.113.7", user_agent="Mozilla/5.0", locale="en-US", device_type="desktop", os_name="Mac OS",
    order_id="o1", revenue=42.5, currency="USD", consent={"analytics": True}, properties="{}", traits="{}",
    source="file:1",
)  # fmt: skip
