"""Hostile input for the reliability tests: valid events mutated in the ways trackers and attackers break them.

``hostile_events`` is seeded, so a failing run can be reproduced; ``fix`` repairs what an operator could
repair (a missing id, a wrong type, an absurd timestamp) so the fixed event can be replayed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import orjson

from schemas.errors import EventError
from schemas.segment import parse_event
from tests.conftest import segment

Mutation = Callable[[random.Random, dict[str, object]], bytes]


def _dumps(event: dict[str, object]) -> bytes:
    return orjson.dumps(event)


def _invalid_utf8(rng: random.Random, event: dict[str, object]) -> bytes:
    raw = _dumps(event)
    cut = rng.randrange(1, len(raw) - 1)
    return raw[:cut] + b"\xff\xfe" + raw[cut:]


def _not_json(rng: random.Random, event: dict[str, object]) -> bytes:
    return _dumps(event)[: rng.randrange(1, 40)]


def _deep(rng: random.Random, event: dict[str, object]) -> bytes:
    depth = rng.choice((50, 300, 3000))
    return _dumps(event)[:-1] + b',"properties":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


def _huge_number(rng: random.Random, event: dict[str, object]) -> bytes:
    number = rng.choice((b"1e400", b"-1e999", b"123456789012345678901234567890"))
    body = b'"properties":{"order_id":"o","revenue":' + number + b"}"
    return _dumps({**event, "type": "track", "event": "Order Completed"})[:-1] + b"," + body + b"}"


def _nan(rng: random.Random, event: dict[str, object]) -> bytes:
    return _dumps(event)[:-1] + b',"properties":{"value":' + rng.choice((b"NaN", b"Infinity", b"-Infinity")) + b"}}"


def _wrong_type(rng: random.Random, event: dict[str, object]) -> bytes:
    field, value = rng.choice(
        (("anonymousId", 123), ("timestamp", True), ("properties", "x"), ("context", []), ("type", None))
    )
    return _dumps({**event, field: value})


def _missing_id(rng: random.Random, event: dict[str, object]) -> bytes:
    return _dumps({k: v for k, v in event.items() if k != "messageId"})


def _absurd_time(rng: random.Random, event: dict[str, object]) -> bytes:
    stamp = rng.choice(("1899-12-31T00:00:00Z", "9999-12-31T23:59:59Z", "2026-13-45T99:00:00Z", "yesterday"))
    return _dumps({**event, "timestamp": stamp})


def _oversize(rng: random.Random, event: dict[str, object]) -> bytes:
    return _dumps({**event, "properties": {"blob": "x" * rng.randrange(33_000, 80_000)}})


MUTATIONS: tuple[Mutation, ...] = (
    _invalid_utf8,
    _not_json,
    _deep,
    _huge_number,
    _nan,
    _wrong_type,
    _missing_id,
    _absurd_time,
    _oversize,
)


def hostile_events(n: int, *, seed: int) -> list[bytes]:
    """``n`` lines: a third valid, a tenth resent duplicates of earlier valid ones, the rest mutated."""
    rng = random.Random(seed)
    out: list[bytes] = []
    valid: list[bytes] = []
    for i in range(n):
        event = orjson.loads(segment(messageId=f"h{seed}-{i}", anonymousId=f"hd{i % 17}"))
        roll = rng.random()
        if roll < 0.33:
            line = _dumps(event)
            valid.append(line)
        elif roll < 0.43 and valid:
            line = rng.choice(valid)  # the same messageId from the same device again: a duplicate
        else:
            line = rng.choice(MUTATIONS)(rng, event)
        out.append(line)
    return out


def fix(raw: bytes) -> bytes | None:
    """The repaired event, or None when there is nothing an operator could repair (or it was valid)."""
    try:
        parse_event(raw)
    except EventError:
        pass
    else:
        return None  # valid on its own: it failed as a duplicate, and stays one
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    digest = hashlib.blake2b(raw, digest_size=8).hexdigest()
    event["messageId"] = event["messageId"] if isinstance(event.get("messageId"), str) else f"fixed-{digest}"
    event["anonymousId"] = str(event.get("anonymousId") or "fixed-device")
    event["type"] = event["type"] if event.get("type") in {"page", "track"} else "page"
    if event["type"] == "track":
        event["event"] = str(event.get("event") or "Fixed")
    event["timestamp"] = "2026-11-01T10:00:00.000Z"
    event["context"] = event["context"] if isinstance(event.get("context"), dict) else {}
    if not isinstance(event.get("properties"), dict) or "revenue" in event["properties"]:
        event["properties"] = {}
    line = orjson.dumps(event)
    try:
        parse_event(line)
    except EventError:
        return None
    return line
