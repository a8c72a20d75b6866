"""Throughput of ingest + sink: embedded mode, Kafka mode, and a bare aiokafka loop as the reference.

    python -m benchmarks.pipeline --events 200000   # also writes benchmarks/results/pipeline.json

A latency run then sends events at a fixed rate (``--latency-rate``, default 1,000/s) to a warm worker and
reports the event-to-score time (producer send to the score's Kafka timestamp, p50/p99, and the p99 of the
events sent in each 5 s, which shows whether a stall or the whole run makes the p99) and the model time.
With ``--latency-backlog N`` the worker first works through N events, so the run meets the state a running
worker has built up (the person-level stage's cost grows with it).

Input is simulator traffic (seed 1, 1% malformed). Embedded mode runs :class:`EmbeddedRunner` into a fresh
chDB warehouse in this process: the pipeline on one thread and, with a second CPU, each batch's inserts in a
writer thread while the next batch is processed (chDB's part of an insert then runs on the other core).
``cpu_seconds`` is the process's CPU time over the run, all threads; ``events_per_cpu_s`` divides by it (GIL
hand-offs and chDB's own threads included). For the one-core figure, pin the process:
``taskset -c 0 python -m benchmarks.pipeline --embedded-only``. Kafka mode produces the events to a fresh
topic prefix, starts a real ``revstream worker`` process and waits until its consumer group has committed
every topic; it reports both the end-to-end rate (worker start to drained) and the rate after the first
commit (startup excluded).
The reference is a bare aiokafka consumer that reads the same raw topic and ``orjson.loads`` every value.
A broker is started with ``scripts/kafka.sh`` unless one answers on ``--bootstrap``.
``--broker-floor`` runs only the latency run's probe, with no worker: what the broker and the machine add
on their own, to compare with the probe's figures in a latency run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks import figures_json
from models.simulator import SimulationConfig, simulate
from sinks import ClickHouseSink
from streams.embedded import EmbeddedRunner, ndjson_lines
from streams.kafka import CONSUMED_TOPICS, delete_topics, ensure_topics, produce
from streams.pipeline import Pipeline
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def traffic(n: int) -> list[bytes]:
    config = SimulationConfig(users=max(50, n // 60), days=30, seed=1, malformed_rate=0.01)
    lines = list(itertools.islice(simulate(config).collected_events(), n))
    if len(lines) < n:
        lines += list(
            itertools.islice(
                simulate(SimulationConfig(users=n // 10, days=30, seed=2)).collected_events(), n - len(lines)
            )
        )
    return lines


def bench_embedded(lines: list[bytes]) -> dict[str, Any]:
    data = b"\n".join(lines) + b"\n"
    with tempfile.TemporaryDirectory() as tmp, ClickHouseSink(dsn=f"chdb://{tmp}") as sink:
        sink.migrate()
        settings = Settings()
        runner = EmbeddedRunner(pipeline=Pipeline(settings), sink=sink, batch_size=settings.batch_size)
        start, cpu_start = time.perf_counter(), time.process_time()
        summary = runner.run(ndjson_lines(io.BytesIO(data), "bench"))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        stored = sink.query("SELECT (SELECT count() FROM events) + (SELECT count() FROM failed_events)").result_rows
    return {
        "events": len(lines),
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(lines) / elapsed),
        "cpu_seconds": round(cpu, 3),
        "events_per_cpu_s": round(len(lines) / cpu),
        "valid": summary.valid,
        "failed": summary.failed_total,
        "stored_rows": stored[0][0],
    }


@contextmanager
def fresh_topics(settings: Settings) -> Iterator[None]:
    """The topics of a benchmark's fresh prefix, deleted afterwards (leftover topics slow the broker down)."""
    ensure_topics(settings)
    try:
        yield
    finally:
        delete_topics(settings)


def broker_up(bootstrap: str) -> bool:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "socket.timeout.ms": 2000})
    try:
        consumer.list_topics(timeout=3)
    except Exception:  # any failure means "not reachable"
        return False
    finally:
        consumer.close()
    return True


