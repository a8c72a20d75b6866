"""Browsers, operating systems and IP addresses as trackers report them.

User agents follow the strings real browsers send in late 2026 style (Chrome's reduced UA: Android is
always "Android 10; K", macOS always "10_15_7"). IPs come from blocks that look like residential ISPs,
mobile carriers (carrier-grade NAT: one address shared by many strangers), offices and cloud data centres,
so an IP is a hint about identity, never proof.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# (weight, os name, os versions, user agent template); {v} is the browser version, {o} the OS version.
_DESKTOP = (
    (
        0.45,
        "Windows",
        ("10",),
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{v}.0.0.0 Safari/537.36",
    ),
    (
        0.12,
        "Windows",
        ("10",),
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
    ),
    (
        0.06,
        "Windows",
        ("10",),
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
    ),
    (
        0.15,
        "Mac OS X",
        ("10.15.7",),
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{v}.0.0.0 Safari/537.36",
    ),
    (
        0.15,
        "Mac OS X",
        ("10.15.7",),
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/{s} Safari/605.1.15",
    ),
    (
        0.07,
        "Linux",
        ("x86_64",),
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    ),
)
_MOBILE = (
    (
        0.5,
        "iOS",
        ("17.6", "18.0", "18.1", "18.2"),
        "Mozilla/5.0 (iPhone; CPU iPhone OS {u} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/{o} Mobile/15E148 Safari/604.1",
    ),
    (
        0.42,
        "Android",
        ("13", "14", "15"),
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{v}.0.0.0 Mobile Safari/537.36",
    ),
    (
        0.08,
        "Android",
        ("14", "15"),
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/26.0 Chrome/{v}.0.0.0 Mobile Safari/537.36",
    ),
)
_TABLET = (
    (
        0.65,
        "iOS",
        ("17.6", "18.1"),
        "Mozilla/5.0 (iPad; CPU OS {u} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/{o} Mobile/15E148 Safari/604.1",
    ),
    (
        0.35,
        "Android",
        ("13", "14"),
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    ),
)
_BROWSERS = {"desktop": _DESKTOP, "mobile": _MOBILE, "tablet": _TABLET}
_CHROME = ("129", "130", "131", "132")
_FIREFOX = ("132", "133", "134")
_SAFARI = ("17.6", "18.1", "18.2")

BOT_USER_AGENTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    "python-requests/2.32.3",
    "Scrapy/2.11.2 (+https://scrapy.org)",
    "curl/8.5.0",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
)

# First octets of address blocks by use; the rest is random, carriers and offices reuse a small pool.
_RESIDENTIAL = {
    "US": (73, 24, 98, 71, 76, 68, 174, 108),
    "CA": (99, 142, 184, 70),
    "GB": (86, 81, 90, 2),
    "DE": (91, 79, 84, 93),
    "FR": (90, 82, 86, 176),
}
_CARRIER = {"US": (172, 174, 107), "CA": (206, 162), "GB": (92, 31), "DE": (109, 46), "FR": (37, 80)}
_OFFICE = (12, 63, 64, 65, 66, 208, 198)
_DATACENTER = (3, 18, 34, 35, 52, 54, 104, 185)
CARRIER_POOL_SIZE = 48


@dataclass(frozen=True, slots=True)
class Browser:
    """A device's browser as the tracker reports it."""

    device_type: str
    os_name: str
    os_version: str
    user_agent: str


def make_browser(rng: random.Random, device_type: str) -> Browser:
    """A browser and OS for a device of the given type, with a plausible version mix."""
    table = _BROWSERS[device_type]
    _, os_name, versions, template = rng.choices(table, weights=[row[0] for row in table])[0]
    os_version = rng.choice(versions)
    ua = template.format(
        v=rng.choice(_CHROME),
        f=rng.choice(_FIREFOX),
        s=rng.choice(_SAFARI),
        o=os_version,
        u=os_version.replace(".", "_"),
    )
    return Browser(device_type=device_type, os_name=os_name, os_version=os_version, user_agent=ua)


def bot_browser(rng: random.Random, *, bot_like: bool) -> Browser:
    """A bot's browser: an honest crawler/library UA, or a desktop Chrome it pretends to be."""
    if bot_like:
        return Browser("desktop", "Linux", "x86_64", rng.choice(BOT_USER_AGENTS))
    return make_browser(rng, "desktop")


def _ip(rng: random.Random, first: int) -> str:
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def residential_ip(rng: random.Random, country: str) -> str:
    """A home broadband address in the country."""
    return _ip(rng, rng.choice(_RESIDENTIAL[country]))


def office_ip(rng: random.Random) -> str:
    """The NAT address of an office network."""
    return _ip(rng, rng.choice(_OFFICE))


def datacenter_ip(rng: random.Random) -> str:
    """A cloud provider address (where most bots live)."""
    return _ip(rng, rng.choice(_DATACENTER))


def carrier_pools(rng: random.Random) -> dict[str, tuple[str, ...]]:
    """Per country, the few carrier-grade NAT addresses that all roaming phones share."""
    return {
        country: tuple(_ip(rng, rng.choice(firsts)) for _ in range(CARRIER_POOL_SIZE))
        for country, firsts in _CARRIER.items()
    }


def clock_skew_ms(rng: random.Random, *, share: float, minutes: float) -> int:
    """Client clock error: zero for most devices, a few minutes either way for ``share`` of them."""
    if rng.random() >= share:
        return 0
    skew = round(rng.gauss(0.0, minutes) * 60_000)
    return skew if skew else 1_000
