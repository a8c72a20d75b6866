"""The Segment spec: common fields and the six call types, parsed with orjson and validated once.

Follows https://segment.com/docs/connections/spec/common/ : every call carries ``messageId``, an
``anonymousId`` or a ``userId``, client ``timestamp`` and ``sentAt``, and a ``context``. Unknown fields
anywhere are kept (``extra="allow"``), never rejected, so newer SDKs pass through unchanged.

Limits are Segment's: 32 KB an event, 500 KB a batch. Clock skew is corrected as Segment does:
``timestamp = receivedAt - (sentAt - originalTimestamp)``.

>>> ev = parse_event(b'{"type":"track","event":"Signed Up","messageId":"m1","anonymousId":"a1",'
...                  b'"timestamp":"2026-11-01T10:00:00Z","sentAt":"2026-11-01T10:00:05Z"}')
>>> ev.event, ev.anonymous_id
('Signed Up', 'a1')
>>> from datetime import datetime, UTC
>>> ev.event_at(datetime(2026, 11, 1, 10, 0, 2, tzinfo=UTC)).isoformat()
'2026-11-01T09:59:57+00:00'
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from schemas.ecommerce import COMMERCE_PROPERTIES, CommerceProperties
from schemas.errors import EventError

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _timestamp(value: object) -> datetime:
    # One Python validator instead of pydantic's datetime parsing: pydantic would read a bare number as
    # Unix seconds (Segment timestamps are ISO 8601 strings), and a single Python call per field is
    # measurably cheaper on the ingest hot path than a before- and an after-validator.
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            msg = f"invalid ISO 8601 timestamp {value[:40]!r}"
            raise ValueError(msg) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        msg = "timestamps must be ISO 8601 strings"
        raise ValueError(msg)  # noqa: TRY004 - pydantic turns ValueError, not TypeError, into a field error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    elif parsed.tzinfo is not UTC:
        parsed = parsed.astimezone(UTC)
    if not _EARLIEST <= parsed < _LATEST:
        msg = f"timestamp {parsed.isoformat()} is outside 2000-2100"
        raise ValueError(msg)
    return parsed


Timestamp = Annotated[datetime, BeforeValidator(_timestamp, json_schema_input_type=str)]
Id = Annotated[str, Field(min_length=1, max_length=256)]


class SegmentModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class PageContext(SegmentModel):
    url: str | None = None
    path: str | None = None
    referrer: str | None = None
    title: str | None = None
    search: str | None = None


class Campaign(SegmentModel):
    """UTM parameters as analytics.js parses them into ``context.campaign``."""

    source: str | None = None
    medium: str | None = None
    name: str | None = None
    term: str | None = None
    content: str | None = None


class Device(SegmentModel):
    id: str | None = None
    type: str | None = None
    manufacturer: str | None = None
    model: str | None = None


class Os(SegmentModel):
    name: str | None = None
    version: str | None = None


class Consent(SegmentModel):
    """Segment Consent Management: ``{"categoryPreferences": {"analytics": true, ...}}``."""

    category_preferences: dict[str, bool] = Field(default_factory=dict)


class Context(SegmentModel):
    ip: str | None = None
    user_agent: str | None = None
    locale: str | None = None
    timezone: str | None = None
    page: PageContext | None = None
    campaign: Campaign | None = None
    device: Device | None = None
    os: Os | None = None
    consent: Consent | None = None
    traits: dict[str, Any] | None = None
    library: dict[str, Any] | None = None


class BaseEvent(SegmentModel):
    """Fields common to every call."""

    message_id: Id
    anonymous_id: Id | None = None
    user_id: Id | None = None
    timestamp: Timestamp | None = None
    original_timestamp: Timestamp | None = None
    sent_at: Timestamp | None = None
    received_at: Timestamp | None = None
    context: Context = Field(default_factory=Context)
    integrations: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _has_identity(self) -> BaseEvent:
        if self.anonymous_id is None and self.user_id is None:
            msg = "either anonymousId or userId is required"
            raise ValueError(msg)
        return self

    @property
    def device_key(self) -> str:
        """The key that sessions and deduplication are kept under: the device, else the user."""
        if self.anonymous_id is not None:
            return self.anonymous_id
        return f"user:{self.user_id}"

    def event_at(self, received_at: datetime) -> datetime:
        """Event time with the client's clock skew removed, as Segment computes ``timestamp``."""
        original = self.timestamp or self.original_timestamp
        if original is None:
            return received_at
        if self.sent_at is None:
            return original
        return received_at - (self.sent_at - original)


