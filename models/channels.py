"""Marketing channel of a session, from its landing page's UTM parameters and referrer.

A rule table, first match wins: UTM medium rules (optionally narrowed by source), then referrer host
rules, then ``referral`` for any other external referrer and ``direct`` for none. A referrer on the page's
own host (or one of ``site_hosts``) is internal navigation, not a referral: a tab left open past the
session gap starts a new session whose "referrer" is the shop itself. Users extend it by
passing their own rules ahead of :data:`DEFAULT_RULES`.

>>> classify = ChannelClassifier()
>>> classify(utm_source="google", utm_medium="cpc", referrer="")
'paid_search'
>>> classify(utm_source="", utm_medium="", referrer="https://www.bing.com/search?q=shoes")
'organic_search'
>>> classify(utm_source="", utm_medium="", referrer="")
'direct'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

CHANNELS = (
    "paid_search",
    "organic_search",
    "paid_social",
    "organic_social",
    "email",
    "display",
    "affiliate",
    "referral",
    "direct",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRule:
    """Match on ``utm_medium`` (any of ``mediums``), ``utm_source`` and/or the referrer's host suffix."""

    channel: str
    mediums: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    referrer_hosts: tuple[str, ...] = ()

    def matches(self, source: str, medium: str, host: str) -> bool:
        if self.mediums and medium not in self.mediums:
            return False
        if self.sources and source not in self.sources:
            return False
        if self.referrer_hosts:
            return any(host == h or host.endswith("." + h) for h in self.referrer_hosts)
        return bool(self.mediums or self.sources)


_SOCIAL_SOURCES = frozenset({"facebook", "fb", "instagram", "twitter", "x", "linkedin", "tiktok", "pinterest"})
_SEARCH_HOSTS = (
    "google.com",
    "bing.com",
    "duckduckgo.com",
    "yahoo.com",
    "baidu.com",
    "yandex.ru",
    "ecosia.org",
)
_SOCIAL_HOSTS = (
    "facebook.com", "t.co", "twitter.com", "x.com", "instagram.com", "linkedin.com", "lnkd.in",
    "pinterest.com", "reddit.com", "tiktok.com", "youtube.com",
)  # fmt: skip

DEFAULT_RULES: tuple[ChannelRule, ...] = (
    ChannelRule(channel="paid_social", mediums=frozenset({"cpc", "ppc", "cpm", "paid"}), sources=_SOCIAL_SOURCES),
    ChannelRule(channel="paid_search", mediums=frozenset({"cpc", "ppc", "paid_search", "paidsearch", "sem"})),
    ChannelRule(channel="paid_social", mediums=frozenset({"paid_social", "paidsocial", "social_paid", "social-paid"})),
    ChannelRule(channel="email", mediums=frozenset({"email", "e-mail", "newsletter"})),
    ChannelRule(channel="display", mediums=frozenset({"display", "banner", "cpm", "programmatic"})),
    ChannelRule(channel="affiliate", mediums=frozenset({"affiliate", "affiliates", "partner"})),
    ChannelRule(channel="organic_social", mediums=frozenset({"social", "organic_social", "social-network"})),
    ChannelRule(channel="referral", mediums=frozenset({"referral"})),
    ChannelRule(channel="organic_search", mediums=frozenset({"organic"})),
    ChannelRule(channel="organic_search", referrer_hosts=_SEARCH_HOSTS),
    ChannelRule(channel="organic_social", referrer_hosts=_SOCIAL_HOSTS),
)


class ChannelClassifier:
    """Callable rule table; ``site_hosts`` are the shop's own hosts (internal referrers mean direct)."""

    __slots__ = ("rules", "site_hosts")

    def __init__(self, *, rules: Sequence[ChannelRule] = DEFAULT_RULES, site_hosts: Sequence[str] = ()) -> None:
        self.rules = tuple(rules)
        self.site_hosts = tuple(site_hosts)

    def __call__(self, *, utm_source: str, utm_medium: str, referrer: str, page_url: str = "") -> str:
        source = utm_source.strip().lower()
        medium = utm_medium.strip().lower()
        host = _host(referrer)
        for rule in self.rules:
            if rule.matches(source, medium, host):
                return rule.channel
        internal = (*self.site_hosts, _host(page_url))
        if host and not any(h and (host == h or host.endswith("." + h)) for h in internal):
            return "referral"
        return "direct"


def _host(url: str) -> str:
    if not url:
        return ""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:  # a malformed URL (bad port, brackets) has no usable host
        return ""
    return host.removeprefix("www.")
