from __future__ import annotations

import pytest

from models.channels import CHANNELS, DEFAULT_RULES, ChannelClassifier, ChannelRule


@pytest.mark.parametrize(
    ("source", "medium", "referrer", "channel"),
    [
        ("google", "cpc", "", "paid_search"),
        ("bing", "paid_search", "", "paid_search"),
        ("facebook", "cpc", "", "paid_social"),
        ("instagram", "paid_social", "", "paid_social"),
        ("newsletter", "email", "", "email"),
        ("dv360", "display", "", "display"),
        ("awin", "affiliate", "", "affiliate"),
        ("", "", "https://www.google.com/", "organic_search"),
        ("", "", "https://duckduckgo.com/?q=x", "organic_search"),
        ("", "", "https://t.co/abc", "organic_social"),
        ("", "", "https://m.facebook.com/", "organic_social"),
        ("", "", "https://someblog.example/post", "referral"),
        ("", "", "https://shop.example/cart", "direct"),
        ("", "", "", "direct"),
        (" Google ", " CPC ", "", "paid_search"),
    ],
)
def test_default_rules(source: str, medium: str, referrer: str, channel: str) -> None:
    classify = ChannelClassifier(site_hosts=["shop.example"])
    assert classify(utm_source=source, utm_medium=medium, referrer=referrer) == channel
    assert channel in CHANNELS


def test_referrer_on_the_pages_own_host_is_internal() -> None:
    classify = ChannelClassifier()
    assert (
        classify(utm_source="", utm_medium="", referrer="https://www.shop.test/a", page_url="https://shop.test/b")
        == "direct"
    )
    assert (
        classify(utm_source="", utm_medium="", referrer="https://blog.test/", page_url="https://shop.test/b")
        == "referral"
    )
    assert classify(utm_source="", utm_medium="", referrer="http://[broken", page_url="") == "direct"


def test_user_rules_come_first() -> None:
    podcast = ChannelRule(channel="podcast", mediums=frozenset({"audio"}))
    classify = ChannelClassifier(rules=(podcast, *DEFAULT_RULES))
    assert classify(utm_source="spotify", utm_medium="audio", referrer="") == "podcast"
    assert ChannelClassifier()(utm_source="spotify", utm_medium="audio", referrer="") == "direct"