def committed_lag(bootstrap: str, group: str, prefix: str, partitions: int) -> tuple[int, int]:
    """(messages not yet committed, messages committed on the raw topic)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        names = [f"{prefix}.{t}" for t in CONSUMED_TOPICS]
        tps = [TopicPartition(name, p) for name in names for p in metadata[name].partitions]
        lag = raw_done = 0
        for tp in consumer.committed(tps, timeout=10):
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
            if tp.topic.endswith(".events.raw"):
                raw_done += max(tp.offset, 0)
        return lag, raw_done
    finally:
        consumer.close()


async def bare_loop(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        start = time.perf_counter()
        seen = 0
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    try:  # noqa: SIM105 - suppress() costs a context manager per message in the reference loop
                        orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        pass
                seen += len(records)
        return time.perf_counter() - start
    finally:
        await consumer.stop()


def bench_kafka(lines: list[bytes], bootstrap: str, partitions: int) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(brokers=bootstrap, topic_prefix=prefix, app_id=prefix, partitions=partitions)
    with fresh_topics(settings):
        start = time.perf_counter()
        produce(settings, lines)
        produce_s = time.perf_counter() - start
        bare_s = asyncio.run(bare_loop(bootstrap, settings.topic("events.raw"), len(lines)))
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "REVSTREAM_BROKERS": bootstrap,
                "REVSTREAM_TOPIC_PREFIX": prefix,
                "REVSTREAM_APP_ID": prefix,
                "REVSTREAM_PARTITIONS": str(partitions),
                "REVSTREAM_CLICKHOUSE_DSN": f"chdb://{tmp}/warehouse",
                "REVSTREAM_DATA_DIR": tmp,
                "REVSTREAM_LOG_LEVEL": "WARNING",
            }
            log = Path(tmp) / "worker.log"
            with log.open("wb") as out:
                started = time.perf_counter()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=out, stderr=out
                )
                first_commit = None
                try:
                    while True:
                        _check_alive(proc, log)
                        lag, raw_done = committed_lag(bootstrap, prefix, prefix, partitions)
                        now = time.perf_counter()
                        if first_commit is None and raw_done > 0:
                            first_commit = (now, raw_done)
                        if lag == 0 and raw_done >= len(lines):
                            drained = now
                            break
                        time.sleep(0.5)
                finally:
                    proc.terminate()
                    proc.wait(60)
        end_to_end = drained - started
        assert first_commit is not None
        steady = (len(lines) - first_commit[1]) / max(drained - first_commit[0], 1e-9)
        bare_eps = len(lines) / bare_s
        return {
            "events": len(lines),
            "partitions": partitions,
            "produce_events_per_s": round(len(lines) / produce_s),
            "worker_end_to_end_seconds": round(end_to_end, 2),
            "worker_end_to_end_events_per_s": round(len(lines) / end_to_end),
            "worker_after_first_commit_events_per_s": round(steady),
            "bare_aiokafka_events_per_s": round(bare_eps),
            "ratio_worker_to_bare": round(steady / bare_eps, 4),
        }


def bench_latency(
    lines: list[bytes],
    bootstrap: str,
    *,
    rate: int,
    seconds: int,
    linger_ms: int,
    probe: bool = False,
    backlog: int = 0,
) -> dict[str, Any]:
    """Event-to-score latency at a fixed input rate: from the producer's send to the score's Kafka timestamp.

    Events are sent without ``receivedAt`` at ``rate`` per second for ``seconds`` to a warm worker (its
    first score seen, then 5 s to finish starting; one partition, ``REVSTREAM_LINGER_MS=linger_ms``); each
    score on the ``scores`` topic is matched to its event by ``messageId``. Scores are only published for
    scored events (pages and track calls, not pings).

    With ``probe``, a librdkafka consumer in another process reads ``events.raw`` during the run: how long
    after its send each event could be read at all (``send_to_readable_ms``) is the part of the latency
    that the broker and the machine add before any worker sees the event.

    With ``backlog``, the worker first works through the first ``backlog`` of ``lines`` as fast as it can (the
    run then sends events from later in the simulated month), so that the run meets the state a worker
    builds up (persons, paths, value models, their checkpoints) rather than an almost empty one.
    """
    prefix = f"lat{uuid.uuid4().hex[:8]}"
    settings = Settings(brokers=bootstrap, topic_prefix=prefix, app_id=prefix, partitions=1)
    with fresh_topics(settings):
        events = _latency_events(lines[backlog:], rate * seconds)  # later in event time than the backlog
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "REVSTREAM_BROKERS": bootstrap,
                "REVSTREAM_TOPIC_PREFIX": prefix,
                "REVSTREAM_APP_ID": prefix,
                "REVSTREAM_PARTITIONS": "1",
                "REVSTREAM_CLICKHOUSE_DSN": f"chdb://{tmp}/warehouse",
                "REVSTREAM_DATA_DIR": tmp,
                "REVSTREAM_LOG_LEVEL": "WARNING",
                "REVSTREAM_LINGER_MS": str(linger_ms),
                "REVSTREAM_CONSENT_REQUIRED": "false",
            }
            log = Path(tmp) / "worker.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=out, stderr=out
                )
                try:
                    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
                    consumer = Consumer(
                        {"bootstrap.servers": bootstrap, "group.id": f"{prefix}-probe", "auto.offset.reset": "earliest"}
                    )
                    consumer.subscribe([settings.topic("scores")])
                    warm = {
                        "type": "page",
                        "messageId": f"warm-{prefix}",
                        "anonymousId": "w",
                        "timestamp": "2026-11-01T00:00:00Z",
                    }
                    producer.produce(settings.topic("events.raw"), orjson.dumps(warm))
                    producer.flush()
                    deadline = time.monotonic() + 120  # start-up and the first score are not measured
                    while time.monotonic() < deadline and consumer.poll(1.0) is None:
                        _check_alive(proc, log)
                    if backlog:
                        _work_through(producer, settings, lines[:backlog], proc, log)
                    # The other agents are still opening their warehouse connections (migrations in threads)
                    # when the first score arrives: start-up, not steady state.
                    time.sleep(_SETTLE_SECONDS)
                    with _readable_probe(bootstrap, settings.topic("events.raw"), Path(tmp), on=probe) as readable:
                        sent = _send_at_rate(producer, settings.topic("events.raw"), events, rate)
                        latencies, model_ms, timed = _collect_scores(consumer, sent)
                    consumer.close()
                finally:
                    proc.terminate()
                    proc.wait(60)
        figures = {
            "rate_events_per_s": rate,
            "seconds": seconds,
            "backlog_events": backlog,
            "linger_ms": linger_ms,
            "scored_events": len(latencies),
            "event_to_score_ms_p50": _pct(latencies, 0.5),
            "event_to_score_ms_p99": _pct(latencies, 0.99),
            f"event_to_score_ms_p99_per_{_WINDOW_SECONDS:g}s": _window_p99(timed, _WINDOW_SECONDS),
            "model_ms_p50": _pct(model_ms, 0.5),
            "model_ms_p99": _pct(model_ms, 0.99),
        }
        if probe:
            floor = _send_to_readable(sent, readable)
            figures |= {"send_to_readable_ms_p50": _pct(floor, 0.5), "send_to_readable_ms_p99": _pct(floor, 0.99)}
        return figures


def bench_broker_floor(lines: list[bytes], bootstrap: str, *, rate: int, seconds: int) -> dict[str, Any]:
    """The probe of :func:`bench_latency` with no worker running: events sent at ``rate`` for ``seconds``, and
    when each became readable to a consumer process. Compared with a latency run's probe, it separates what
    the broker and the machine add on their own from what a running worker makes them add."""
    prefix = f"floor{uuid.uuid4().hex[:8]}"
    settings = Settings(brokers=bootstrap, topic_prefix=prefix, app_id=prefix, partitions=1)
    with fresh_topics(settings), tempfile.TemporaryDirectory() as tmp:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        events = _latency_events(lines, rate * seconds)
        with _readable_probe(bootstrap, settings.topic("events.raw"), Path(tmp), on=True) as readable:
            sent = _send_at_rate(producer, settings.topic("events.raw"), events, rate)
    floor = _send_to_readable(sent, readable)
    return {
        "rate_events_per_s": rate,
        "seconds": seconds,
        "sent": len(sent),
        "read": len(floor),
        "send_to_readable_ms_p50": _pct(floor, 0.5),
        "send_to_readable_ms_p99": _pct(floor, 0.99),
        "send_to_readable_ms_max": round(floor[-1], 2) if floor else float("nan"),
    }


def _send_to_readable(sent: dict[str, float], readable: dict[str, float]) -> list[float]:
    """Milliseconds from each event's send to when the probe could read it, sorted (events it read only)."""
    return sorted(readable[mid] - at for mid, at in sent.items() if mid in readable)


