"""The evidence store: what every event says about identity, accumulated per device and per user.

Nodes of the identity graph are keyed ``a:<anonymousId>`` (a browser) and ``u:<userId>`` (an account), so
the two kinds never collide. :meth:`EvidenceStore.add` folds one :class:`schemas.records.EventRow` into
the evidence and reports what changed (:class:`Touched`): which devices' pair comparisons and which nodes'
trait comparisons must be recomputed, and which nodes' deterministic ties changed. It keeps three block
indexes: devices per IP, nodes per email hash, nodes per trait blocking key.

What counts as evidence:

* a userId next to an anonymousId (identify, alias, or any event while logged in) ties the device to the
  account; ``alias`` also ties its ``previousId``;
* emails (identify traits, ``context.traits`` or ``properties.email`` of a checkout) belong to the account
  when the event has a userId, else to the device (a guest checkout);
* traits (names, phone, postal code, birthday) become a :class:`models.identity.traits.TraitProfile` of
  the same owner;
* IP, activity quarter-hours, product categories and cart products, device type, OS/browser and locale
  describe the device (see :mod:`models.identity.devices`).

>>> from datetime import UTC, datetime
>>> from schemas.records import EXAMPLE_ROW
>>> store = EvidenceStore(ip_cap=6, email_cap=8, trait_cap=40)
>>> touched = store.add(EXAMPLE_ROW)
>>> sorted(touched.seeds), sorted(touched.devices), store.devices["a1"].home
(['a:a1'], ['a1'], '203.0.113.7')
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.identity.blocks import BlockIndex
from models.identity.devices import (
    BUCKET_MS,
    MAX_EMAILS,
    MAX_IPS,
    MAX_PROFILES,
    VIA_ALIAS,
    VIA_IDENTIFY,
    VIA_LOGIN,
    DeviceEvidence,
)
from models.identity.hashing import KeyedHash
from models.identity.traits import TraitProfile
from schemas.records import EventRow

_PRODUCT_EVENTS = frozenset({"Product Viewed", "Product Added", "Product Clicked"})
_CART_EVENTS = frozenset({"Product Added", "Cart Viewed", "Checkout Started", "Order Completed"})
_BLOCK_LIMIT = 64


def device_node(anonymous_id: str) -> str:
    return "a:" + anonymous_id


def user_node(user_id: str) -> str:
    return "u:" + user_id


@dataclass(slots=True)
class UserEvidence:
    """An account: the devices it was seen on, and the emails and profiles it declared."""

    devices: set[str] = field(default_factory=set)
    emails: tuple[str, ...] = ()
    profiles: tuple[TraitProfile, ...] = ()


@dataclass(slots=True)
class Touched:
    """What one update changed: ``devices`` (anonymousIds) and ``traits`` (node keys) need their pairs
    rescored; ``seeds`` (node keys) had deterministic evidence change, so their part of the graph is
    re-clustered; ``created`` (node keys) were seen for the first time."""

    devices: set[str] = field(default_factory=set)
    traits: set[str] = field(default_factory=set)
    seeds: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)

    def update(self, other: Touched) -> None:
        self.devices |= other.devices
        self.traits |= other.traits
        self.seeds |= other.seeds
        self.created |= other.created


def _json(text: str) -> dict[str, Any]:
    if len(text) <= 2:
        return {}
    value = orjson.loads(text)
    return value if isinstance(value, dict) else {}


class EvidenceStore:
    """Devices, users and the three block indexes; ``add`` folds in an event, ``drop`` removes a node."""

    __slots__ = ("denied", "devices", "emails", "erased", "ips", "keys", "traits", "users")

    def __init__(self, *, ip_cap: int, email_cap: int, trait_cap: int, keys: KeyedHash | None = None) -> None:
        self.devices: dict[str, DeviceEvidence] = {}
        self.users: dict[str, UserEvidence] = {}
        self.ips = BlockIndex(cap=ip_cap, limit=max(_BLOCK_LIMIT, ip_cap))
        self.emails = BlockIndex(cap=email_cap, limit=max(_BLOCK_LIMIT, email_cap))
        self.traits = BlockIndex(cap=trait_cap, limit=max(4 * _BLOCK_LIMIT, trait_cap))
        self.keys = keys if keys is not None else KeyedHash()
        self.denied: set[str] = set()  # anonymousIds that denied analytics (sticky, fail-closed)
        self.erased: set[str] = set()  # keyed tokens of erased node keys (never the ids themselves)

    def refused(self, anonymous_id: str) -> bool:
        """True when nothing may be kept about this device (it denied analytics, or it was erased)."""
        return anonymous_id in self.denied or self.forgotten(anonymous_id)

    def forgotten(self, anonymous_id: str, user_id: str = "") -> bool:
        """True when the device or the account was erased: nothing about it may be kept again."""
        if not self.erased:
            return False
        token = self.keys.token
        return (bool(anonymous_id) and token(device_node(anonymous_id)) in self.erased) or (
            bool(user_id) and token(user_node(user_id)) in self.erased
        )

    # -- adding ----------------------------------------------------------------------------------------

    def add(self, row: EventRow) -> Touched:
        """Fold one event into the evidence (of the account only, when its device denied analytics)."""
        touched = Touched()
        # Interned, so that every index holding an id or an address shares one string object.
        aid, uid = sys.intern(row.anonymous_id), sys.intern(row.user_id)
        if aid in self.denied:
            aid = ""
        if uid and uid not in self.users:
            self.users[uid] = UserEvidence()
            touched.seeds.add(user_node(uid))
            touched.created.add(user_node(uid))
        if aid:
            self._device(row, aid, uid, touched)
        if row.type == "alias" and uid:
            # Evidence about the previous id, not about the sender: kept whatever the sender's consent.
            previous = _json(row.properties).get("previous_id")
            if isinstance(previous, str) and previous not in ("", row.anonymous_id) and not self.refused(previous):
                self._tie(previous, uid, VIA_ALIAS, touched)
        if uid or aid:
            self._contact(row, aid, uid, touched)
        return touched

    def _device(self, row: EventRow, aid: str, uid: str, touched: Touched) -> None:
        device = self.devices.get(aid)
        if device is None:
            device = self.devices[aid] = DeviceEvidence()
            touched.seeds.add(device_node(aid))
            touched.created.add(device_node(aid))
        if device.set_context(row.device_type, row.os_name, row.user_agent, row.locale):
            touched.devices.add(aid)
        if device.add_bucket(int(row.event_at.timestamp() * 1000) // BUCKET_MS):
            touched.devices.add(aid)
        if row.ip:
            self._ip(device, aid, sys.intern(row.ip), touched)
        if uid:
            via = VIA_IDENTIFY if row.type == "identify" else VIA_ALIAS if row.type == "alias" else VIA_LOGIN
            self._tie(aid, uid, via, touched)
        if row.event in _PRODUCT_EVENTS or row.event in _CART_EVENTS:
            props = _json(row.properties)
            category = props.get("category")
            if row.event in _PRODUCT_EVENTS and isinstance(category, str) and device.add_category(category):
                touched.devices.add(aid)
            if row.event in _CART_EVENTS:
                products = props.get("products")
                items = products if isinstance(products, list) else [props]
                for item in items:
                    pid = item.get("product_id") if isinstance(item, dict) else None
                    if isinstance(pid, str) and device.add_product(pid):
                        touched.devices.add(aid)

    def _ip(self, device: DeviceEvidence, aid: str, ip: str, touched: Touched) -> None:
        if device.add_ip(ip):
            touched.devices.add(aid)
        if device.ips[ip] != 1:
            return
        before = tuple(self.ips.members(ip))
        if self.ips.add(ip, aid):
            # The block's size is part of every pair's comparison in it, so all of them are rescored.
            touched.devices.update(before)
            touched.devices.add(aid)
        if len(device.ips) > MAX_IPS:
            kept = set(device.ips)
            device.drop_ips({k for k in device.ips if self.ips.size(k) > self.ips.cap})
            for gone in kept - set(device.ips):
                self._leave_ip(gone, aid, touched)
            touched.devices.add(aid)

    def _leave_ip(self, ip: str, aid: str, touched: Touched) -> None:
        if self.ips.remove(ip, aid):
            touched.devices.update(self.ips.members(ip))

    def _tie(self, aid: str, uid: str, via: int, touched: Touched) -> None:
        device = self.devices.get(aid)
        if device is None:
            device = self.devices[aid] = DeviceEvidence()
            touched.created.add(device_node(aid))
        if uid not in self.users:
            self.users[uid] = UserEvidence()
            touched.created.add(user_node(uid))
        if device.add_user(uid, via):
            self.users[uid].devices.add(aid)
            touched.seeds.update((device_node(aid), user_node(uid)))

    def _contact(self, row: EventRow, aid: str, uid: str, touched: Touched) -> None:
        has_traits = len(row.traits) > 2
        if not has_traits and "mail" not in row.properties:
            return
        traits = _json(row.traits) if has_traits else {}
        email = _json(row.properties).get("email") if "mail" in row.properties else None
        email = email if isinstance(email, str) and email.strip() else ""
        profile = TraitProfile.from_traits(traits, keys=self.keys, email=email)
        owner = user_node(uid) if uid else device_node(aid) if aid else ""
        if not owner:
            return
        hashed = {self.keys.email(e) for e in (email, traits.get("email")) if isinstance(e, str) and e.strip()}
        for key in sorted(hashed):
            self._add_email(owner, key, touched)
        if profile is not None:
            self._add_profile(owner, profile, touched)

    def _add_email(self, owner: str, email: str, touched: Touched) -> None:
        holder = self._holder(owner)
        if holder is None or email in holder.emails:
            return
        holder.emails = tuple(sorted((*holder.emails, email))[:MAX_EMAILS])
        if email not in holder.emails:
            return
        before = tuple(self.emails.members(email))
        if self.emails.add(email, owner):
            touched.seeds.add(owner)
            if self.emails.size(email) > self.emails.cap:
                touched.seeds.update(before)

    def _add_profile(self, owner: str, profile: TraitProfile, touched: Touched) -> None:
        holder = self._holder(owner)
        if holder is None or profile in holder.profiles:
            return
        holder.profiles = tuple(sorted((*holder.profiles, profile))[:MAX_PROFILES])
        if profile not in holder.profiles:
            return
        touched.traits.add(owner)
        for key in profile.blocking_keys():
            before = tuple(self.traits.members(key))
            if self.traits.add(key, owner) and self.traits.size(key) > self.traits.cap:
                touched.traits.update(before)

    def _holder(self, node: str) -> DeviceEvidence | UserEvidence | None:
        kind, _, ident = node.partition(":")
        return self.devices.get(ident) if kind == "a" else self.users.get(ident)

    # -- reading ---------------------------------------------------------------------------------------

    def profiles(self, node: str) -> tuple[TraitProfile, ...]:
        holder = self._holder(node)
        return holder.profiles if holder is not None else ()

    def email_neighbours(self, node: str) -> Iterable[str]:
        """Nodes sharing a (small-block) email with ``node``."""
        holder = self._holder(node)
        for email in holder.emails if holder is not None else ():
            yield from self.emails.pairable(email)

    # -- removing --------------------------------------------------------------------------------------

    def drop(self, node: str) -> Touched:
        """Remove a node and all its evidence (consent withdrawn, or erasure); report what it touched."""
        touched = Touched(seeds={node})
        kind, _, ident = node.partition(":")
        holder = self._holder(node)
        if holder is None:
            return touched
        for email in holder.emails:
            if self.emails.remove(email, node):
                touched.seeds.update(self.emails.members(email))
        for profile in holder.profiles:
            for key in profile.blocking_keys():
                if self.traits.remove(key, node):
                    touched.traits.update(self.traits.members(key))
        if isinstance(holder, DeviceEvidence):
            self._drop_device(ident, holder, touched)
        else:
            self._drop_user(ident, holder, touched)
        # The node stays in ``touched`` so that the scorer drops the pairs it was part of.
        touched.traits.add(node)
        if kind == "a":
            touched.devices.add(ident)
        return touched

    def _drop_device(self, aid: str, device: DeviceEvidence, touched: Touched) -> None:
        for ip in device.ips:
            self._leave_ip(ip, aid, touched)
        for uid in device.users:
            user = self.users.get(uid)
            if user is not None:
                user.devices.discard(aid)
                touched.seeds.add(user_node(uid))
        del self.devices[aid]

    def _drop_user(self, uid: str, user: UserEvidence, touched: Touched) -> None:
        for aid in user.devices:
            device = self.devices.get(aid)
            if device is not None and device.users.pop(uid, None) is not None:
                touched.seeds.add(device_node(aid))
        del self.users[uid]
