"""Reliability against real parts: worker processes killed with SIGKILL, a broker restarted mid-stream,
resends (also long after), and hostile input. The expected warehouse is what embedded mode writes from
the same lines; every check is on plain ``count()`` and ``uniqExact``, without ``FINAL``.

The crash run is sized by ``REVSTREAM_CRASH_EVENTS`` (default 100000, the figure the reliability issue
asks for) and ``REVSTREAM_CRASH_KILLS`` (default 5).
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from sinks import ClickHouseSink
from streams.checkpoint import Checkpoint
from streams.embedded import EmbeddedRunner, ndjson_lines
from streams.kafka import ensure_topics, produce
from streams.pipeline import Pipeline
from streams.settings import Settings
from tests.conftest import ROOT
from tests.streams.kafka_harness import Deployment, lag, wait_drained, worker

pytestmark = pytest.mark.integration


def _shift(line: bytes, days: int) -> bytes:
    """The same event sent again ``days`` later: new sentAt and receivedAt, same timestamp and messageId."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line  # a broken line sent again is broken again
    if not isinstance(event, dict):
        return line
    for field in ("sentAt", "receivedAt"):
        if isinstance(event.get(field), str):
            at = datetime.fromisoformat(event[field].replace("Z", "+00:00")) + timedelta(days=days)
            event[field] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps(event)


