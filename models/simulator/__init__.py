"""A realistic e-commerce traffic simulator with ground truth.

It writes the Segment-spec events a shop's trackers would send (page, track, identify, alias), the
marketing spend behind them, and the truth a model should recover: who is who, what drove each purchase,
what each channel really adds, which customers will buy again, which sessions are bots and which lines
are broken. Everything is deterministic for a given config: the same seed gives the same bytes.

>>> sim = simulate(SimulationConfig(users=5, days=1, seed=7))
>>> lines = list(sim.events())
>>> isinstance(lines[0], bytes), lines[0].startswith(b"{"), lines[0].endswith(b"\\n")
(True, True, False)
>>> lines == list(simulate(SimulationConfig(users=5, days=1, seed=7)).events())
True
>>> sim.truth()["summary"]["persons"], sim.truth()["summary"]["lines"] == len(lines)
(5, True)

API: ``simulate(config, *, progress=None) -> Simulation``; ``Simulation.events(*, progress=None)``
(bytes, one JSON object each, no newline, in arrival order), ``Simulation.timed_events()`` (the same
with the simulated ``receivedAt`` in epoch ms), ``Simulation.spend()``, ``Simulation.truth()``,
``Simulation.truth_json()``; helpers ``write_ndjson(sim, path_or_binary_file)``, ``truth_json(sim)``,
``spend_ndjson(sim)``. ``progress`` callbacks receive increments (people planned; lines emitted).
Planning is eager and cheap; events are rendered lazily session by session, so a run of any length
streams in bounded memory, and ``truth()`` renders once silently if no ``events()`` pass has finished.

The generative model (defaults in brackets, all fields of :class:`SimulationConfig`)
-----------------------------------------------------------------------------------

Scale and time: ``users`` [1000] people over ``days`` [30] from ``start`` [2026-11-01T00:00Z], random
``seed`` [0]; the customer process runs on for ``holdout_days`` [90] without being rendered;
``malformed_rate`` [0.0] of events are turned into noise (below).

People. Households of 1-4 (``household_sizes`` weights [0.45, 0.3, 0.15, 0.1]) share a home IP and an
address, often a last name; in a multi-person household one desktop or tablet is shared by two members
with probability ``shared_device_share`` [0.3] (one browser, one anonymousId, two people). Countries
``countries`` [US 0.74, CA 0.06, GB 0.1, DE 0.06, FR 0.04] set locale, time zone, currency (GB: GBP,
DE/FR: EUR, else USD) and name/address styles. Each person has 1-3 devices (``device_counts`` weights
[0.45, 0.35, 0.2]) of ``device_types`` [mobile 0.55, desktop 0.35, tablet 0.1], each with a real-world
user agent and one anonymousId. ``office_share`` [0.2] of people use their desktop from an office whose
NAT IP ``office_size`` [25] people share (weekdays 9-18 local); phones roam onto carrier-NAT IPs shared
by strangers in ``mobile_roaming_share`` [0.5] of their sessions. ``clock_skew_share`` [0.08] of devices
have a clock off by N(0, ``clock_skew_minutes`` [5.0]) minutes.

Customers over time (buy-till-you-die; Fader, Hardie & Lee 2005 BG/NBD and Gamma-Gamma). Per person:
purchase rate λ ~ Gamma(shape ``purchase_rate_shape`` [0.5], rate ``purchase_rate_rate`` [180.0] per
day), dropout probability p ~ Beta(``dropout_a`` [0.79], ``dropout_b`` [2.43]) applied after each
purchase (a dead customer never comes back), spend rate nu ~ Gamma(shape ``spend_q`` [4.0], rate
``spend_gamma`` [40.0]) and each order's value z ~ Gamma(shape ``spend_shape`` [6.0], rate nu), so the
person's mean order value is 6/nu (USD; population mean 6*40/3 = 80). Sessions arrive as a Poisson process
with rate v = b + ``sessions_per_purchase`` [3.0] * λ per day, b ~ Gamma(``browse_rate_shape`` [1.5],
scale ``browse_rate_scale`` [0.1]), shaped by a weekday pattern and a diurnal profile in local time, at
least 65 minutes apart. ``existing_customer_share`` [0.3] of people are customers with an account from
the start; the others are acquired at a uniform time in the period, with their first session then.

Purchase intent. Each session has a latent purchase probability (recorded in the truth):

    logit P(buy) = logit(λ/v) + lift[channel] + Σ_earlier touches carryover[c_j] · 2^(-Δt/half_life)
                   + device_lift[device] + frustration_lift·frustrated + cart_return_lift·[cart abandoned
                   in the last 7 days] + ε,   ε ~ N(0, intent_noise²)

with ``channel_lift`` (immediate, log-odds vs direct) [direct 0, organic_search 0.25, paid_search 0.35,
paid_social 0.15, email 0.6, organic_social 0.1, display 0.05, affiliate 0.45, referral 0.2],
``channel_carryover`` (per earlier touch) [direct 0, organic_search 0.1, paid_search 0.15, paid_social
0.4, email 0.3, organic_social 0.2, display 0.5, affiliate 0.1, referral 0.1], ``carryover_half_life_days``
[3.0], ``device_lift`` [desktop 0, mobile -0.25, tablet -0.1], ``frustration_share`` [0.08] of sessions
frustrated with ``frustration_lift`` [-0.8], ``cart_return_lift`` [0.6], ``intent_noise`` [0.8]. About 3%
of human sessions buy. The probability drives the funnel: buyers go all the way; the others reach product
view, add to cart, cart view and checkout with the conditional shares of ``funnel`` (``Funnel``:
``product_view`` 0.55, ``add_to_cart`` 0.25, ``cart_view`` 0.6, ``checkout`` 0.35 at
``reference_probability`` 0.012, each shifted in log-odds by ``intent_slope`` 0.4 times the session's
log-odds above that reference). ``checkout_failure_share`` [0.06] of buyers see a failed checkout first;
``feedback_share`` [0.02] of sessions (4x when frustrated) leave feedback whose sentiment follows the
session (frustrated: mostly negative; bought: mostly positive). Sessions last at most
``max_session_minutes`` [45.0].

Channels. Each session draws its channel from ``channel_mix`` [direct 0.24, organic_search 0.24,
paid_search 0.15, paid_social 0.1, email 0.08, organic_social 0.07, display 0.05, affiliate 0.04,
referral 0.03] and a concrete touch: paid channels and email carry ``utm_source/medium/campaign/term/
content`` on the landing URL and in ``context.campaign``; organic search/social and referral carry a
referrer; direct carries neither. Spend per day x paid channel x campaign follows ``paid_media`` (CPC,
CPM, CTR) [paid_search 1.1/0/0.04, paid_social 0.7/1.5/0.012, display 0.35/2.0/0.003, affiliate
0.6/0/0.02, email 0/2.0/0.03], with clicks = sessions (bots included) plus unloaded clicks.

Identity. On a device nobody is logged in to, an account holder logs in with ``login_probability`` [0.4]
per session, and stays logged in (so on a shared device one person's events may carry the other's
userId). Buyers check out logged in, log in at checkout, or go guest: account holders with
``account_guest_share`` [0.1], others with ``guest_checkout_share`` [0.45] (the rest sign up: alias +
identify). Guest details (``context.traits`` and ``properties.email`` of Order Completed) differ from the
person's usual ones in ``guest_trait_variation`` [0.4] of checkouts (nickname, typo, another email).
``second_account_share`` [0.08] of account holders with 2+ devices use a second account (slightly
different traits, another email) on one device.

Privacy. ``consent_banner_share`` [0.94] of people have ``context.consent.categoryPreferences``; they deny
analytics, marketing, personalization with ``analytics_denied_share`` [0.1], ``marketing_denied_share``
[0.25], ``personalization_denied_share`` [0.15]; ``consent_change_share`` [0.05] flip one category in
one session (a "Segment Consent Preference Updated" track event carrying the new consent).
``erasure_share`` [0.005] ask for erasure at a time in the period and are never seen again.

Bots. ``bot_session_share`` [0.02] of sessions come from bots at data-centre IPs: 10-60 pages at a
fixed 250-900 ms interval (2% jitter), no scroll/click/engagement, a bot-like user agent for
``bot_user_agent_share`` [0.5] of agents; some pay-per-click traffic is bots.

Delivery and noise. ``timestamp`` is the client clock, ``sentAt`` = timestamp + send delay on the same
clock, and lines come out in simulated arrival order (a few seconds of disorder between devices), so
``receivedAt - (sentAt - timestamp)`` recovers the true time. Noise kinds, each recorded with counts and
messageIds: truncated JSON, wrong types (revenue/price "abc", timestamp 12), missing ids, duplicates
(identical bytes), out-of-order (minutes late) and late (hours late) delivery.

What a model should learn from it: purchase propensity from funnel progress, channel, device,
frustration and returning-cart signals (true probabilities are in the truth); that display and social
mostly assist while search, email and affiliate close (``channel_effects``: true lifts and
counterfactual incremental conversions and revenue per channel); CLV and churn (per-person BG/NBD and
Gamma-Gamma parameters, holdout purchases, alive flags); identity across devices, households, offices,
guest checkouts and second accounts; bots; sentiment; and robustness to every kind of noise.

Events: page (names Home, Category, Sale, Product, Search, Blog, Login, Signup, Privacy, Cart,
Checkout, Confirmation), identify, alias, and track: Products Searched, Product List Viewed, Product
Viewed, Product Added, Product Removed, Cart Viewed, Checkout Started, Checkout Failed, Order Completed,
Scroll Depth Reached, Page Engagement, Element Clicked, Rage Click, Dead Click, JS Error, Feedback
Submitted, Segment Consent Preference Updated.

Truth keys: ``config``, ``period``, ``holdout``, ``fx_rates_per_usd``, ``persons``, ``device_person``,
``devices``, ``shared_devices``, ``sessions``, ``orders``, ``customers``, ``channel_effects``,
``duplicate_persons``, ``bots``, ``erasure_requests``, ``consent_changes``, ``feedback``, ``malformed``,
``summary``.
"""

from .config import Funnel, PaidMedia, SimulationConfig, SimulationConfigError
from .simulation import RenderStats, Simulation, simulate, spend_ndjson, truth_json, write_ndjson

__all__ = [
    "Funnel",
    "PaidMedia",
    "RenderStats",
    "Simulation",
    "SimulationConfig",
    "SimulationConfigError",
    "simulate",
    "spend_ndjson",
    "truth_json",
    "write_ndjson",
]
