"""Identity under partitioning: two workers on four partitions assign the same persons as one worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sinks import ClickHouseSink
from streams.kafka import ensure_topics, produce
from streams.settings import Settings
from tests.streams.kafka_harness import Deployment, wait_drained, worker

pytestmark = pytest.mark.integration


def persons(dsn: str) -> set[tuple[str, str]]:
    """The deterministic links (a device and the account logged in on it) of one warehouse.

    They do not depend on arrival order. Device-probabilistic links can: clean-clone runs linked one device
    pair with two workers and not with one, or the other way round, so the probabilistic part of the
    assignment is not compared here (a known gap of issue #5).
    """
    with ClickHouseSink(dsn=dsn) as sink:
        sink.migrate()
        rows = sink.query(
            "SELECT DISTINCT anonymous_id, user_id FROM identity_links WHERE method = 'deterministic'"
        ).result_rows
        return {(str(a), str(u)) for a, u in rows}


def test_two_workers_assign_the_same_persons_as_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    from models.simulator import SimulationConfig, simulate

    lines = list(simulate(SimulationConfig(users=150, days=10, seed=12)).collected_events())
    results = []
    for workers in (1, 2):
        deployment = Deployment.new(kafka_bootstrap, tmp_path / f"w{workers}", partitions=4)
        settings = Settings(brokers=deployment.bootstrap, topic_prefix=deployment.prefix, partitions=4)
        ensure_topics(settings)
        # chDB is one process per path: each worker gets its own warehouse and data directory; the people
        # stage (one partition) runs in whichever worker owns it, so its rows are in one of them.
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
            else:
                assert produce(settings, lines) == len(lines)
            wait_drained(deployment, first, log, timeout=600)
        links: set[tuple[str, str]] = set()
        for env in envs:
            links |= persons(env["REVSTREAM_CLICKHOUSE_DSN"])
        results.append(links)
    one, two = results
    assert len(one) > 20
    assert two == one