def _work_through(
    producer: Producer, settings: Settings, lines: list[bytes], proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Produce ``lines`` to the raw topic and wait until the worker has committed every topic."""
    for line in lines:
        producer.produce(settings.topic("events.raw"), line)
        producer.poll(0)
    producer.flush()
    while True:
        _check_alive(proc, log)
        lag, raw_done = committed_lag(settings.kafka_bootstrap, settings.app_id, settings.topic_prefix, 1)
        if lag == 0 and raw_done > len(lines):  # and the warm-up event
            return
        time.sleep(0.5)


def _check_alive(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Raise with the end of the worker's log if the worker has exited."""
    if proc.poll() is not None:
        msg = f"worker exited: {log.read_text()[-2000:]}"
        raise RuntimeError(msg)


_SETTLE_SECONDS = 5.0
_WINDOW_SECONDS = 5.0


@contextmanager
def _readable_probe(bootstrap: str, topic: str, tmp: Path, *, on: bool) -> Iterator[dict[str, float]]:
    """While the block runs, a consumer process (:func:`_probe`) notes when each new message on ``topic``
    became readable; the mapping (``messageId`` -> ms since the epoch) is filled in when the block ends."""
    readable: dict[str, float] = {}
    if not on:
        yield readable
        return
    out, stop = tmp / "probe.json", tmp / "probe.stop"
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=_probe, args=(bootstrap, topic, out, stop, ready), daemon=True)
    process.start()
    if not ready.wait(60):
        process.kill()
        msg = "the latency probe did not start within 60 s"
        raise RuntimeError(msg)
    try:
        yield readable
    finally:
        stop.touch()
        process.join(60)
    if out.exists():
        readable.update(orjson.loads(out.read_bytes()))


