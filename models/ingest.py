"""Ingest: raw bytes -> validated row (stage 1), then de-duplication and sessions per device (stage 2).

Stage 1 (:class:`RowBuilder`) needs no state, so in Kafka mode it runs on whatever partition the raw
event arrived on. Stage 2 (:class:`Sessionizer`) keeps a :class:`DeviceState` per device, so its input is
re-keyed by device first; the embedded runner calls both stages back to back with a dict as the table.

Deduplication is on ``messageId`` within a device, remembering where each id was first seen. The same id
from the same ``source`` is a replay of that very input after a crash (at-least-once delivery): its
effects were made before the state that remembers it was saved, so the output is ``None`` (nothing to do
again). From another source it is a duplicate and goes to the failed stream.

Sessions: a new session starts after ``session_gap`` of inactivity on the device, in event time. A late
event joins whichever of the device's recent sessions it falls within (``session_gap`` either side).

>>> from datetime import datetime, UTC
>>> build, sessionize = RowBuilder(), Sessionizer()
>>> raw = b'{"type":"page","messageId":"m1","anonymousId":"d1","timestamp":"2026-11-01T10:00:00Z"}'
>>> row = build(raw, source="f:1", received_at=datetime(2026, 11, 1, 10, tzinfo=UTC))
>>> state, out = sessionize(row, raw, None)
>>> out.session_id == state.sessions[-1].session_id, out.channel
(True, 'direct')
>>> _, again = sessionize(build(raw, source="f:2", received_at=row.received_at), raw, state)
>>> again.stage, again.error
('dedupe', 'duplicate messageId, first seen at f:1')
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from models.channels import ChannelClassifier
from models.privacy import ConsentPolicy, PiiHasher
from models.times import MS, epoch_ms
from schemas.ecommerce import OrderCompleted
from schemas.errors import EventError
from schemas.records import EventRow, FailedEvent, Refused
from schemas.segment import (
    AliasEvent,
    Event,
    GroupEvent,
    IdentifyEvent,
    PageEvent,
    ScreenEvent,
    TrackEvent,
    parse_event,
)


def _to_ms_precision(value: datetime) -> datetime:
    extra = value.microsecond % 1000
    return value.replace(microsecond=value.microsecond - extra) if extra else value


def _message_id_of(raw: bytes) -> str:
    # Best effort, for failed events only: the id lets an operator find the retry of a rejected event.
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    mid = data.get("messageId") if isinstance(data, dict) else None
    return mid[:256] if isinstance(mid, str) else ""


_PII_MARKERS = re.compile("mail|Mail|MAIL|hone|HONE|obile|OBILE")


def _may_hold_pii(traits: str, properties: str) -> bool:
    # A substring test first: most events carry no contact details, and parsing their JSON again costs more.
    search = _PII_MARKERS.search
    return search(traits) is not None or search(properties) is not None


class RowBuilder:
    """Stage 1: parse, validate, stamp ``received_at``, correct clock skew, flatten to an :class:`EventRow`.

    ``received_at`` is the transport's receive time; an event that already carries ``receivedAt`` (set by
    a collector at the edge, as Segment does) keeps it. With ``pii``, emails and phone numbers in traits
    and properties are replaced by their keyed hash; with ``consent``, the row's ``consent`` holds the
    granted purposes (``{}`` when the event has no consent object: stage 2 decides from the device).
    """

    __slots__ = ("consent", "pii")

    def __init__(self, *, pii: PiiHasher | None = None, consent: ConsentPolicy | None = None) -> None:
        self.pii = pii
        self.consent = consent

    def __call__(self, raw: bytes, *, source: str, received_at: datetime) -> EventRow | FailedEvent:
        return self.build(raw, source=source, received_at=received_at)[0]

    def build(self, raw: bytes, *, source: str, received_at: datetime) -> tuple[EventRow | FailedEvent, bytes]:
        """The row (or failure) and the bytes to carry downstream: ``raw``, or ``raw`` with its PII hashed."""
        try:
            event = parse_event(raw)
            row = self.row(event, source=source, received_at=event.received_at or received_at)
        except orjson.JSONEncodeError as e:  # valid JSON nested deeper than orjson writes back (254 levels)
            error = EventError(f"cannot store the event: {e}", stage="validate")
            return self._failed(raw, error, source, received_at), raw
        except EventError as e:
            return self._failed(raw, e, source, received_at), raw
        if self.consent is not None:
            prefs = event.context.consent.category_preferences if event.context.consent else None
            row.consent = self.consent(prefs) if prefs is not None else {}
        if self.pii is not None and _may_hold_pii(row.traits, row.properties):
            raw = self._hash_pii(row, raw)
        return row, raw

    @staticmethod
    def _failed(raw: bytes, error: EventError, source: str, received_at: datetime) -> FailedEvent:
        return FailedEvent(
            message_id=_message_id_of(raw) if error.stage != "size" else "",
            stage=error.stage,
            error=str(error),
            raw=raw,
            source=source,
            received_at=_to_ms_precision(received_at),
        )

    def _hash_pii(self, row: EventRow, raw: bytes) -> bytes:
        assert self.pii is not None
        redact = self.pii.redact
        changed = False
        for attr in ("traits", "properties"):
            redacted = redact(orjson.loads(getattr(row, attr)))
            if redacted is not None:
                setattr(row, attr, orjson.dumps(redacted).decode())
                changed = True
        if not changed:
            return raw
        data = orjson.loads(raw)
        for path in (("traits",), ("properties",), ("context", "traits")):
            parent = data
            for key in path[:-1]:
                parent = parent.get(key) if isinstance(parent, dict) else None
            value = parent.get(path[-1]) if isinstance(parent, dict) else None
            if isinstance(parent, dict) and isinstance(value, dict):
                parent[path[-1]] = redact(value) or value
        return orjson.dumps(data)

    @staticmethod
    def row(event: Event, *, source: str, received_at: datetime) -> EventRow:
        ctx = event.context
        page = ctx.page
        campaign = ctx.campaign
        name = ""
        properties: dict[str, object] = {}
        traits = ctx.traits or {}
        order_id, revenue, currency = "", None, ""
        if isinstance(event, TrackEvent):
            name, properties = event.event, event.properties
            commerce = event.commerce
            if isinstance(commerce, OrderCompleted):
                order_id = commerce.order_id
                revenue = commerce.normalised_revenue
                currency = commerce.normalised_currency
        elif isinstance(event, PageEvent | ScreenEvent):
            name, properties = event.name or "", event.properties
        elif isinstance(event, IdentifyEvent | GroupEvent):
            traits = event.traits
        elif isinstance(event, AliasEvent):
            properties = {"previous_id": event.previous_id}
        consent = ctx.consent.category_preferences if ctx.consent else {}
        return EventRow(
            message_id=event.message_id,
            type=event.type,
            event=name,
            anonymous_id=event.anonymous_id or "",
            user_id=event.user_id or "",
            person_id=event.user_id or event.anonymous_id or "",
            session_id="",
            event_at=_to_ms_precision(event.event_at(received_at)),
            received_at=_to_ms_precision(received_at),
            sent_at=_to_ms_precision(event.sent_at) if event.sent_at else None,
            channel="",
            campaign=(campaign.name or "") if campaign else "",
            utm_source=(campaign.source or "") if campaign else "",
            utm_medium=(campaign.medium or "") if campaign else "",
            utm_term=(campaign.term or "") if campaign else "",
            utm_content=(campaign.content or "") if campaign else "",
            referrer=(page.referrer or "") if page else "",
            page_url=(page.url or "") if page else "",
            page_path=(page.path or "") if page else "",
            page_title=(page.title or "") if page else "",
            ip=ctx.ip or "",
            user_agent=ctx.user_agent or "",
            locale=ctx.locale or "",
            device_type=(ctx.device.type or "") if ctx.device else "",
            os_name=(ctx.os.name or "") if ctx.os else "",
            order_id=order_id,
            revenue=revenue,
            currency=currency,
            consent=consent,
            properties=orjson.dumps(properties).decode() if properties else "{}",
            traits=orjson.dumps(traits).decode() if traits else "{}",
            source=source,
        )


@dataclass(slots=True)
class SessionSpan:
    session_id: str
    started_ms: int
    last_ms: int
    channel: str
    campaign: str


@dataclass(slots=True)
class DeviceState:
    """What stage 2 remembers per device: recent sessions (oldest first) and recent message ids.

    ``seen`` maps a message id to ``(source, event ms)`` in insertion order, so expiry pops from the front.
    """

    sessions: list[SessionSpan] = field(default_factory=list)
    seen: dict[str, tuple[str, int]] = field(default_factory=dict)
    latest_ms: int = 0
    consent: dict[str, bool] | None = None

    def to_json(self) -> bytes:
        """Compact wire form for a changelog or checkpoint.

        >>> state = DeviceState([SessionSpan("s", 1, 2, "email", "c")], {"m": ("f:1", 1)}, 2)
        >>> DeviceState.from_json(state.to_json()) == state
        True
        """
        return orjson.dumps(
            {
                "sessions": [[s.session_id, s.started_ms, s.last_ms, s.channel, s.campaign] for s in self.sessions],
                "seen": [[mid, src, ms] for mid, (src, ms) in self.seen.items()],
                "latest_ms": self.latest_ms,
                "consent": self.consent,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> DeviceState:
        return cls.from_obj(orjson.loads(data))

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> DeviceState:
        """From the decoded JSON of :meth:`to_json` (or of the dataclass itself, as a generic JSON codec writes it).

        >>> obj = {"sessions": [{"session_id": "s", "started_ms": 1, "last_ms": 2, "channel": "", "campaign": ""}],
        ...        "seen": {"m": ["f:1", 1]}, "latest_ms": 2}
        >>> DeviceState.from_obj(obj) == DeviceState([SessionSpan("s", 1, 2, "", "")], {"m": ("f:1", 1)}, 2)
        True
        """
        seen = obj["seen"]
        pairs = seen.items() if isinstance(seen, dict) else ((mid, (src, ms)) for mid, src, ms in seen)
        return cls(
            sessions=[SessionSpan(**s) if isinstance(s, dict) else SessionSpan(*s) for s in obj["sessions"]],
            seen={mid: (src, ms) for mid, (src, ms) in pairs},
            latest_ms=obj["latest_ms"],
            consent=obj.get("consent"),
        )


def duplicate(row: EventRow, raw: bytes | str, *, first_seen_at: str) -> FailedEvent:
    """The failure for ``row``, a second input with the ``messageId`` first seen at ``first_seen_at``."""
    return FailedEvent(
        message_id=row.message_id,
        stage="dedupe",
        error=f"duplicate messageId, first seen at {first_seen_at}",
        raw=raw.encode() if isinstance(raw, str) else raw,
        source=row.source,
        received_at=row.received_at,
    )


def settle_late(
    late: Sequence[tuple[EventRow, bytes | str]],
    stored: Mapping[str, str],
    devices: Mapping[str, DeviceState] | None = None,
) -> tuple[list[EventRow], list[FailedEvent]]:
    """Late rows (older than their device's dedupe memory) against the warehouse's ``message_id -> source``.

    A row the warehouse does not hold is new; one it holds from the same source is a replay of that very
    input (dropped: its effects were made); one it holds from another source is a duplicate, failed as the
    device would have failed it had it still remembered the id. ``stored`` should include the rows of the
    batch not yet inserted. The device memory in ``devices`` learns where a duplicate's id was first seen,
    so a third copy is failed with the same reason.

    >>> from dataclasses import replace
    >>> from schemas.records import EXAMPLE_ROW as row
    >>> new, again, resent = row, replace(row, message_id="m2"), replace(row, message_id="m3", source="f:9")
    >>> kept, failed = settle_late([(new, b""), (again, b""), (resent, b"{}")], {"m2": "file:1", "m3": "f:2"})
    >>> [r.message_id for r in kept], [(f.message_id, f.error) for f in failed]
    (['m1'], [('m3', 'duplicate messageId, first seen at f:2')])
    """
    kept: list[EventRow] = []
    failed: list[FailedEvent] = []
    seen = dict(stored)
    for row, raw in late:
        source = seen.get(row.message_id)
        if source is None:
            kept.append(row)
            seen[row.message_id] = row.source  # a second late copy in the same batch is a duplicate too
        elif source != row.source:
            failed.append(duplicate(row, raw, first_seen_at=source))
            state = devices.get(row.device_key) if devices is not None else None
            if state is not None and row.message_id in state.seen:
                # In place: sessionizing the row has just written this state, so its changelog goes out anyway.
                state.seen[row.message_id] = (source, state.seen[row.message_id][1])
    return kept, failed


class Sessionizer:
    """Stage 2: apply consent, de-duplicate on ``messageId``, assign ``session_id`` and the session's channel.

    With a ``consent`` policy, an event's explicit consent becomes the device's, and an event without one
    inherits the device's last (so a change applies to later events at once); an event whose consent
    denies analytics is :class:`Refused` before anything about it is remembered, not even its id.
    """

    __slots__ = ("classify", "consent", "dedupe_window", "max_sessions", "session_gap")

    def __init__(
        self,
        *,
        session_gap: timedelta = timedelta(minutes=30),
        dedupe_window: timedelta = timedelta(days=7),
        max_sessions: int = 8,
        classify: ChannelClassifier | None = None,
        consent: ConsentPolicy | None = None,
    ) -> None:
        self.consent = consent
        self.session_gap = session_gap
        self.dedupe_window = dedupe_window
        self.max_sessions = max_sessions
        self.classify = classify or ChannelClassifier()

    def __call__(
        self, row: EventRow, raw: bytes | str, state: DeviceState | None
    ) -> tuple[DeviceState, EventRow | FailedEvent | Refused | None]:
        state = state if state is not None else DeviceState()
        if self.consent is not None:
            if row.consent:
                state.consent = row.consent
            else:
                row.consent = state.consent if state.consent is not None else self.consent(None)
            if not row.consent.get("analytics", True):
                return state, Refused(row.message_id, "analytics", row.event_at, row.source)
        at_ms = epoch_ms(row.event_at)
        first = state.seen.get(row.message_id)
        if first is not None and first[0] == row.source:
            return state, None
        if first is not None:
            return state, duplicate(row, raw, first_seen_at=first[0])
        state.seen[row.message_id] = (row.source, at_ms)
        self._expire(state, at_ms)
        span = self._session_for(row, at_ms, state)
        row.session_id = span.session_id
        row.channel = span.channel
        if not row.campaign:
            row.campaign = span.campaign
        return state, row

    def _expire(self, state: DeviceState, at_ms: int) -> None:
        state.latest_ms = max(state.latest_ms, at_ms)
        horizon = state.latest_ms - self.dedupe_window // MS
        seen = state.seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest][1] >= horizon:
                break
            del seen[oldest]

    def _session_for(self, row: EventRow, at_ms: int, state: DeviceState) -> SessionSpan:
        gap = self.session_gap // MS
        for span in reversed(state.sessions):
            if span.started_ms - gap <= at_ms <= span.last_ms + gap:
                span.started_ms = min(span.started_ms, at_ms)
                span.last_ms = max(span.last_ms, at_ms)
                return span
        digest = hashlib.blake2b(f"{row.device_key}|{at_ms}".encode(), digest_size=8).hexdigest()
        channel = self.classify(
            utm_source=row.utm_source, utm_medium=row.utm_medium, referrer=row.referrer, page_url=row.page_url
        )
        span = SessionSpan(session_id=digest, started_ms=at_ms, last_ms=at_ms, channel=channel, campaign=row.campaign)
        state.sessions.append(span)
        state.sessions.sort(key=lambda s: s.started_ms)
        del state.sessions[: -self.max_sessions]
        return span
