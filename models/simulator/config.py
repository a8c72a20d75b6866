"""Settings of the traffic simulator: one frozen, keyword-only object.

Every field is documented (with its default) in the package docstring, which is where the generative model
is described; this module only holds the values and checks them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import orjson

from models.channels import CHANNELS

PAID_CHANNELS = ("paid_search", "paid_social", "display", "affiliate", "email")
DEVICE_TYPES = ("desktop", "mobile", "tablet")
COUNTRIES = ("US", "CA", "GB", "DE", "FR")


class SimulationConfigError(ValueError):
    """A setting of :class:`SimulationConfig` is out of range or unknown."""


@dataclass(frozen=True, kw_only=True)
class Funnel:
    """Reach probabilities of the funnel stages for sessions that do not purchase.

    Each share is conditional on the previous stage and holds for a session whose true purchase
    probability equals ``reference_probability``; a session's intent moves every stage in log-odds by
    ``intent_slope * (logit(p) - logit(reference_probability))``. Purchasing sessions go through every stage.
    """

    product_view: float = 0.55
    add_to_cart: float = 0.25
    cart_view: float = 0.6
    checkout: float = 0.35
    reference_probability: float = 0.012
    intent_slope: float = 0.4


@dataclass(frozen=True, kw_only=True)
class PaidMedia:
    """Price of a paid channel: cost per click, cost per thousand impressions, click-through rate."""

    cpc: float
    cpm: float
    ctr: float


def _mapping(values: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(values))


def _default_channel_mix() -> Mapping[str, float]:
    return _mapping(
        {
            "direct": 0.24,
            "organic_search": 0.24,
            "paid_search": 0.15,
            "paid_social": 0.1,
            "email": 0.08,
            "organic_social": 0.07,
            "display": 0.05,
            "affiliate": 0.04,
            "referral": 0.03,
        }
    )


def _default_channel_lift() -> Mapping[str, float]:
    return _mapping(
        {
            "direct": 0.0,
            "organic_search": 0.25,
            "paid_search": 0.35,
            "paid_social": 0.15,
            "email": 0.6,
            "organic_social": 0.1,
            "display": 0.05,
            "affiliate": 0.45,
            "referral": 0.2,
        }
    )


def _default_channel_carryover() -> Mapping[str, float]:
    return _mapping(
        {
            "direct": 0.0,
            "organic_search": 0.1,
            "paid_search": 0.15,
            "paid_social": 0.4,
            "email": 0.3,
            "organic_social": 0.2,
            "display": 0.5,
            "affiliate": 0.1,
            "referral": 0.1,
        }
    )


def _default_paid_media() -> Mapping[str, PaidMedia]:
    return _mapping(
        {
            "paid_search": PaidMedia(cpc=1.1, cpm=0.0, ctr=0.04),
            "paid_social": PaidMedia(cpc=0.7, cpm=1.5, ctr=0.012),
            "display": PaidMedia(cpc=0.35, cpm=2.0, ctr=0.003),
            "affiliate": PaidMedia(cpc=0.6, cpm=0.0, ctr=0.02),
            "email": PaidMedia(cpc=0.0, cpm=2.0, ctr=0.03),
        }
    )


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """Everything that shapes a simulated world; the same config always gives the same bytes.

    >>> SimulationConfig(users=10).days
    30
    >>> try:
    ...     SimulationConfig(malformed_rate=2.0)
    ... except SimulationConfigError as e:
    ...     print(e)
    malformed_rate must be in [0, 0.5], got 2.0
    """

    users: int = 1000
    days: int = 30
    seed: int = 0
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    malformed_rate: float = 0.0
    holdout_days: int = 90
    # people, households, devices
    countries: Mapping[str, float] = field(
        default_factory=lambda: _mapping({"US": 0.74, "CA": 0.06, "GB": 0.1, "DE": 0.06, "FR": 0.04})
    )
    household_sizes: tuple[float, ...] = (0.45, 0.3, 0.15, 0.1)
    device_counts: tuple[float, ...] = (0.45, 0.35, 0.2)
    device_types: Mapping[str, float] = field(
        default_factory=lambda: _mapping({"mobile": 0.55, "desktop": 0.35, "tablet": 0.1})
    )
    shared_device_share: float = 0.3
    office_share: float = 0.2
    office_size: int = 25
    mobile_roaming_share: float = 0.5
    clock_skew_share: float = 0.08
    clock_skew_minutes: float = 5.0
    # accounts and logins
    existing_customer_share: float = 0.3
    login_probability: float = 0.4
    second_account_share: float = 0.08
    guest_checkout_share: float = 0.45
    account_guest_share: float = 0.1
    guest_trait_variation: float = 0.4
    # consent and privacy
    consent_banner_share: float = 0.94
    analytics_denied_share: float = 0.1
    marketing_denied_share: float = 0.25
    personalization_denied_share: float = 0.15
    consent_change_share: float = 0.05
    erasure_share: float = 0.005
    # bots
    bot_session_share: float = 0.02
    bot_user_agent_share: float = 0.5
    # channels
    channel_mix: Mapping[str, float] = field(default_factory=_default_channel_mix)
    channel_lift: Mapping[str, float] = field(default_factory=_default_channel_lift)
    channel_carryover: Mapping[str, float] = field(default_factory=_default_channel_carryover)
    carryover_half_life_days: float = 3.0
    paid_media: Mapping[str, PaidMedia] = field(default_factory=_default_paid_media)
    # buy-till-you-die customer process (BG/NBD + Gamma-Gamma), rates per day, money in USD
    purchase_rate_shape: float = 0.5
    purchase_rate_rate: float = 180.0
    dropout_a: float = 0.79
    dropout_b: float = 2.43
    spend_shape: float = 6.0
    spend_q: float = 4.0
    spend_gamma: float = 40.0
    browse_rate_shape: float = 1.5
    browse_rate_scale: float = 0.1
    sessions_per_purchase: float = 3.0
    # session intent and funnel
    intent_noise: float = 0.8
    device_lift: Mapping[str, float] = field(
        default_factory=lambda: _mapping({"desktop": 0.0, "mobile": -0.25, "tablet": -0.1})
    )
    frustration_share: float = 0.08
    frustration_lift: float = -0.8
    cart_return_lift: float = 0.6
    funnel: Funnel = field(default_factory=Funnel)
    checkout_failure_share: float = 0.06
    feedback_share: float = 0.02
    max_session_minutes: float = 45.0

    def __post_init__(self) -> None:
        for name in ("countries", "device_types", "channel_mix", "channel_lift", "channel_carryover"):
            object.__setattr__(self, name, _mapping(getattr(self, name)))
        object.__setattr__(self, "paid_media", _mapping(self.paid_media))
        object.__setattr__(self, "device_lift", _mapping(self.device_lift))
        self._check()

    def _check(self) -> None:
        _require(self.users >= 0, f"users must be >= 0, got {self.users}")
        _require(self.days >= 1, f"days must be >= 1, got {self.days}")
        _require(self.holdout_days >= 0, f"holdout_days must be >= 0, got {self.holdout_days}")
        _require(
            self.start.tzinfo is not None and self.start.utcoffset() == timedelta(0),
            f"start must be an aware UTC datetime, got {self.start!r}",
        )
        _require(0.0 <= self.malformed_rate <= 0.5, f"malformed_rate must be in [0, 0.5], got {self.malformed_rate}")
        _check_weights("countries", self.countries, COUNTRIES)
        _check_weights("device_types", self.device_types, DEVICE_TYPES)
        _check_weights("channel_mix", self.channel_mix, CHANNELS)
        for name, mapping, keys in (
            ("channel_lift", self.channel_lift, CHANNELS),
            ("channel_carryover", self.channel_carryover, CHANNELS),
            ("paid_media", self.paid_media, PAID_CHANNELS),
            ("device_lift", self.device_lift, DEVICE_TYPES),
        ):
            _require(set(mapping) == set(keys), f"{name} needs exactly the keys {sorted(keys)}")
        for name, weights, n in (
            ("household_sizes", self.household_sizes, 1),
            ("device_counts", self.device_counts, 3),
        ):
            _require(
                len(weights) >= n and all(w >= 0 for w in weights) and sum(weights) > 0,
                f"{name} must be non-negative weights, got {weights}",
            )
        _require(len(self.device_counts) == 3, "device_counts holds the weights of 1, 2 and 3 devices")
        for f in dataclasses.fields(self):
            if f.name.endswith("_share"):
                value = getattr(self, f.name)
                _require(0.0 <= value <= 1.0, f"{f.name} must be in [0, 1], got {value}")
        for name in ("purchase_rate_shape", "purchase_rate_rate", "dropout_a", "dropout_b", "spend_shape"):
            _require(getattr(self, name) > 0, f"{name} must be > 0")
        _require(self.spend_q > 1, "spend_q must be > 1 so that the mean spend exists")
        _require(self.sessions_per_purchase >= 1, "sessions_per_purchase must be >= 1")
        _require(self.office_size >= 1, "office_size must be >= 1")

    def __hash__(self) -> int:
        # The mappings are read-only views, which do not hash; the recorded form does, and is canonical.
        return hash(orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS))

    @property
    def end(self) -> datetime:
        """End of the simulated period (exclusive)."""
        return self.start + timedelta(days=self.days)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-serialisable values (recorded in the ground truth)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat().replace("+00:00", "Z")
            elif isinstance(value, Funnel):
                value = dataclasses.asdict(value)
            elif isinstance(value, Mapping):
                value = {k: dataclasses.asdict(v) if isinstance(v, PaidMedia) else v for k, v in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _require(ok: bool, msg: str) -> None:
    if not ok:
        raise SimulationConfigError(msg)


def _check_weights(name: str, mapping: Mapping[str, float], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(mapping) - set(allowed))
    _require(not unknown, f"{name} has unknown keys {unknown}; allowed: {list(allowed)}")
    _require(
        all(v >= 0 for v in mapping.values()) and sum(mapping.values()) > 0,
        f"{name} must be non-negative weights with a positive sum",
    )
