"""People, households, offices and devices, with each person's latent customer parameters.

People are created household by household: members share a home IP and an address (and often a last
name); some households share one desktop or tablet between two members. Some people work in an office
whose NAT address many unrelated people share. Each person draws the buy-till-you-die parameters described
in the package docstring (purchase rate, dropout probability, spend rate) once, here.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from .catalog import CATEGORIES, CURRENCY
from .config import SimulationConfig
from .devices import carrier_pools, clock_skew_ms, make_browser, office_ip, residential_ip
from .formats import DAY_MS, iso_ms, uuid4
from .names import Profile, make_profile, variant
from .plans import Account, Device, Person

_LOCALES = {
    "US": ("en-US",),
    "CA": ("en-CA", "en-CA", "en-CA", "fr-CA"),
    "GB": ("en-GB",),
    "DE": ("de-DE",),
    "FR": ("fr-FR",),
}
_TIMEZONES = {"US": (-5, -5, -5, -6, -6, -7, -8, -8), "CA": (-5, -5, -8), "GB": (0,), "DE": (1,), "FR": (1,)}
_CATEGORIES = ("analytics", "marketing", "personalization")


@dataclass(slots=True)
class Population:
    """Everyone in the simulated world, plus the shared address pools."""

    persons: list[Person]
    devices: list[Device]
    offices: list[str]
    carriers: dict[str, tuple[str, ...]]
    accounts: dict[str, Account]


def new_user_id(rng: random.Random) -> str:
    """A shop userId, as a backend would mint it."""
    return f"usr_{rng.getrandbits(48):012x}"


def make_account(rng: random.Random, person: Person, *, created_ms: int, second: bool = False) -> Account:
    """An account for the person; a second account uses slightly different details."""
    profile = person.profile
    if second:
        profile = variant(rng, profile, other_email=True, mistype=rng.random() < 0.5)
    created = iso_ms(created_ms)
    traits = profile.traits(created_at=created, with_address=rng.random() < 0.8)
    account = Account(user_id=new_user_id(rng), profile=profile, created_ms=created_ms, traits=traits)
    if profile.email not in person.emails:
        person.emails.append(profile.email)
    return account


def _consent(rng: random.Random, cfg: SimulationConfig) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if rng.random() >= cfg.consent_banner_share:
        return None, None
    prefs = {
        "analytics": rng.random() >= cfg.analytics_denied_share,
        "marketing": rng.random() >= cfg.marketing_denied_share,
        "personalization": rng.random() >= cfg.personalization_denied_share,
    }
    after = None
    if rng.random() < cfg.consent_change_share:
        flipped = rng.choice(_CATEGORIES)
        after = {"categoryPreferences": {**prefs, flipped: not prefs[flipped]}}
    return {"categoryPreferences": prefs}, after


def _weighted(rng: random.Random, weights: tuple[float, ...]) -> int:
    return rng.choices(range(len(weights)), weights=weights)[0]


class PopulationBuilder:
    """Builds :class:`Population` for a config; one instance per simulation."""

    __slots__ = ("_countries", "_device_types", "config", "start_ms")

    def __init__(self, *, config: SimulationConfig) -> None:
        self.config = config
        self.start_ms = int(config.start.timestamp() * 1000)
        self._countries = (tuple(config.countries), tuple(config.countries.values()))
        self._device_types = (tuple(config.device_types), tuple(config.device_types.values()))

    def build(self, rng: random.Random) -> Population:
        """Create ``config.users`` people in households, with devices, offices and accounts."""
        cfg = self.config
        n_offices = max(1, round(cfg.users * cfg.office_share / cfg.office_size))
        offices = [office_ip(rng) for _ in range(n_offices)]
        carriers = carrier_pools(rng)
        persons: list[Person] = []
        devices: list[Device] = []
        accounts: dict[str, Account] = {}
        household = 0
        while len(persons) < cfg.users:
            size = min(1 + _weighted(rng, cfg.household_sizes), cfg.users - len(persons))
            members = self._household(rng, household, size, offices, devices, first_index=len(persons))
            for person in members:
                if person.account is not None:
                    accounts[person.account.user_id] = person.account
                if person.second_account is not None:
                    accounts[person.second_account.user_id] = person.second_account
            persons.extend(members)
            household += 1
        return Population(persons=persons, devices=devices, offices=offices, carriers=carriers, accounts=accounts)

    def _household(
        self,
        rng: random.Random,
        household: int,
        size: int,
        offices: list[str],
        devices: list[Device],
        *,
        first_index: int,
    ) -> list[Person]:
        cfg = self.config
        country = rng.choices(*self._countries)[0]
        home_ip = residential_ip(rng, country)
        first = make_profile(rng, country)
        address = (first.street, first.city, first.postal_code)
        members = []
        for k in range(size):
            if k == 0:
                profile = first
            else:
                last = first.last_name if rng.random() < 0.7 else None
                profile = make_profile(rng, country, last_name=last, address=address)
            members.append(
                self._person(
                    rng,
                    index=first_index + k,
                    household=household,
                    country=country,
                    home_ip=home_ip,
                    profile=profile,
                    offices=offices,
                )
            )
        if size >= 2 and rng.random() < cfg.shared_device_share:
            owner, other = members[0], members[1 + rng.randrange(size - 1)]
            shareable = [d for d in owner.devices if d.device_type != "mobile"]
            if shareable:
                shared = shareable[0]
                other.devices[-1] = shared
                shared.users.append(other.index)
        for person in members:
            devices.extend(d for d in person.devices if d.owner == person.index)
            work = [d for d in person.devices if d.device_type == "desktop" and d.owner == person.index]
            if person.office is not None and work:
                work[0].at_work = True
            elif person.office is not None:
                person.office, person.office_ip = None, None
            self._accounts(rng, person)
        return members

    def _person(
        self,
        rng: random.Random,
        *,
        index: int,
        household: int,
        country: str,
        home_ip: str,
        profile: Profile,
        offices: list[str],
    ) -> Person:
        cfg = self.config
        n_devices = 1 + _weighted(rng, cfg.device_counts)
        person_devices = []
        for _ in range(n_devices):
            kind = rng.choices(*self._device_types)[0]
            browser = make_browser(rng, kind)
            person_devices.append(
                Device(
                    anonymous_id=uuid4(rng),
                    device_type=kind,
                    os_name=browser.os_name,
                    os_version=browser.os_version,
                    user_agent=browser.user_agent,
                    clock_skew_ms=clock_skew_ms(rng, share=cfg.clock_skew_share, minutes=cfg.clock_skew_minutes),
                    owner=index,
                    users=[index],
                )
            )
        office = rng.randrange(len(offices)) if rng.random() < cfg.office_share else None
        existing = rng.random() < cfg.existing_customer_share
        acquired = self.start_ms if existing else self.start_ms + round(rng.random() * cfg.days * DAY_MS)
        purchase_rate = rng.gammavariate(cfg.purchase_rate_shape, 1.0 / cfg.purchase_rate_rate)
        browse_rate = rng.gammavariate(cfg.browse_rate_shape, cfg.browse_rate_scale)
        consent, consent_after = _consent(rng, cfg)
        erasure = None
        if rng.random() < cfg.erasure_share:
            erasure = acquired + round(rng.random() * (self.start_ms + cfg.days * DAY_MS - acquired))
        person = Person(
            index=index,
            person_id=f"person_{index:06d}",
            household=household,
            country=country,
            locale=rng.choice(_LOCALES[country]),
            currency=CURRENCY[country],
            tz_hours=rng.choice(_TIMEZONES[country]),
            home_ip=home_ip,
            office=office,
            office_ip=offices[office] if office is not None else None,
            profile=profile,
            devices=person_devices,
            device_weights=[1.0] + [0.5] * (n_devices - 1),
            category_weights=[rng.gammavariate(0.5, 1.0) + 1e-3 for _ in CATEGORIES],
            existing=existing,
            acquired_ms=acquired,
            purchase_rate=purchase_rate,
            browse_rate=browse_rate,
            session_rate=browse_rate + cfg.sessions_per_purchase * purchase_rate,
            dropout_prob=rng.betavariate(cfg.dropout_a, cfg.dropout_b),
            spend_rate=rng.gammavariate(cfg.spend_q, 1.0 / cfg.spend_gamma),
            consent=consent,
            consent_after=consent_after,
            erasure_ms=erasure,
        )
        person.emails.append(profile.email)
        return person

    def _accounts(self, rng: random.Random, person: Person) -> None:
        if not person.existing:
            return
        cfg = self.config
        created = self.start_ms - round((30 + rng.random() * 1500) * DAY_MS)
        person.account = make_account(rng, person, created_ms=created)
        own = [d for d in person.devices if d.owner == person.index]
        if len(own) >= 2 and rng.random() < cfg.second_account_share:
            second_created = created + round(rng.random() * (self.start_ms - created))
            person.second_account = make_account(rng, person, created_ms=second_created, second=True)
            person.second_device = own[-1]


def baseline_logit(person: Person) -> float:
    """Log-odds of buying in a session with no channel, device or intent effects.

    The person's expected purchases per session is ``purchase_rate / session_rate`` (at most
    ``1 / sessions_per_purchase``); the log-odds is clipped away from 0 and 1 so rare browsers stay finite.
    """
    p = min(max(person.purchase_rate / person.session_rate, 1e-5), 0.6)
    return math.log(p / (1.0 - p))
