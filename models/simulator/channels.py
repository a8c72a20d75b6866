"""Marketing channels: how a session arrives (UTM campaign or referrer) and what each channel costs.

A :class:`Touch` is one concrete way to arrive: channel, campaign, the five UTM values (which end up both
in the landing URL and in ``context.campaign``), the referrer and where people land. Each channel has a
small fixed set of touches built from a seeded generator, so campaign names are stable across runs.

Spend: for every day x paid channel x campaign, clicks are the sessions that campaign brought (bots
included: click fraud is billed too) plus the clicks whose page never loaded the tracker; impressions
follow from the channel's click-through rate and cost from its CPC and CPM, with per-campaign price
levels and day-to-day noise.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import PAID_CHANNELS, SimulationConfig
from .formats import DAY_MS, date_of

# channel: (utm_medium, ((utm_source, referrer), ...), campaigns, utm_terms, utm_contents)
_PAID: dict[str, tuple[str, tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "paid_search": (
        "cpc",
        (
            ("google", "https://www.google.com/"),
            ("google", "https://www.google.com/"),
            ("bing", "https://www.bing.com/"),
        ),
        ("brand_core", "generic_shoes", "generic_outdoor", "shopping_pmax"),
        ("northwind outfitters", "running shoes", "rain jacket", "hiking boots", "wireless headphones", "gift ideas"),
        ("rsa_v1", "rsa_v2", "pla_feed"),
    ),
    "paid_social": (
        "paid_social",
        (
            ("facebook", "https://www.facebook.com/"),
            ("instagram", "https://l.instagram.com/"),
            ("tiktok", "https://www.tiktok.com/"),
        ),
        ("prospecting_lookalike", "retargeting_viewers", "holiday_video"),
        ("lookalike_1pct", "interest_outdoor", "site_visitors_30d"),
        ("carousel_1", "video_15s", "static_2"),
    ),
    "display": (
        "display",
        (("google", "https://googleads.g.doubleclick.net/"), ("criteo", ""), ("criteo", "")),
        ("holiday_banner", "retargeting_display"),
        ("news_sites", "weather_apps", "recipe_blogs"),
        ("300x250", "728x90", "320x50"),
    ),
    "affiliate": (
        "affiliate",
        (
            ("rakuten", "https://www.dealnews.example/"),
            ("awin", "https://cashback.example.net/"),
            ("skimlinks", "https://www.gearblog.example/"),
        ),
        ("partner_deals", "cashback_portal"),
        ("pub_1042", "pub_2210", "pub_3307"),
        ("text_link", "banner"),
    ),
    "email": (
        "email",
        (("newsletter", ""), ("crm", "")),
        ("weekly_newsletter", "cart_abandonment", "winback_60d", "black_friday_early"),
        ("all_subscribers", "cart_abandoners", "lapsed_customers"),
        ("hero_cta", "product_grid"),
    ),
}
_REFERRERS: dict[str, tuple[str, ...]] = {
    "organic_search": (
        "https://www.google.com/",
        "https://www.google.com/",
        "https://www.google.com/",
        "https://www.bing.com/",
        "https://duckduckgo.com/",
        "https://search.yahoo.com/",
    ),
    "organic_social": (
        "https://t.co/",
        "https://www.facebook.com/",
        "https://l.instagram.com/",
        "https://www.reddit.com/",
        "https://www.pinterest.com/",
    ),
    "referral": (
        "https://www.outdoorgearlab.example/best-rain-jackets",
        "https://blog.runnersworld.example/shoe-reviews",
        "https://www.giftguide.example/holiday-2026",
        "https://news.ycombinator.com/",
    ),
    "direct": ("",),
}
LANDINGS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "paid_search": (("product", "category", "search"), (0.5, 0.3, 0.2)),
    "organic_search": (("product", "category", "blog"), (0.45, 0.35, 0.2)),
    "paid_social": (("product", "sale"), (0.7, 0.3)),
    "organic_social": (("product", "blog"), (0.6, 0.4)),
    "email": (("sale", "product"), (0.6, 0.4)),
    "display": (("home", "category", "sale"), (0.4, 0.3, 0.3)),
    "affiliate": (("product", "sale"), (0.8, 0.2)),
    "referral": (("blog", "product"), (0.5, 0.5)),
    "direct": (("home", "product"), (0.9, 0.1)),
}


@dataclass(frozen=True, slots=True)
class Touch:
    """One way a session arrives. ``context`` is the Segment ``context.campaign`` (None without UTM)."""

    channel: str
    campaign: str | None
    referrer: str
    context: dict[str, str] | None
    query: str
    landings: tuple[str, ...]
    landing_weights: tuple[float, ...]


def _utm_query(ctx: Mapping[str, str]) -> str:
    parts = (
        ("utm_source", ctx["source"]),
        ("utm_medium", ctx["medium"]),
        ("utm_campaign", ctx["name"]),
        ("utm_term", ctx["term"]),
        ("utm_content", ctx["content"]),
    )
    return "&".join(f"{k}={v.replace(' ', '+')}" for k, v in parts)


class ChannelModel:
    """Draws touches according to the configured mix and turns paid sessions into spend records."""

    __slots__ = ("_cum", "_names", "_price_level", "_touches", "config")

    def __init__(self, *, config: SimulationConfig, rng: random.Random) -> None:
        self.config = config
        self._names = tuple(config.channel_mix)
        total = 0.0
        cum = []
        for name in self._names:
            total += config.channel_mix[name]
            cum.append(total)
        self._cum = tuple(cum)
        self._touches: dict[str, tuple[Touch, ...]] = {}
        for channel, (landings, weights) in LANDINGS.items():
            if channel in _PAID:
                medium, sources, campaigns, terms, contents = _PAID[channel]
                touches = []
                for campaign in campaigns:
                    for _ in range(4):
                        source, referrer = rng.choice(sources)
                        ctx = {
                            "source": source,
                            "medium": medium,
                            "name": campaign,
                            "term": rng.choice(terms),
                            "content": rng.choice(contents),
                        }
                        touches.append(Touch(channel, campaign, referrer, ctx, _utm_query(ctx), landings, weights))
                self._touches[channel] = tuple(touches)
            else:
                self._touches[channel] = tuple(
                    Touch(channel, None, ref, None, "", landings, weights) for ref in _REFERRERS[channel]
                )
        self._price_level = {
            (channel, campaign): round(math.exp(rng.gauss(0.0, 0.25)), 3)
            for channel in PAID_CHANNELS
            for campaign in _PAID[channel][2]
        }

    def draw(self, rng: random.Random) -> Touch:
        """A touch from the configured channel mix."""
        channel = self._names[bisect.bisect(self._cum, rng.random() * self._cum[-1])]
        touches = self._touches[channel]
        return touches[int(rng.random() * len(touches))]

    def touch_for(self, rng: random.Random, channel: str) -> Touch:
        """A touch of the given channel (bots pick their channel themselves)."""
        return rng.choice(self._touches[channel])

    @staticmethod
    def campaigns(channel: str) -> tuple[str, ...]:
        """The campaign names of a paid channel."""
        return _PAID[channel][2]

    def spend(self, rng: random.Random, sessions: Mapping[tuple[int, str, str], int]) -> list[dict[str, Any]]:
        """Daily spend records for every day x paid channel x campaign.

        ``sessions`` counts sessions per (day index, channel, campaign); missing keys mean none.
        """
        cfg = self.config
        start_ms = int(cfg.start.timestamp() * 1000)
        out = []
        for day in range(cfg.days):
            date = date_of(start_ms + day * DAY_MS)
            for channel in PAID_CHANNELS:
                media = cfg.paid_media[channel]
                for campaign in _PAID[channel][2]:
                    n = sessions.get((day, channel, campaign), 0)
                    clicks = n + poisson(rng, 0.12 * n + 0.3)
                    reach = (clicks + 0.5) / max(media.ctr, 1e-6) * rng.lognormvariate(0.0, 0.15)
                    impressions = max(clicks, round(reach))
                    price = self._price_level[(channel, campaign)] * rng.lognormvariate(0.0, 0.1)
                    cost = clicks * media.cpc * price + impressions * media.cpm * price / 1000.0
                    out.append(
                        {
                            "date": date,
                            "channel": channel,
                            "campaign": campaign,
                            "cost": round(cost, 2),
                            "currency": "USD",
                            "impressions": impressions,
                            "clicks": clicks,
                        }
                    )
        return out


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth's product method below 30, a rounded normal above)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
