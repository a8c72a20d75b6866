"""The plan of a simulated world: people, devices, accounts, sessions and orders.

These are plain slotted records. They are filled in three passes: :mod:`population` creates people and
devices, :mod:`customers` lays out each person's sessions and purchases (the latent truth), and
:mod:`logins` walks every session in time order to decide who is logged in where. :mod:`journeys` then
renders a session into events; nothing in a plan depends on how (or whether) it was rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .catalog import Product
from .channels import Touch
from .names import Profile


@dataclass(slots=True, eq=False)
class Device:
    """One browser on one device: one anonymousId (a shared device is used by several people)."""

    anonymous_id: str
    device_type: str
    os_name: str
    os_version: str
    user_agent: str
    clock_skew_ms: int
    owner: int
    users: list[int]
    at_work: bool = False
    context_device: dict[str, str] = field(default_factory=dict)
    context_os: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.context_device = {"type": self.device_type}
        self.context_os = {"name": self.os_name, "version": self.os_version}


@dataclass(slots=True, eq=False)
class Account:
    """A shop account: the userId and the traits the person gave when creating it."""

    user_id: str
    profile: Profile
    created_ms: int
    traits: dict[str, Any]


@dataclass(slots=True, eq=False)
class Person:
    """A human shopper with their latent customer parameters (see the package docstring)."""

    index: int
    person_id: str
    household: int
    country: str
    locale: str
    currency: str
    tz_hours: int
    home_ip: str
    office: int | None
    office_ip: str | None
    profile: Profile
    devices: list[Device]
    device_weights: list[float]
    category_weights: list[float]
    existing: bool
    acquired_ms: int
    purchase_rate: float
    browse_rate: float
    session_rate: float
    dropout_prob: float
    spend_rate: float
    consent: dict[str, Any] | None
    consent_after: dict[str, Any] | None
    erasure_ms: int | None
    account: Account | None = None
    second_account: Account | None = None
    second_device: Device | None = None
    emails: list[str] = field(default_factory=list)
    guest_orders: list[str] = field(default_factory=list)

    @property
    def user_ids(self) -> list[str]:
        """Every userId the person has used so far."""
        return [a.user_id for a in (self.account, self.second_account) if a is not None]


@dataclass(slots=True, eq=False)
class BotAgent:
    """A crawler or scraper: one IP, one user agent, machine-regular timing."""

    bot_id: str
    user_agent: str
    bot_like: bool
    ip: str
    interval_ms: int
    keeps_cookie: bool
    devices: list[Device] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Order:
    """A completed purchase; money in the person's currency, rounded to cents."""

    order_id: str
    checkout_id: str
    items: list[tuple[Product, int]]
    currency: str
    subtotal: float
    discount: float
    coupon: str | None
    shipping: float
    tax: float
    revenue: float
    total: float
    revenue_usd: float


@dataclass(slots=True, eq=False)
class SessionPlan:
    """Everything decided about a session before it is rendered into events."""

    person: Person | None
    device: Device
    start_ms: int
    channel: str
    campaign: str | None
    touch: Touch
    ip: str
    probability: float
    purchased: bool
    depth: int
    frustrated: bool
    order: Order | None = None
    bot: BotAgent | None = None
    consent: dict[str, Any] | None = None
    consent_update: dict[str, Any] | None = None
    consent_update_message_id: str | None = None
    user_id_at_start: str | None = None
    login: Account | None = None
    checkout: str | None = None
    checkout_account: Account | None = None
    guest_profile: Profile | None = None
    feedback: tuple[str, str, int, str] | None = None
    seed: int = 0
    first_message_id: str = ""
    index: int = 0
