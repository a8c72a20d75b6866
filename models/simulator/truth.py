"""The ground truth of a simulation as one JSON-serialisable dict.

Everything here is read from the plan (people, sessions, orders, outcomes, channel tallies) except the
``malformed`` section and the event counts in ``summary``, which come from a render pass. Times are ISO
8601 UTC strings with milliseconds; money is rounded to cents, per currency and in USD.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.channels import CHANNELS

from .catalog import FX_TO_LOCAL
from .formats import DAY_MS, iso_ms
from .noise import INVALID_KINDS
from .plans import Person, SessionPlan
from .population import baseline_logit

if TYPE_CHECKING:
    from .simulation import RenderStats, Simulation


def _person(person: Person, outcome_erased: bool, spend_shape: float) -> dict[str, Any]:
    return {
        "household": person.household,
        "home_ip": person.home_ip,
        "office_ip": person.office_ip,
        "country": person.country,
        "currency": person.currency,
        "devices": [d.anonymous_id for d in person.devices],
        "user_ids": person.user_ids,
        "emails": list(person.emails),
        "existing_customer": person.existing,
        "acquired_at": iso_ms(person.acquired_ms),
        "purchase_rate": person.purchase_rate,
        "session_rate": person.session_rate,
        "baseline_log_odds": baseline_logit(person),
        "dropout_prob": person.dropout_prob,
        "spend_rate": person.spend_rate,
        "mean_spend": spend_shape / person.spend_rate,
        "consent": person.consent,
        "consent_after": person.consent_after,
        "erased": outcome_erased,
    }


def _session(plan: SessionPlan) -> dict[str, Any]:
    order = plan.order
    return {
        "session_index": plan.index,
        "person_id": plan.person.person_id if plan.person is not None else None,
        "bot_id": plan.bot.bot_id if plan.bot is not None else None,
        "anonymous_id": plan.device.anonymous_id,
        "user_id_at_start": plan.user_id_at_start,
        "first_message_id": plan.first_message_id,
        "started_at": iso_ms(plan.start_ms),
        "channel": plan.channel,
        "campaign": plan.campaign,
        "device_type": plan.device.device_type,
        "ip": plan.ip,
        "purchase_probability": plan.probability,
        "purchased": plan.purchased,
        "funnel_depth": plan.depth,
        "frustrated": plan.frustrated,
        "order_id": order.order_id if order is not None else None,
        "revenue": order.revenue if order is not None else None,
        "currency": order.currency if order is not None else None,
        "revenue_usd": order.revenue_usd if order is not None else None,
        "bot": plan.bot is not None,
    }


def _order(plan: SessionPlan) -> dict[str, Any]:
    order = plan.order
    assert order is not None
    assert plan.person is not None
    account = plan.checkout_account
    return {
        "order_id": order.order_id,
        "person_id": plan.person.person_id,
        "anonymous_id": plan.device.anonymous_id,
        "user_id": account.user_id if account is not None else None,
        "checkout": plan.checkout,
        "guest_email": plan.guest_profile.email if plan.guest_profile is not None else None,
        "session_started_at": iso_ms(plan.start_ms),
        "channel": plan.channel,
        "campaign": plan.campaign,
        "currency": order.currency,
        "revenue": order.revenue,
        "total": order.total,
        "revenue_usd": order.revenue_usd,
        "items": sum(q for _, q in order.items),
    }


def build_truth(sim: Simulation, stats: RenderStats) -> dict[str, Any]:
    """Assemble the truth dict (see the package docstring for what each key means)."""
    cfg = sim.config
    pop = sim.population
    end_ms = int(cfg.end.timestamp() * 1000)
    persons: dict[str, Any] = {}
    customers: dict[str, Any] = {}
    for person, outcome in zip(pop.persons, sim.outcomes, strict=True):
        erased = person.erasure_ms is not None
        persons[person.person_id] = _person(person, erased, cfg.spend_shape)
        customers[person.person_id] = {
            "purchases": outcome.purchases,
            "revenue": round(outcome.revenue, 2),
            "revenue_usd": round(outcome.revenue_usd, 2),
            "holdout_purchases": outcome.holdout_purchases,
            "holdout_revenue": round(outcome.holdout_revenue, 2),
            "holdout_revenue_usd": round(outcome.holdout_revenue_usd, 2),
            "holdout_sessions": outcome.holdout_sessions,
            "alive_at_end": outcome.alive_at_end and not erased,
            "alive_at_holdout_end": outcome.alive_at_holdout_end and not erased,
            "dropped_out_at": iso_ms(outcome.dropped_out_ms) if outcome.dropped_out_ms is not None else None,
        }
    devices: dict[str, Any] = {}
    device_person: dict[str, str] = {}
    for d in pop.devices:
        device_person[d.anonymous_id] = pop.persons[d.owner].person_id
        devices[d.anonymous_id] = {
            "person_id": pop.persons[d.owner].person_id,
            "used_by": [pop.persons[i].person_id for i in d.users],
            "type": d.device_type,
            "os": d.context_os,
            "user_agent": d.user_agent,
            "clock_skew_ms": d.clock_skew_ms,
        }
    bots: dict[str, Any] = {}
    for agent in sim.bots:
        for d in agent.devices:
            device_person[d.anonymous_id] = agent.bot_id
            devices[d.anonymous_id] = {
                "person_id": agent.bot_id,
                "used_by": [agent.bot_id],
                "type": d.device_type,
                "os": d.context_os,
                "user_agent": d.user_agent,
                "clock_skew_ms": 0,
            }
        bots[agent.bot_id] = {
            "anonymous_ids": [d.anonymous_id for d in agent.devices],
            "user_agent": agent.user_agent,
            "bot_like_user_agent": agent.bot_like,
            "ip": agent.ip,
            "interval_ms": agent.interval_ms,
            "keeps_cookie": agent.keeps_cookie,
        }
    sessions = [_session(plan) for plan in sim.sessions]
    orders = [_order(plan) for plan in sim.sessions if plan.order is not None]
    consent_changes = [
        {
            "person_id": plan.person.person_id,
            "anonymous_id": plan.device.anonymous_id,
            "message_id": plan.consent_update_message_id,
            "session_started_at": iso_ms(plan.start_ms),
            "before": plan.person.consent,
            "after": plan.consent_update,
        }
        for plan in sim.sessions
        if plan.consent_update is not None and plan.person is not None
    ]
    feedback = [
        {
            "message_id": plan.feedback[0],
            "person_id": plan.person.person_id,
            "anonymous_id": plan.device.anonymous_id,
            "sentiment": plan.feedback[1],
            "rating": plan.feedback[2],
            "text": plan.feedback[3],
        }
        for plan in sim.sessions
        if plan.feedback is not None and plan.person is not None
    ]
    erasures = [
        {
            "id": p.account.user_id if p.account is not None else p.devices[0].anonymous_id,
            "person_id": p.person_id,
            "requested_at": iso_ms(p.erasure_ms),
            "user_ids": p.user_ids,
            "anonymous_ids": [d.anonymous_id for d in p.devices],
            "emails": list(p.emails),
        }
        for p in pop.persons
        if p.erasure_ms is not None
    ]
    duplicates = [
        {
            "person_id": p.person_id,
            "user_ids": p.user_ids,
            "emails": list(p.emails),
            "guest_order_ids": list(p.guest_orders),
            "kinds": [
                k
                for k, on in (
                    ("second_account", p.second_account is not None),
                    ("guest_checkout", bool(p.guest_orders)),
                )
                if on
            ],
        }
        for p in pop.persons
        if p.second_account is not None or p.guest_orders
    ]
    tally = sim.tally
    n = max(tally.human_sessions, 1)
    channel_effects = {
        c: {
            "immediate_log_odds": cfg.channel_lift[c],
            "carryover_log_odds": cfg.channel_carryover[c],
            "carryover_half_life_days": cfg.carryover_half_life_days,
            "baseline_conversion_rate": tally.baseline_probability / n,
            "implied_conversion_rate": tally.implied_probability[c] / n,
            "sessions": tally.sessions[c],
            "last_touch_orders": tally.orders[c],
            "last_touch_revenue_usd": round(tally.revenue_usd[c], 2),
            "incremental_conversions": tally.incremental_conversions[c],
            "incremental_revenue_usd": round(tally.incremental_revenue_usd[c], 2),
        }
        for c in CHANNELS
    }
    human = [s for s in sim.sessions if s.bot is None]
    noise = stats.noise
    return {
        "config": cfg.to_dict(),
        "period": {"start": iso_ms(end_ms - cfg.days * DAY_MS), "end": iso_ms(end_ms)},
        "holdout": {
            "start": iso_ms(end_ms),
            "end": iso_ms(end_ms + cfg.holdout_days * DAY_MS),
            "days": cfg.holdout_days,
        },
        "fx_rates_per_usd": dict(FX_TO_LOCAL),
        "persons": persons,
        "device_person": device_person,
        "devices": devices,
        "shared_devices": {
            d.anonymous_id: [pop.persons[i].person_id for i in d.users] for d in pop.devices if len(d.users) > 1
        },
        "sessions": sessions,
        "orders": orders,
        "customers": customers,
        "channel_effects": channel_effects,
        "duplicate_persons": duplicates,
        "bots": bots,
        "erasure_requests": erasures,
        "consent_changes": consent_changes,
        "feedback": feedback,
        "malformed": {
            "rate": cfg.malformed_rate,
            "counts": dict(noise.counts),
            "message_ids": {k: list(v) for k, v in noise.message_ids.items()},
        },
        "summary": {
            "persons": len(pop.persons),
            "households": len({p.household for p in pop.persons}),
            "devices": len(pop.devices),
            "sessions": len(sim.sessions),
            "human_sessions": len(human),
            "bot_sessions": len(sim.sessions) - len(human),
            "orders": len(orders),
            "purchase_rate": len(orders) / max(len(human), 1),
            "revenue_usd": round(sum(o["revenue_usd"] for o in orders), 2),
            "events": stats.events,
            "lines": stats.lines,
            "noise_lines": sum(noise.counts.values()),
            "invalid_lines": sum(noise.counts[k] for k in INVALID_KINDS),
            "event_counts": stats.event_counts,
        },
    }