def _probe(bootstrap: str, topic: str, out: Path, stop: Path, ready: Any) -> None:
    """Read ``topic`` (partition 0) from its end until ``stop`` exists; write ``messageId -> read at`` to ``out``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}"})
    low_high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    consumer.assign([TopicPartition(topic, 0, low_high[1])])
    seen: dict[str, float] = {}
    ready.set()
    while not stop.exists():
        message = consumer.poll(0.2)
        if message is None or message.error():
            continue
        at = time.time() * 1000
        try:
            event = orjson.loads(message.value() or b"{}")
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and isinstance(mid := event.get("messageId"), str):
            seen[mid] = at
    consumer.close()
    out.write_bytes(orjson.dumps(seen))


def _latency_events(lines: list[bytes], n: int) -> list[tuple[str, bytes]]:
    """``n`` valid events with unique ids and no ``receivedAt`` (so the worker stamps its own)."""
    events: list[tuple[str, bytes]] = []
    for line in itertools.cycle(lines):
        if len(events) >= n:
            break
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict) or not isinstance(event.get("messageId"), str):
            continue
        event.pop("receivedAt", None)
        event["messageId"] = f"{event['messageId']}-{len(events)}"
        events.append((event["messageId"], orjson.dumps(event)))
    return events


def _send_at_rate(producer: Producer, topic: str, events: list[tuple[str, bytes]], rate: int) -> dict[str, float]:
    sent: dict[str, float] = {}
    start = time.monotonic()
    for i, (mid, body) in enumerate(events):
        due = start + i / rate
        while (now := time.monotonic()) < due:
            producer.poll(0)
            time.sleep(min(0.001, due - now))
        sent[mid] = time.time() * 1000
        producer.produce(topic, body)
        producer.poll(0)
    producer.flush()
    return sent


def _collect_scores(
    consumer: Consumer, sent: dict[str, float]
) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    """Latency (ms) of every score of a sent event, until the topic has been quiet for 10 s: sorted, the
    model times sorted, and ``(sent at, latency)`` in arrival order (for :func:`_window_p99`)."""
    latencies, model_ms, timed = [], [], []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 10:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        quiet_since = time.monotonic()
        score = orjson.loads(message.value() or b"{}")
        if score.get("message_id") in sent:
            at = sent[score["message_id"]]
            latencies.append(message.timestamp()[1] - at)
            timed.append((at, latencies[-1]))
            model_ms.append(score["latency_ms"])
    return sorted(latencies), sorted(model_ms), timed


def _window_p99(timed: list[tuple[float, float]], seconds: float) -> list[float]:
    """The p99 of the events sent in each ``seconds`` of the run: whether one stall or the whole run makes
    the run's p99 (on a shared machine a stall of the broker or the load generator can dominate it)."""
    if not timed:
        return []
    start = min(at for at, _ in timed)
    windows: defaultdict[int, list[float]] = defaultdict(list)
    for at, latency in timed:
        windows[int((at - start) / 1000 / seconds)].append(latency)
    return [_pct(sorted(windows[w]), 0.99) for w in sorted(windows)]


