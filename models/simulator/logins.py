"""Who is logged in where: logins, sign-ups and guest checkouts on the global timeline.

A browser stays logged in once someone logs in on it (no logout), so on a shared family desktop one
person's events can carry another person's userId; that trap is deliberate and visible in the truth
(sessions carry the true ``person_id``). Walking all sessions in time order also fixes each session's
random seed and the message ids the truth refers to (first event, consent update, feedback), so the truth
never depends on rendering.
"""

from __future__ import annotations

import random

from .catalog import FEEDBACK
from .config import SimulationConfig
from .formats import uuid4
from .names import variant
from .plans import Account, Person, SessionPlan
from .population import make_account

_SENTIMENTS = ("positive", "neutral", "negative")


class LoginPlanner:
    """Decides login, checkout identity, feedback and seeds for every session, in start-time order."""

    __slots__ = ("_accounts", "_device_user", "config")

    def __init__(self, *, config: SimulationConfig, accounts: dict[str, Account]) -> None:
        self.config = config
        self._accounts = accounts
        self._device_user: dict[str, str] = {}

    def __call__(self, rng: random.Random, sessions: list[SessionPlan]) -> None:
        """Fill the identity fields of ``sessions`` (already sorted by start time) in place."""
        for index, plan in enumerate(sessions):
            plan.index = index
            plan.seed = rng.getrandbits(64)
            plan.first_message_id = uuid4(rng)
            if plan.person is None:
                continue
            self._identity(rng, plan, plan.person)
            if plan.consent_update is not None:
                plan.consent_update_message_id = uuid4(rng)
            self._feedback(rng, plan)

    def _own_account(self, person: Person, plan: SessionPlan) -> Account | None:
        if person.second_account is not None and plan.device is person.second_device:
            return person.second_account
        return person.account

    def _identity(self, rng: random.Random, plan: SessionPlan, person: Person) -> None:
        cfg = self.config
        aid = plan.device.anonymous_id
        current = self._device_user.get(aid)
        plan.user_id_at_start = current
        own = self._own_account(person, plan)
        if current is None and own is not None and rng.random() < cfg.login_probability:
            plan.login = own
            current = own.user_id
        if plan.order is not None:
            if current is not None:
                plan.checkout = "logged_in"
                plan.checkout_account = self._accounts[current]
            elif own is not None and rng.random() >= cfg.account_guest_share:
                plan.checkout = "login"
                plan.checkout_account = own
                current = own.user_id
            elif own is None and rng.random() >= cfg.guest_checkout_share:
                account = make_account(rng, person, created_ms=plan.start_ms)
                person.account = account
                self._accounts[account.user_id] = account
                plan.checkout = "signup"
                plan.checkout_account = account
                current = account.user_id
            else:
                plan.checkout = "guest"
                profile = person.profile
                if rng.random() < cfg.guest_trait_variation:
                    profile = variant(rng, profile, other_email=rng.random() < 0.4, mistype=rng.random() < 0.6)
                plan.guest_profile = profile
                person.guest_orders.append(plan.order.order_id)
                if profile.email not in person.emails:
                    person.emails.append(profile.email)
        if current is not None:
            self._device_user[aid] = current

    def _feedback(self, rng: random.Random, plan: SessionPlan) -> None:
        share = self.config.feedback_share * (4.0 if plan.frustrated else 1.0)
        if rng.random() >= share:
            return
        if plan.frustrated:
            weights = (0.05, 0.15, 0.8)
        elif plan.purchased:
            weights = (0.7, 0.2, 0.1)
        else:
            weights = (0.35, 0.35, 0.3)
        sentiment = rng.choices(_SENTIMENTS, weights=weights)[0]
        texts, ratings = FEEDBACK[sentiment]
        plan.feedback = (uuid4(rng), sentiment, rng.choice(ratings), rng.choice(texts))
