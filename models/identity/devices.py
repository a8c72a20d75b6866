"""What identity remembers about one browser, and how two browsers are compared.

:class:`DeviceEvidence` is a few hundred bytes per device, each part bounded, and each part a function of
the *set* of events seen (never of their order), which is what makes the resolver order independent:

* ``users``: userId -> [events carrying it, bit mask of how: identify, alias, login (a track/page with
  both ids)];
* ``ips``: IP -> events seen from it (at most :data:`MAX_IPS`; IPs of large blocks are dropped first),
  and ``home``, the IP with the most events (ties: the smallest);
* ``buckets``: the latest :data:`MAX_BUCKETS` quarter-hours (epoch ms // 900 000) with activity;
* ``categories``: product views counted in 16 hashed slots; ``interests`` is their share in eighths
  (16 bytes), once there are 3 views (the comparison reads only that, so it changes rarely);
* ``products``: the :data:`MAX_PRODUCTS` smallest 32-bit hashes of products put in a cart (a bottom-k
  sketch: the same set gives the same sketch whatever the order);
* ``device_type``, ``software`` (OS vendor / browser family), ``locale``: constant per browser; the
  smallest value seen is kept, so a disagreement cannot depend on order.

Device comparison levels (Fellegi & Sunter 1969; m/u in :data:`DEVICE_MODEL`): ``ip_block`` (devices on
the smallest shared address: 2, 3-4, 5+: a household router is shared by few devices, an office or a
carrier NAT by many, and those never become candidates), ``ip_habit`` (is the shared address each
device's home, the one it is seen from most), ``activity`` (active in the same quarter-hour: one person
rarely browses on two devices at once, so concurrency is evidence of two people), ``interests`` (cosine of
product-category shares), ``cart`` (a product in both carts), ``locale``, ``devices`` (two phones are
more often two people), ``software``.

>>> a, b = DeviceEvidence(), DeviceEvidence()
>>> for ev in (a, b):
...     _ = ev.add_ip("203.0.113.7"), ev.add_bucket(100), ev.set_context("desktop", "Windows", "Edg/131", "en-US")
>>> _ = b.add_bucket(100)
>>> [DEVICE_MODEL.comparisons[f].levels[x] for f, x in enumerate(compare_devices(a, b, {"203.0.113.7": 2}))
...  if x >= 0]
['2', 'both_home', 'concurrent', 'same', 'other', 'same_browser']
"""

from __future__ import annotations

import bisect
import hashlib
import math
import sys
from array import array
from collections.abc import Mapping

from models.identity.fellegi_sunter import MISSING, Comparison, FellegiSunter
from models.identity.traits import TraitProfile

BUCKET_MS = 15 * 60_000
MAX_BUCKETS = 64
MAX_IPS = 16
MAX_PRODUCTS = 8
MAX_EMAILS = 4
MAX_PROFILES = 4
MIN_VIEWS = 3
_SLOTS = 16
VIA_IDENTIFY, VIA_ALIAS, VIA_LOGIN = 1, 2, 4
VIA_NAMES = ((VIA_IDENTIFY, "identify"), (VIA_ALIAS, "alias"), (VIA_LOGIN, "login"))
_VENDORS = {"ios": "apple", "ipados": "apple", "mac os x": "apple", "macos": "apple", "mac os": "apple",
            "android": "google", "chrome os": "google", "windows": "microsoft"}  # fmt: skip
_BROWSERS = ("edg/", "samsungbrowser", "firefox", "crios", "chrome", "safari")