def traffic(events: int, seed: int = 3) -> list[bytes]:
    """Simulated traffic with 1% malformed lines, plus 10% of lines resent: half at once, half 10 days later."""
    from models.simulator import SimulationConfig, simulate

    users = max(20, events // 60)
    lines = list(simulate(SimulationConfig(users=users, days=30, seed=seed, malformed_rate=0.01)).collected_events())
    rng = random.Random(seed)
    resent = rng.sample(range(len(lines)), len(lines) // 10)
    out = list(lines)
    for i, index in enumerate(resent):
        if i % 2:
            out.insert(min(len(out), index + 1 + rng.randint(0, 50)), lines[index])
        else:
            out.append(_shift(lines[index], 10))
    return out


def expected(deployment: Deployment, lines: list[bytes]) -> tuple[int, int, int]:
    """(events, failed_events, refused inputs) that embedded mode stores from ``lines``."""
    dsn = f"chdb://{deployment.data_dir / 'warehouse'}?database=expected"
    with ClickHouseSink(dsn=dsn) as sink:
        sink.migrate()
        EmbeddedRunner(pipeline=Pipeline(Settings()), sink=sink, batch_size=5000).run(
            ndjson_lines(io.BytesIO(b"\n".join(lines)), "input")
        )
        return _counts(sink)[0], _counts(sink)[2], _refused(sink)


def deploy(
    kafka_bootstrap: str, tmp_path: Path, lines: list[bytes], *, partitions: int
) -> tuple[Deployment, tuple[int, int, int]]:
    """A fresh deployment with ``lines`` on its raw topic, and what embedded mode stores from them."""
    deployment = Deployment.new(kafka_bootstrap, tmp_path, partitions=partitions)
    want = expected(deployment, lines)
    settings = Settings(brokers=deployment.bootstrap, topic_prefix=deployment.prefix, partitions=partitions)
    ensure_topics(settings)
    assert produce(settings, lines) == len(lines)
    return deployment, want


def _counts(sink: ClickHouseSink) -> tuple[int, int, int, int]:
    row = sink.query(
        "SELECT (SELECT count() FROM events), (SELECT uniqExact(message_id) FROM events),"
        " (SELECT count() FROM failed_events), (SELECT uniqExact(source) FROM failed_events)"
    ).result_rows[0]
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _refused(sink: ClickHouseSink) -> int:
    return int(sink.query("SELECT sum(refused) FROM consent_refusals").result_rows[0][0])


def _credits(sink: ClickHouseSink) -> tuple[int, int, int]:
    """(credit rows, distinct credits, distinct conversions) in attribution_credits."""
    row = sink.query(
        "SELECT count(), uniqExact(model, conversion_id, touch_index), uniqExact(conversion_id)"
        " FROM attribution_credits"
    ).result_rows[0]
    return int(row[0]), int(row[1]), int(row[2])


def _values(sink: ClickHouseSink) -> list[tuple[object, ...]]:
    return list(sink.query("SELECT person_id, frequency FROM customer_value FINAL ORDER BY person_id").result_rows)


# The identity of a row in the output tables checked for duplicates.
_KEYS = {
    "scores": ("message_id", "model"),
    "sessions": ("session_id",),
    "alerts": ("alert_id",),
    "identity_links": ("person_id", "anonymous_id", "user_id", "other_anonymous_id", "method"),
    "attribution_credits": ("model", "conversion_id", "touch_index"),
}


def _stored_keys(sink: ClickHouseSink, table: str) -> Counter[tuple[object, ...]]:
    columns = ", ".join(_KEYS[table])
    return Counter(tuple(r) for r in sink.query(f"SELECT {columns} FROM {table}").result_rows)


def _most_repeated(sink: ClickHouseSink) -> dict[str, int]:
    """The most copies of one row in each output table (1 when no row is there twice)."""
    return {table: max(_stored_keys(sink, table).values(), default=0) for table in _KEYS}


@pytest.mark.timeout(1500)  # 100k events through every model at ~450/s on 2 cores, plus 5 restarts
def test_worker_killed_repeatedly_stores_every_event_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    events = int(os.environ.get("REVSTREAM_CRASH_EVENTS", "100000"))
    kills = int(os.environ.get("REVSTREAM_CRASH_KILLS", "5"))
    lines = traffic(events)
    deployment, (want_events, want_failed, want_refused) = deploy(kafka_bootstrap, tmp_path, lines, partitions=4)

    log = tmp_path / "worker.log"
    env = {**deployment.env, "REVSTREAM_BATCH_SIZE": "1000"}
    killed = 0
    rng = random.Random(7)
    while killed < kills:
        with worker(deployment, log, env=env) as proc:
            time.sleep(rng.uniform(12, 25))  # boot, rejoin after the last kill, then some processing
            assert proc.poll() is None, log.read_text()[-3000:]
            if lag(deployment) == 0:
                break  # everything is done already: no point killing an idle worker
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
    with worker(deployment, log, env=env) as proc:
        wait_drained(deployment, proc, log, timeout=900)

    with ClickHouseSink(dsn=deployment.dsn) as sink:
        stored, unique, failed, failed_unique = _counts(sink)
        refused = _refused(sink)
        credits = _credits(sink)
        kafka_values = _values(sink)
        repeated = _most_repeated(sink)
    assert killed >= min(kills, 1)
    assert set(repeated.values()) == {1}, repeated  # scores, sessions, alerts, links, credits: once each
    assert stored == unique == want_events
    assert failed == failed_unique
    assert failed == want_failed  # late resends included: found in the device memory or in the warehouse
    assert refused == want_refused > 0  # consent refusals counted once each, replays included
    with ClickHouseSink(dsn=f"chdb://{deployment.data_dir / 'warehouse'}?database=expected") as sink:
        assert kafka_values == _values(sink)  # the value model's state survived the kills: no order twice
        want_conversions = _credits(sink)[2]
    # Every order credited, and no credit twice although the device stage redelivered rows to the person stage.
    assert credits[0] == credits[1]
    assert credits[2] == want_conversions


def test_broker_restart_mid_stream_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    lines = traffic(20_000, seed=4)
    deployment, (want_events, want_failed, want_refused) = deploy(kafka_bootstrap, tmp_path, lines, partitions=2)
    script = str(ROOT / "scripts" / "kafka.sh")
    port = kafka_bootstrap.rsplit(":", 1)[1]
    kafka_env = {**os.environ, "REVSTREAM_KAFKA_PORT": port}
    log = tmp_path / "worker.log"
    with worker(deployment, log) as proc:
        time.sleep(8)
        subprocess.run([script, "stop"], env=kafka_env, check=True)
        time.sleep(5)
        subprocess.run([script, "start"], env=kafka_env, check=True)
        wait_drained(deployment, proc, log, timeout=600)
        assert proc.poll() is None  # recovered by itself, no restart
    with ClickHouseSink(dsn=deployment.dsn) as sink:
        stored, unique, failed, failed_unique = _counts(sink)
        refused = _refused(sink)
    assert stored == unique == want_events
    assert failed == failed_unique == want_failed
    assert refused == want_refused > 0


def test_hostile_input_lands_once_and_fixed_failures_replay_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    from tests.streams.hostile import fix, hostile_events

    deployment = Deployment.new(kafka_bootstrap, tmp_path, partitions=2)
    lines = hostile_events(400, seed=9)
    settings = Settings(brokers=deployment.bootstrap, topic_prefix=deployment.prefix, partitions=2)
    ensure_topics(settings)
    assert produce(settings, lines) == len(lines)
    log = tmp_path / "worker.log"
    with worker(deployment, log) as proc:
        wait_drained(deployment, proc, log)
        assert proc.poll() is None  # never crashed
    with ClickHouseSink(dsn=deployment.dsn) as sink:  # chDB is one process at a time: the worker is stopped
        stored, unique, failed, failed_unique = _counts(sink)
        raws = [bytes.fromhex(r[0]) for r in sink.query("SELECT hex(raw) FROM failed_events").result_rows]
    assert stored == unique
    assert failed == failed_unique
    assert stored + failed == len(lines)  # each input exactly once, valid or failed
    fixed = [f for f in (fix(raw) for raw in raws) if f is not None]
    repaired = len({orjson.loads(f)["messageId"] for f in fixed})  # two broken copies of one event: one fix
    assert repaired >= 20
    assert produce(settings, fixed + fixed) == 2 * len(fixed)  # the fix, sent twice
    with worker(deployment, log) as proc:
        wait_drained(deployment, proc, log)
        assert proc.poll() is None
    with ClickHouseSink(dsn=deployment.dsn) as sink:
        after = _counts(sink)
    assert after[0] == after[1] == stored + repaired, after  # each fixed event stored once
    assert after[2] == after[3] == failed + 2 * len(fixed) - repaired, after  # later copies: recorded duplicates


# Loaded by the worker (PYTHONPATH) to kill it inside the window the redo log covers: after the Nth checkpoint
# save of a batch with effects on ``table``, and after that batch's first effect insert - so one table of the
# batch is stored and the others are not. It names the checkpoint in ``killed`` first.
_KILL_INSIDE_THE_BATCH = """
import os, pickle, signal
from pathlib import Path

prefix, table, nth = os.environ["REVSTREAM_TEST_KILL"].split(":")
from sinks import clickhouse
from streams import checkpoint

seen = []
armed = []
write, insert = checkpoint.Checkpoint.write, clickhouse.ClickHouseSink.insert

def writing(self, data):
    write(self, data)
    if not self.path.name.startswith(prefix):
        return
    _, offset, effects = pickle.loads(data)
    if table in [e.table for e in effects] and len(effects) > 1:
        seen.append(offset)
        if len(seen) == int(nth):
            armed.append(effects[0].token)
            Path(os.environ["REVSTREAM_DATA_DIR"], "killed").write_text(str(self.path))

def inserting(self, table, rows, *, token):
    insert(self, table, rows, token=token)
    if armed and token == armed[0]:
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.Checkpoint.write = writing
clickhouse.ClickHouseSink.insert = inserting
"""


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "kill", ["scoring-p:sessions:3", "people-checkpoint:attribution_credits:2"], ids=["scoring", "people"]
)
def test_a_kill_between_a_checkpoint_and_its_effects_is_redone_once(
    kafka_bootstrap: str, tmp_path: Path, kill: str
) -> None:
    """The worker is killed after a stage saved a batch's state and made the first of its inserts: the
    restarted worker makes the others from the checkpoint, and nothing is stored twice."""
    deployment, (want_events, _, _) = deploy(kafka_bootstrap, tmp_path, traffic(6000, seed=5), partitions=2)
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(_KILL_INSIDE_THE_BATCH)
    env = {**deployment.env, "REVSTREAM_BATCH_SIZE": "200"}
    log = tmp_path / "worker.log"
    with worker(
        deployment, log, env={**env, "PYTHONPATH": f"{inject}{os.pathsep}{ROOT}", "REVSTREAM_TEST_KILL": kill}
    ) as proc:
        assert proc.wait(timeout=300) == -signal.SIGKILL, log.read_text()[-3000:]
    restored = Checkpoint[object](Path((tmp_path / "killed").read_text())).load()
    assert restored is not None
    checked = [e for e in restored.redo if e.table in _KEYS]
    assert len(checked) >= 2, [e.table for e in restored.redo]
    keys = {e.table: Counter(tuple(getattr(r, c) for c in _KEYS[e.table]) for r in e.rows) for e in checked}
    with ClickHouseSink(dsn=deployment.dsn) as sink:
        before = {table: _stored_keys(sink, table) for table in keys}
    first = restored.redo[0].table
    for table, want in keys.items():  # the first insert made, the others not
        assert all(before[table][k] == (table == first) for k in want), table

    with worker(deployment, log, env=env) as proc:
        wait_drained(deployment, proc, log, timeout=300)
    with ClickHouseSink(dsn=deployment.dsn) as sink:
        stored, unique, _, _ = _counts(sink)
        after = {table: _stored_keys(sink, table) for table in _KEYS}
        repeated = _most_repeated(sink)
    assert stored == unique == want_events
    for table, want in keys.items():  # the redo made the rest, and the first was not stored again
        assert all(after[table][k] == 1 for k in want), table
    assert set(repeated.values()) == {1}, repeated
