"""What the tracker on the page sends: one session's ids, context and consent, and the call builders.

An instance plays the part of analytics.js in one browser tab for one session: it keeps the anonymousId,
the userId once someone identifies, the consent in force, the current page (``context.page``, and the
referrer of the next page) and the UTM ``context.campaign``, which analytics.js only sees on the landing
URL. Message ids come from the session's own generator; the first is fixed by the plan so the truth can
name it.
"""

from __future__ import annotations

import random
from typing import Any

from .catalog import SITE
from .formats import uuid4
from .plans import Account, SessionPlan

LIBRARY = {"name": "revstream-sim", "version": "1"}
CONSENT_EVENT = "Segment Consent Preference Updated"


class Journey:
    """Mutable state of one session while it is rendered."""

    __slots__ = (
        "aid",
        "base",
        "campaign",
        "cart_id",
        "consent",
        "ctx",
        "currency",
        "first_id",
        "load_ms",
        "os",
        "out",
        "page",
        "rng",
        "type",
        "uid",
        "url",
    )

    def __init__(self, plan: SessionPlan, rng: random.Random, locale: str, currency: str) -> None:
        device = plan.device
        self.rng = rng
        self.out: list[tuple[int, dict[str, Any]]] = []
        self.aid = device.anonymous_id
        self.uid = plan.user_id_at_start
        self.base = {"ip": plan.ip, "userAgent": device.user_agent, "locale": locale, "library": LIBRARY}
        self.type = device.context_device
        self.os = device.context_os
        self.consent = plan.consent
        self.campaign = plan.touch.context
        self.first_id = plan.first_message_id
        self.page: dict[str, Any] = {}
        self.ctx: dict[str, Any] = {}
        self.url = plan.touch.referrer
        self.currency = currency
        self.cart_id = f"{rng.getrandbits(64):016x}"
        self.load_ms = (80, 520) if plan.bot is None else (15, 15)

    def message_id(self) -> str:
        if self.first_id:
            mid, self.first_id = self.first_id, ""
            return mid
        return uuid4(self.rng)

    def context(self) -> dict[str, Any]:
        ctx = {**self.base, "page": self.page, "device": self.type, "os": self.os}
        if self.campaign is not None:
            ctx["campaign"] = self.campaign
        if self.consent is not None:
            ctx["consent"] = self.consent
        return ctx

    def open(self, at: int, path: str, search: str, title: str, name: str) -> None:
        url = f"{SITE}{path}{search}"
        self.page = {"path": path, "referrer": self.url, "search": search, "title": title, "url": url}
        self.ctx = self.context()
        ev: dict[str, Any] = {"type": "page", "name": name, "properties": self.page, "messageId": self.message_id()}
        self._send(at, ev)
        self.url = url
        self.campaign = None

    def track(
        self,
        at: int,
        event: str,
        properties: dict[str, Any],
        *,
        message_id: str | None = None,
        ctx: dict[str, Any] | None = None,
    ) -> None:
        ev = {"type": "track", "event": event, "properties": properties, "messageId": message_id or self.message_id()}
        self._send(at, ev, ctx)

    def loaded(self, at: int) -> int:
        """When the tracker fires the page's load event (bots: always within a few ms)."""
        low, span = self.load_ms
        return at + low + int(self.rng.random() * span)

    def gap(self) -> int:
        """Milliseconds between leaving a page and the next one opening."""
        return 200 + int(self.rng.random() * 1300)

    def identify(self, at: int, account: Account) -> None:
        self.uid = account.user_id
        self._send(at, {"type": "identify", "traits": account.traits, "messageId": self.message_id()})

    def alias(self, at: int, user_id: str) -> None:
        self._send(at, {"type": "alias", "previousId": self.aid, "userId": user_id, "messageId": self.message_id()})

    def _send(self, at: int, ev: dict[str, Any], ctx: dict[str, Any] | None = None) -> None:
        ev["anonymousId"] = self.aid
        if self.uid is not None:
            ev["userId"] = self.uid
        ev["context"] = ctx if ctx is not None else self.ctx
        self.out.append((at, ev))
