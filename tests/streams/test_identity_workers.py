"""Identity under partitioning: two workers on four partitions assign the same persons as one worker."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from sinks import ClickHouseSink
from streams.kafka import ensure_topics, produce
from streams.settings import Settings
from tests.streams.kafka_harness import Deployment, wait_drained, worker

pytestmark = pytest.mark.integration


def persons(dsn: str) -> dict[str, str]:
    """The warehouse's current person of every device and account (the ``persons`` view), leaving out an id
    shown as its own person: split off again, that is the same as never linked."""
    with ClickHouseSink(dsn=dsn) as sink:
        sink.migrate()
        rows = sink.query("SELECT id, person_id FROM persons").result_rows
    return {str(i): str(p) for i, p in rows if p not in {f"a:{i}", f"u:{i}"}}


def probabilistic_links(dsn: str) -> int:
    with ClickHouseSink(dsn=dsn) as sink:
        sink.migrate()
        return int(sink.query("SELECT count() FROM identity_links WHERE method != 'deterministic'").result_rows[0][0])


def assignment(data_dir: Path) -> dict[str, str] | None:
    """The person stage's own assignment, from the checkpoint of the worker that ran it (None elsewhere)."""
    path = data_dir / "people-checkpoint.pickle"
    if not path.exists():
        return None
    with path.open("rb") as f:
        people, *_ = pickle.load(f)  # our own test's checkpoint
    return dict(people.identity.assignment())


def people_processes(pid: int) -> int:
    """How many person-level child processes (multiprocessing's ``spawn_main``) the process ``pid`` has."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        count += parent == pid and b"spawn_main" in command
    return count


def test_two_workers_assign_the_same_persons_as_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    from models.simulator import SimulationConfig, simulate

    lines = list(simulate(SimulationConfig(users=250, days=10, seed=12)).collected_events())
    results = []
    for workers in (1, 2):
        deployment = Deployment.new(kafka_bootstrap, tmp_path / f"w{workers}", partitions=4)
        settings = Settings(brokers=deployment.bootstrap, topic_prefix=deployment.prefix, partitions=4)
        ensure_topics(settings)
        # chDB is one process per path: each worker gets its own warehouse and data directory; the people
        # stage (one partition) runs in whichever worker owns it, so its rows are in one of them.
        # Probabilistic links included: two workers interleave their partitions differently from one, so a
        # device pair can be linked and split again with 2 workers that 1 worker never linked (a clean-clone
        # run did); the persons they end in must not differ.
        envs = [
            {
                **deployment.env,
                "REVSTREAM_DATA_DIR": str(deployment.data_dir / f"worker{i}"),
                "REVSTREAM_CLICKHOUSE_DSN": f"chdb://{deployment.data_dir / f'worker{i}' / 'warehouse'}",
            }
            for i in range(workers)
        ]
        log = deployment.data_dir / "worker.log"
        deployment.data_dir.mkdir(parents=True, exist_ok=True)
        with worker(deployment, log, env=envs[0]) as first:
            # The person-level checkpoint is a local file: the workers join before any input, so the
            # one-partition people stage does not move between them mid-stream (see README, Scaling).
            if workers == 2:
                with worker(deployment, log, env=envs[1]) as second:
                    time.sleep(25)
                    assert produce(settings, lines) == len(lines)
                    wait_drained(deployment, second, log, timeout=600)
                    # only the owner of the people partition started the person-level process
                    assert sorted(people_processes(w.pid) for w in (first, second)) == [0, 1]
            else:
                assert produce(settings, lines) == len(lines)
            wait_drained(deployment, first, log, timeout=600)
        view: dict[str, str] = {}
        stages = []
        for env in envs:
            view |= persons(env["REVSTREAM_CLICKHOUSE_DSN"])
            stages.append(assignment(Path(env["REVSTREAM_DATA_DIR"])))
        assert sum(probabilistic_links(env["REVSTREAM_CLICKHOUSE_DSN"]) for env in envs) > 0
        [stage] = [a for a in stages if a is not None]  # exactly one worker ran the one-partition stage
        results.append((stage, view))
    (one, one_view), (two, two_view) = results
    assert len(set(one.values())) < len(one)  # some devices and accounts were joined into persons
    assert two == one
    assert two_view == one_view
    for node, person in one_view.items():  # the view says what the stage decided last
        assert person in {one.get(f"a:{node}"), one.get(f"u:{node}")}, node