class TrackEvent(BaseEvent):
    type: Literal["track"]
    event: Annotated[str, Field(min_length=1, max_length=200)]
    properties: dict[str, Any] = Field(default_factory=dict)

    @cached_property
    def commerce(self) -> CommerceProperties | None:
        """Typed properties for e-commerce spec events (``Order Completed`` ...), else ``None``."""
        model = COMMERCE_PROPERTIES.get(self.event)
        return None if model is None else model.model_validate(self.properties)


class IdentifyEvent(BaseEvent):
    type: Literal["identify"]
    traits: dict[str, Any] = Field(default_factory=dict)


class PageEvent(BaseEvent):
    type: Literal["page"]
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class ScreenEvent(BaseEvent):
    type: Literal["screen"]
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class AliasEvent(BaseEvent):
    type: Literal["alias"]
    previous_id: Id
    user_id: Id


class GroupEvent(BaseEvent):
    type: Literal["group"]
    group_id: Id
    traits: dict[str, Any] = Field(default_factory=dict)


Event = Annotated[
    TrackEvent | IdentifyEvent | PageEvent | ScreenEvent | AliasEvent | GroupEvent,
    Field(discriminator="type"),
]
_EVENT = TypeAdapter[Event](Event)
_CALL_TYPES = frozenset({"track", "identify", "page", "screen", "alias", "group"})


def describe(error: ValidationError, *, prefix: str = "", limit: int = 3) -> str:
    """One line naming the first few invalid fields, for the failed stream and the CLI."""
    parts = []
    for item in error.errors(include_url=False)[:limit]:
        loc = item["loc"][1:] if item["loc"] and item["loc"][0] in _CALL_TYPES else item["loc"]
        where = ".".join(str(p) for p in loc)
        parts.append(f"{prefix}{where or 'event'}: {item['msg'].removeprefix('Value error, ')}")
    more = error.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def validate_event(data: object) -> Event:
    """Validate an already-decoded object (a dict from a batch); raises :class:`EventError`."""
    if not isinstance(data, dict):
        msg = f"an event must be a JSON object, not {type(data).__name__}"
        raise EventError(msg, stage="validate")
    try:
        event = _EVENT.validate_python(data)
    except ValidationError as e:
        raise EventError(describe(e), stage="validate") from e
    if isinstance(event, TrackEvent):
        try:
            _ = event.commerce
        except ValidationError as e:
            raise EventError(describe(e, prefix="properties."), stage="validate") from e
    return event


def parse_event(raw: bytes | str) -> Event:
    """Parse one event from its wire bytes; raises :class:`EventError` naming the stage and the cause.

    >>> parse_event(b'{"type":"page","messageId":"m","userId":"u"}').type
    'page'
    >>> parse_event(b'{"type":"track","messageId":"m"}')
    Traceback (most recent call last):
    ...
    schemas.errors.EventError: event: Field required
    """
    size = len(raw)
    if size > MAX_EVENT_BYTES:
        msg = f"event is {size} bytes; the limit is {MAX_EVENT_BYTES} (32 KB)"
        raise EventError(msg, stage="size")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        msg = f"not valid JSON: {e}"
        raise EventError(msg, stage="parse") from e
    return validate_event(data)


def parse_batch(raw: bytes | str) -> list[object]:
    """Split a Segment ``/v1/batch`` body into its events (each still to be validated).

    >>> parse_batch(b'{"batch":[{"type":"page"},{"type":"track"}]}')
    [{'type': 'page'}, {'type': 'track'}]
    """
    size = len(raw)
    if size > MAX_BATCH_BYTES:
        msg = f"batch is {size} bytes; the limit is {MAX_BATCH_BYTES} (500 KB)"
        raise EventError(msg, stage="size")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        msg = f"not valid JSON: {e}"
        raise EventError(msg, stage="parse") from e
    batch = data.get("batch") if isinstance(data, dict) else None
    if not isinstance(batch, list):
        msg = 'a batch must be a JSON object with a "batch" array'
        raise EventError(msg, stage="validate")
    return batch


def to_utc_ms(value: datetime) -> datetime:
    """Truncate to the millisecond, the precision of ``DateTime64(3)`` in the warehouse."""
    return value - timedelta(microseconds=value.microsecond % 1000)