def _pct(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(q * len(values)))], 2) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to run (default 200000)")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092", help="Kafka bootstrap (default 127.0.0.1:19092)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the benchmark topics (default 4)")
    parser.add_argument("--embedded-only", action="store_true", help="skip Kafka mode")
    parser.add_argument("--latency-only", action="store_true", help="only the latency run (needs a broker)")
    parser.add_argument("--latency-rate", type=int, default=1000, help="events/s of the latency run (default 1000)")
    parser.add_argument("--latency-seconds", type=int, default=20, help="length of the latency run (default 20)")
    parser.add_argument("--linger-ms", type=int, default=1, help="REVSTREAM_LINGER_MS of the latency run (default 1)")
    parser.add_argument(
        "--latency-backlog",
        type=int,
        default=0,
        help="events the worker works through before the latency run, to build up state (default 0)",
    )
    parser.add_argument(
        "--latency-probe",
        action="store_true",
        help="also time when each event becomes readable by another consumer process (the broker's and the"
        " machine's share of the latency, before any worker sees the event)",
    )
    parser.add_argument(
        "--broker-floor",
        action="store_true",
        help="only the probe, with no worker running: when events sent at --latency-rate for --latency-seconds"
        " become readable (what the broker and the machine add on their own; needs a broker)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "pipeline.json",
        help="where to write the figures (default benchmarks/results/pipeline.json)",
    )
    args = parser.parse_args()

    lines = traffic(args.events)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }

    def latency() -> dict[str, Any]:
        figures = bench_latency(
            lines,
            args.bootstrap,
            rate=args.latency_rate,
            seconds=args.latency_seconds,
            linger_ms=args.linger_ms,
            probe=args.latency_probe,
            backlog=args.latency_backlog,
        )
        print(f"latency: {figures}")
        return figures

    if args.broker_floor:
        figures = bench_broker_floor(lines, args.bootstrap, rate=args.latency_rate, seconds=args.latency_seconds)
        print(f"broker floor: {figures}")
        return 0
    if args.latency_only:
        results["latency"] = latency()
        return 0
    results["embedded"] = bench_embedded(lines)
    print(f"embedded: {results['embedded']}")
    if not args.embedded_only:
        started_broker = False
        if not broker_up(args.bootstrap):
            port = args.bootstrap.rsplit(":", 1)[1]
            subprocess.run(
                [str(ROOT / "scripts" / "kafka.sh"), "start"],
                env={**os.environ, "REVSTREAM_KAFKA_PORT": port},
                check=True,
            )
            started_broker = True
        try:
            results["kafka"] = bench_kafka(lines, args.bootstrap, args.partitions)
            print(f"kafka: {results['kafka']}")
            results["latency"] = latency()
        finally:
            if started_broker:
                port = args.bootstrap.rsplit(":", 1)[1]
                subprocess.run(
                    [str(ROOT / "scripts" / "kafka.sh"), "stop"],
                    env={**os.environ, "REVSTREAM_KAFKA_PORT": port},
                    check=False,
                )
    figures_json(results, args.json)
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
