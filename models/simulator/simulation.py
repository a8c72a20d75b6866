"""The public entry points: :func:`simulate` plans a world, :class:`Simulation` streams and explains it.

Planning (people, sessions, purchases, logins, spend) happens in :func:`simulate` and is cheap; events are
rendered lazily, session by session in start order, and merged through a heap on their simulated arrival
time, so memory stays bounded by the sessions in flight however long the run. Rendering is a pure function
of the plan, so ``events()`` can be iterated again and gives the same bytes.
"""

from __future__ import annotations

import heapq
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from .bots import plan_bots
from .catalog import Catalog, build_catalog
from .channels import ChannelModel
from .config import SimulationConfig
from .customers import ChannelTally, CustomerOutcome, CustomerProcess
from .journeys import JourneyRenderer
from .logins import LoginPlanner
from .noise import Delivery, NoiseLog
from .plans import BotAgent, SessionPlan
from .population import Population, PopulationBuilder
from .truth import build_truth

Progress = Callable[[int], None]
_PROGRESS_EVERY = 1000


@dataclass(slots=True)
class RenderStats:
    """What one full pass over the events produced (needed by the truth; identical on every pass)."""

    events: int
    lines: int
    event_counts: dict[str, int]
    noise: NoiseLog


class Simulation:
    """A planned world: stream its events, read its spend and its ground truth.

    Built by :func:`simulate`; see the package docstring for the generative model.
    """

    def __init__(
        self,
        *,
        config: SimulationConfig,
        catalog: Catalog,
        population: Population,
        sessions: list[SessionPlan],
        outcomes: list[CustomerOutcome],
        bots: list[BotAgent],
        tally: ChannelTally,
        spend: list[dict[str, Any]],
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.population = population
        self.sessions = sessions
        self.outcomes = outcomes
        self.bots = bots
        self.tally = tally
        self._spend = spend
        self._stats: RenderStats | None = None

    def timed_events(self, *, progress: Progress | None = None) -> Iterator[tuple[int, bytes]]:
        """``(received_at_ms, line)`` in arrival order: the simulated server receive time of each line.

        A replay or a producer can use the first element as ``receivedAt`` or as the Kafka record
        timestamp. ``progress`` is called with the number of lines emitted since its previous call.
        """
        renderer = JourneyRenderer(config=self.config, catalog=self.catalog)
        delivery = Delivery(malformed_rate=self.config.malformed_rate)
        log = NoiseLog()
        names: Counter[str] = Counter()
        heap: list[tuple[int, int, bytes]] = []
        seq = events = lines = reported = 0
        for plan in self.sessions:
            start = plan.start_ms
            while heap and heap[0][0] <= start:
                arrival, _, line = heapq.heappop(heap)
                yield arrival, line
                lines += 1
                if progress is not None and lines - reported >= _PROGRESS_EVERY:
                    progress(lines - reported)
                    reported = lines
            rendered, rng = renderer(plan)
            events += len(rendered)
            for _, ev in rendered:
                names[ev.get("event") or ev["type"]] += 1
            for arrival, line in delivery(plan, rendered, rng, log):
                heapq.heappush(heap, (arrival, seq, line))
                seq += 1
        while heap:
            arrival, _, line = heapq.heappop(heap)
            yield arrival, line
            lines += 1
        if progress is not None and lines > reported:
            progress(lines - reported)
        self._stats = RenderStats(events=events, lines=lines, event_counts=dict(sorted(names.items())), noise=log)

    def events(self, *, progress: Progress | None = None) -> Iterator[bytes]:
        """Each raw message as a tracker sends it: one JSON object, no trailing newline, arrival order."""
        for _, line in self.timed_events(progress=progress):
            yield line

    def collected_events(self, *, progress: Progress | None = None) -> Iterator[bytes]:
        """Each message as a collector stores it: :meth:`events` with ``receivedAt`` stamped first.

        This is what the Segment API and revstream's collector put on ``events.raw``, and what a file of
        captured traffic holds; replaying it gives the same event times every time. A line that is not a
        JSON object (noise) passes unchanged.

        >>> sim = simulate(SimulationConfig(users=2, days=1, seed=3))
        >>> next(sim.collected_events())[:15]
        b'{"receivedAt":"'
        """
        for arrival_ms, line in self.timed_events(progress=progress):
            if line[:1] != b"{":
                yield line
                continue
            stamp = datetime.fromtimestamp(arrival_ms / 1000, UTC).isoformat(timespec="milliseconds")
            head = b'{"receivedAt":"' + stamp[:-6].encode() + b'Z"'
            yield head + (line[1:] if line[1:2] == b"}" else b"," + line[1:])

    def spend(self) -> list[dict[str, Any]]:
        """Marketing spend records: one per day x paid channel x campaign."""
        return [dict(r) for r in self._spend]

    def stats(self) -> RenderStats:
        """Counts of a full render (renders once, silently, if no ``events()`` pass has finished yet)."""
        if self._stats is None:
            for _ in self.timed_events():
                pass
        assert self._stats is not None
        return self._stats

    def truth(self) -> dict[str, Any]:
        """The ground truth as a JSON-serialisable dict (keys listed in the package docstring)."""
        return build_truth(self, self.stats())

    def truth_json(self) -> bytes:
        """:meth:`truth` as JSON with sorted keys."""
        return orjson.dumps(self.truth(), option=orjson.OPT_SORT_KEYS)


def simulate(config: SimulationConfig, *, progress: Progress | None = None) -> Simulation:
    """Plan a world from ``config``; ``progress`` is called with the number of people planned since its
    previous call (an increment, as ``rich.progress.Progress.advance`` wants).

    >>> sim = simulate(SimulationConfig(users=3, days=1, seed=1))
    >>> all(isinstance(line, bytes) for line in sim.events())
    True
    """
    master = random.Random(config.seed)
    seeds = [master.getrandbits(64) for _ in range(8)]
    catalog = build_catalog(random.Random(seeds[0]))
    channels = ChannelModel(config=config, rng=random.Random(seeds[1]))
    population = PopulationBuilder(config=config).build(random.Random(seeds[2]))
    process = CustomerProcess(config=config, catalog=catalog, channels=channels, population=population)
    rng = random.Random(seeds[3])
    tally = ChannelTally()
    sessions: list[SessionPlan] = []
    outcomes: list[CustomerOutcome] = []
    reported = 0
    for done, person in enumerate(population.persons, start=1):
        planned, outcome = process.plan(rng, person, tally)
        sessions.extend(planned)
        outcomes.append(outcome)
        if progress is not None and (done - reported >= 100 or done == len(population.persons)):
            progress(done - reported)
            reported = done
    bots, bot_sessions = plan_bots(
        random.Random(seeds[4]), config=config, channels=channels, human_sessions=len(sessions), tally=tally
    )
    sessions.extend(bot_sessions)
    sessions.sort(key=_start)
    LoginPlanner(config=config, accounts=population.accounts)(random.Random(seeds[5]), sessions)
    spend = channels.spend(random.Random(seeds[6]), tally.paid_sessions)
    return Simulation(
        config=config,
        catalog=catalog,
        population=population,
        sessions=sessions,
        outcomes=outcomes,
        bots=bots,
        tally=tally,
        spend=spend,
    )


def _start(plan: SessionPlan) -> int:
    return plan.start_ms


def write_ndjson(
    sim: Simulation, target: str | os.PathLike[str] | IO[bytes], *, progress: Progress | None = None
) -> int:
    """Write the events as NDJSON (one line each, ``\\n``-terminated) to a path or a binary file; returns
    the number of lines."""
    if isinstance(target, str | os.PathLike):
        with Path(target).open("wb") as f:
            return write_ndjson(sim, f, progress=progress)
    count = 0
    chunk: list[bytes] = []
    for line in sim.events(progress=progress):
        chunk.append(line)
        if len(chunk) >= 4096:
            target.write(b"\n".join(chunk) + b"\n")
            count += len(chunk)
            chunk.clear()
    if chunk:
        target.write(b"\n".join(chunk) + b"\n")
        count += len(chunk)
    return count


def truth_json(sim: Simulation) -> bytes:
    """The ground truth as JSON bytes with sorted keys (orjson ``OPT_SORT_KEYS``)."""
    return sim.truth_json()


def spend_ndjson(sim: Simulation) -> bytes:
    """The spend records as NDJSON bytes, one record a line."""
    return b"".join(orjson.dumps(record) + b"\n" for record in sim.spend())
