"""Delivery: client clocks, send delays and network latency, and the malformed traffic real collectors see.

Every event gets ``timestamp`` = true time + the device's clock skew and ``sentAt`` = ``timestamp`` + the
send delay, both on the client clock; it arrives at true time + send delay + latency. So Segment's
correction ``receivedAt - (sentAt - timestamp)`` gives the true time back up to the network latency
(tens to hundreds of milliseconds), whatever the skew.

With ``malformed_rate > 0`` each event is, with that probability, turned into one of :data:`KINDS`:

* ``truncated_json``: the line is cut short (a proper prefix of a JSON object is never valid JSON);
* ``wrong_type``: ``revenue``/``price`` becomes ``"abc"``, or else ``timestamp`` becomes the number 12;
* ``missing_id``: no ``messageId``, or neither ``anonymousId`` nor ``userId``;
* ``duplicate``: the identical bytes are sent again 0.2 s to 2 min later (a retry);
* ``out_of_order``: delivered 20 s to 15 min late (``sentAt`` moves with it, so the correction still works);
* ``late``: delivered 1 to 12 hours late (an offline phone flushing its queue).

The first three are invalid; the last three are valid events in the wrong place. Noise has its own random
stream, so the clean events are the same bytes whatever the rate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from .formats import iso_ms
from .plans import SessionPlan

KINDS = ("truncated_json", "wrong_type", "missing_id", "duplicate", "out_of_order", "late")
INVALID_KINDS = frozenset(KINDS[:3])
_NOISE_SALT = 0x5EED_0F_BAD_DA7A


@dataclass(slots=True)
class NoiseLog:
    """Counts and affected messageIds per kind of noise (the message id of the event before corruption)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    message_ids: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def add(self, kind: str, message_id: str) -> None:
        self.counts[kind] += 1
        self.message_ids[kind].append(message_id)


class Delivery:
    """Stamps client timestamps, delivers with delays and applies noise; one instance per simulation."""

    __slots__ = ("malformed_rate",)

    def __init__(self, *, malformed_rate: float) -> None:
        self.malformed_rate = malformed_rate

    def __call__(
        self,
        plan: SessionPlan,
        events: list[tuple[int, dict[str, Any]]],
        rng: random.Random,
        log: NoiseLog,
    ) -> list[tuple[int, bytes]]:
        """``(arrival_ms, line)`` for each event of the session (more with duplicates)."""
        skew = plan.device.clock_skew_ms
        slow = plan.device.device_type != "desktop"
        rate = self.malformed_rate
        noise = random.Random(plan.seed ^ _NOISE_SALT) if rate > 0 else None
        dumps = orjson.dumps
        random_ = rng.random
        latency_min, latency_span = (40, 560) if slow else (15, 135)
        out: list[tuple[int, bytes]] = []
        for true_ms, ev in events:
            r = random_()
            delay = 5 + int(r * 400) if r < 0.97 else 1000 + int((r - 0.97) * 233_000)
            latency = latency_min + int(random_() * latency_span)
            kind = KINDS[noise.randrange(6)] if noise is not None and noise.random() < rate else None
            if kind == "late":
                assert noise is not None
                delay += noise.randint(3_600_000, 12 * 3_600_000)
            elif kind == "out_of_order":
                assert noise is not None
                delay += noise.randint(20_000, 15 * 60_000)
            client = true_ms + skew
            ev["timestamp"] = iso_ms(client)
            ev["sentAt"] = iso_ms(client + delay)
            arrival = true_ms + delay + latency
            if kind is None:
                out.append((arrival, dumps(ev)))
                continue
            assert noise is not None
            log.add(kind, ev["messageId"])
            out.append((arrival, self._corrupt(noise, kind, ev)))
            if kind == "duplicate":
                out.append((arrival + noise.randint(200, 120_000), out[-1][1]))
        return out

    @staticmethod
    def _corrupt(noise: random.Random, kind: str, ev: dict[str, Any]) -> bytes:
        if kind == "truncated_json":
            line = orjson.dumps(ev)
            return line[: noise.randint(1, len(line) - 1)]
        if kind == "wrong_type":
            bad = dict(ev)
            props = ev.get("properties") or {}
            money = next((k for k in ("revenue", "price", "value") if k in props), None)
            if money is not None:
                bad["properties"] = {**props, money: "abc"}
            else:
                bad["timestamp"] = 12
            return orjson.dumps(bad)
        if kind == "missing_id":
            bad = dict(ev)
            if noise.random() < 0.5:
                del bad["messageId"]
            else:
                bad.pop("anonymousId", None)
                bad.pop("userId", None)
            return orjson.dumps(bad)
        return orjson.dumps(ev)
