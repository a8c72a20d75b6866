"""Crawlers and scrapers: a small share of sessions with machine timing and no human signals.

A bot agent lives at a data-centre IP, requests pages at a fixed interval (a few hundred milliseconds, with
about 2% jitter), never scrolls, clicks or lingers, and sometimes announces itself in its user agent. Some
keep their cookie (one anonymousId for all their sessions, at least two hours apart), most start fresh
every time. They mostly come
direct, but some arrive through paid search and display links (click fraud, billed in the spend records).
"""

from __future__ import annotations

import math
import random

from .channels import ChannelModel
from .config import SimulationConfig
from .customers import ChannelTally
from .devices import bot_browser, datacenter_ip
from .formats import DAY_MS, uuid4
from .plans import BotAgent, Device, SessionPlan

_CHANNELS = ("direct", "referral", "paid_search", "display")
_CHANNEL_WEIGHTS = (0.7, 0.1, 0.1, 0.1)
SESSIONS_PER_AGENT = 8


def plan_bots(
    rng: random.Random,
    *,
    config: SimulationConfig,
    channels: ChannelModel,
    human_sessions: int,
    tally: ChannelTally,
) -> tuple[list[BotAgent], list[SessionPlan]]:
    """Bot agents and their sessions, ``bot_session_share`` of all sessions in the period."""
    share = config.bot_session_share
    if share <= 0 or human_sessions == 0:
        return [], []
    n_sessions = max(1, round(human_sessions * share / (1.0 - share))) if share < 1 else human_sessions
    agents = []
    for i in range(max(1, math.ceil(n_sessions / SESSIONS_PER_AGENT))):
        bot_like = rng.random() < config.bot_user_agent_share
        browser = bot_browser(rng, bot_like=bot_like)
        agent = BotAgent(
            bot_id=f"bot_{i + 1:04d}",
            user_agent=browser.user_agent,
            bot_like=bot_like,
            ip=datacenter_ip(rng),
            interval_ms=rng.randint(250, 900),
            keeps_cookie=rng.random() < 0.4,
        )
        agent.devices.append(_device(rng, agent, browser.os_name, browser.os_version))
        agents.append(agent)
    start_ms = int(config.start.timestamp() * 1000)
    span = max(config.days * DAY_MS - 2 * 3_600_000, 3_600_000)
    last_used: dict[str, int] = {}
    sessions = []
    for t in sorted(start_ms + rng.randrange(span) for _ in range(n_sessions)):
        agent = rng.choice(agents)
        device = agent.devices[-1]
        previous = last_used.get(device.anonymous_id)
        if previous is not None and (not agent.keeps_cookie or t < previous + 2 * 3_600_000):
            device = _device(rng, agent, device.os_name, device.os_version)
            agent.devices.append(device)
        last_used[device.anonymous_id] = t
        touch = channels.touch_for(rng, rng.choices(_CHANNELS, weights=_CHANNEL_WEIGHTS)[0])
        plan = SessionPlan(
            person=None,
            device=device,
            start_ms=t,
            channel=touch.channel,
            campaign=touch.campaign,
            touch=touch,
            ip=agent.ip,
            probability=0.0,
            purchased=False,
            depth=0,
            frustrated=False,
            bot=agent,
        )
        sessions.append(plan)
        if plan.campaign is not None:
            tally.paid_sessions[((t - start_ms) // DAY_MS, plan.channel, plan.campaign)] += 1
    return agents, sessions


def _device(rng: random.Random, agent: BotAgent, os_name: str, os_version: str) -> Device:
    return Device(
        anonymous_id=uuid4(rng),
        device_type="desktop",
        os_name=os_name,
        os_version=os_version,
        user_agent=agent.user_agent,
        clock_skew_ms=0,
        owner=-1,
        users=[],
    )