def small_hash(text: str) -> int:
    """A stable 32-bit hash (Python's ``hash`` is salted per process, so it cannot be checkpointed)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def software_of(os_name: str, user_agent: str) -> str:
    """``vendor/browser`` from the OS name and the user agent, e.g. ``apple/safari``.

    >>> software_of("Android", "Mozilla/5.0 (Linux; Android 10; K) ... Chrome/131.0.0.0 Mobile Safari/537.36")
    'google/chrome'
    """
    vendor = _VENDORS.get(os_name.lower(), os_name.lower())
    ua = user_agent.lower()
    browser = next((b.rstrip("/") for b in _BROWSERS if b in ua), "")
    return f"{vendor}/{browser}" if vendor or browser else ""


class DeviceEvidence:
    """The bounded, order-free evidence about one device (see the module docstring)."""

    __slots__ = (
        "buckets",
        "categories",
        "context",
        "device_type",
        "emails",
        "home",
        "interests",
        "ips",
        "locale",
        "products",
        "profiles",
        "software",
        "users",
        "views",
    )

    def __init__(self) -> None:
        self.users: dict[str, list[int]] = {}
        self.ips: dict[str, int] = {}
        self.home = ""
        self.buckets = array("I")
        self.categories: array[int] | None = None
        self.views = 0
        self.interests: bytes | None = None
        self.products: tuple[int, ...] = ()
        self.emails: tuple[str, ...] = ()
        self.profiles: tuple[TraitProfile, ...] = ()
        self.device_type = self.software = self.locale = ""
        self.context = 0  # a cache key of the last context seen (Python's salted hash: only a cache)

    # -- updates; each returns True when something a comparison reads has changed ----------------------

    def add_user(self, user_id: str, via: int) -> bool:
        """Count an event carrying ``user_id``; True when the set, the ways or the dominant user changed."""
        entry = self.users.get(user_id)
        if entry is None:
            self.users[user_id] = [1, via]
            return True
        before = self.dominant_user() if len(self.users) > 1 else user_id
        entry[0] += 1
        changed = (entry[1] | via) != entry[1]
        entry[1] |= via
        return changed or before != (self.dominant_user() if len(self.users) > 1 else user_id)

    def dominant_user(self) -> str:
        """The userId with the most events (ties: the smallest), or ``""``."""
        if not self.users:
            return ""
        return min(self.users, key=lambda u: (-self.users[u][0], u))

    def add_ip(self, ip: str) -> bool:
        ip = sys.intern(ip)
        count = self.ips.get(ip, 0) + 1
        self.ips[ip] = count
        if ip == self.home:
            return count == 1
        best = self.ips.get(self.home, 0)
        if count > best or (count == best and ip < self.home) or not self.home:
            self.home = ip
            return True
        return count == 1

    def drop_ips(self, large: set[str] | frozenset[str]) -> None:
        """Forget addresses whose block became large, then the least used beyond :data:`MAX_IPS`."""
        for ip in [ip for ip in self.ips if ip in large]:
            del self.ips[ip]
        if len(self.ips) > MAX_IPS:
            keep = sorted(self.ips, key=lambda ip: (-self.ips[ip], ip))[:MAX_IPS]
            self.ips = {ip: self.ips[ip] for ip in keep}
        if self.home not in self.ips:
            self.home = min(self.ips, key=lambda ip: (-self.ips[ip], ip)) if self.ips else ""

    def add_bucket(self, bucket: int) -> bool:
        buckets = self.buckets
        i = bisect.bisect_left(buckets, bucket)
        if i < len(buckets) and buckets[i] == bucket:
            return False
        if len(buckets) >= MAX_BUCKETS and i == 0:
            return False
        buckets.insert(i, bucket)
        if len(buckets) > MAX_BUCKETS:
            del buckets[0]
        return True

    def add_category(self, category: str) -> bool:
        if self.categories is None:
            self.categories = array("I", bytes(4 * _SLOTS))
        self.categories[small_hash(category) % _SLOTS] += 1
        self.views += 1
        if self.views < MIN_VIEWS:
            return False
        shape = bytes(round(8 * c / self.views) for c in self.categories)
        if shape == self.interests:
            return False
        self.interests = shape
        return True

    def add_product(self, product_id: str) -> bool:
        h = small_hash(product_id)
        if h in self.products:
            return False
        if len(self.products) >= MAX_PRODUCTS and h > self.products[-1]:
            return False
        self.products = tuple(sorted((*self.products, h))[:MAX_PRODUCTS])
        return True

    def add_email(self, email: str) -> bool:
        if email in self.emails:
            return False
        self.emails = tuple(sorted((*self.emails, email))[:MAX_EMAILS])
        return email in self.emails

    def add_profile(self, profile: TraitProfile) -> bool:
        if profile in self.profiles:
            return False
        self.profiles = tuple(sorted((*self.profiles, profile))[:MAX_PROFILES])
        return profile in self.profiles

    def set_context(self, device_type: str, os_name: str, user_agent: str, locale: str) -> bool:
        key = hash((device_type, os_name, user_agent, locale))
        if key == self.context:
            return False
        self.context = key
        changed = False
        software = software_of(os_name, user_agent) if user_agent else ""
        for name, value in (("device_type", device_type), ("software", software), ("locale", locale)):
            old = getattr(self, name)
            if value and (not old or value < old):
                setattr(self, name, sys.intern(value))
                changed = True
        return changed


def _cosine(a: bytes, b: bytes) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return dot / norm if norm else 0.0


def compare_devices(a: DeviceEvidence, b: DeviceEvidence, shared: Mapping[str, int]) -> tuple[int, ...]:
    """The comparison vector of two devices; ``shared`` maps each shared small-block IP to its block size."""
    smallest = min(shared.values())
    homes = (a.home in shared) + (b.home in shared)
    interests = MISSING
    if a.interests is not None and b.interests is not None:
        cos = _cosine(a.interests, b.interests)
        interests = 0 if cos >= 0.9 else 1 if cos >= 0.6 else 2
    cart = MISSING
    if a.products and b.products:
        cart = 0 if set(a.products) & set(b.products) else 1
    software = MISSING
    if a.software and b.software:
        va, vb = a.software.partition("/"), b.software.partition("/")
        software = 0 if a.software == b.software else 1 if va[0] == vb[0] else 2
    return (
        0 if smallest <= 2 else 1 if smallest <= 4 else 2,
        2 - homes,
        1 if not set(a.buckets).isdisjoint(b.buckets) else 0,
        interests,
        cart,
        (0 if a.locale == b.locale else 1) if a.locale and b.locale else MISSING,
        (0 if a.device_type == b.device_type == "mobile" else 1) if a.device_type and b.device_type else MISSING,
        software,
    )


def concurrent(a: DeviceEvidence, b: DeviceEvidence) -> bool:
    """Both devices were active in the same quarter-hour: taken as proof of two different people."""
    return not set(a.buckets).isdisjoint(b.buckets)


# m and u as ``IdentityResolver.refit`` estimates them on a 5,000-person, 30-day simulation (candidate pairs
# labelled by the deterministic evidence: two devices of one account vs of two accounts), rounded. They say
# what households make plain: a small shared router, a shared home address, similar product interests
# and one locale are more common for one person's devices than for two housemates', concurrent activity
# and two phones less, and the browser says nothing. The prior is the share of matches among those
# candidates in the simulation's truth (0.27); EM overestimates it (about 0.55) because these fields are
# not independent given the match status. No pattern reaches 0.99: housemates' devices are too alike.
DEVICE_MODEL = FellegiSunter(
    comparisons=(
        Comparison(name="ip_block", levels=("2", "3-4", "5+"), m=(0.2, 0.51, 0.29), u=(0.08, 0.41, 0.51)),
        Comparison(name="ip_habit", levels=("both_home", "one_home", "neither"),
                   m=(0.7, 0.27, 0.03), u=(0.53, 0.26, 0.21)),
        Comparison(name="activity", levels=("apart", "concurrent"), m=(0.998, 0.002), u=(0.98, 0.02)),
        Comparison(name="interests", levels=("similar", "related", "different"),
                   m=(0.22, 0.5, 0.28), u=(0.08, 0.25, 0.67)),
        Comparison(name="cart", levels=("shared", "none"), m=(0.04, 0.96), u=(0.02, 0.98)),
        Comparison(name="locale", levels=("same", "different"), m=(0.998, 0.002), u=(0.93, 0.07)),
        Comparison(name="devices", levels=("both_mobile", "other"), m=(0.28, 0.72), u=(0.45, 0.55)),
        Comparison(name="software", levels=("same_browser", "same_vendor", "different"),
                   m=(0.25, 0.09, 0.66), u=(0.29, 0.11, 0.6)),
    ),
    prior=0.27,
)  # fmt: skip
