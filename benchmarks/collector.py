"""Load test of the HTTP collector: 10,000 concurrent simulated users (the plan's figure) on 127.0.0.1.

    python -m benchmarks.collector --users 10000 --duration 60 --json benchmarks/results/collector.json

A real ``revstream collect`` process (one event loop, one core) in front of a real broker (started with
``scripts/kafka.sh`` unless one answers on ``--bootstrap``). Each simulated user is a browser tab running the
tracker: it opens its own keep-alive connection (so 10,000 users hold 10,000 sockets), then, after an
exponentially distributed think time (mean ``--think`` seconds), sends a ``/v1/batch`` of 1-5 tracker-like
events as ``text/plain`` with its write key in the body, as ``tracker.js`` does; users start spread over
``--ramp`` seconds. The run stops at ``--duration`` seconds or ``--max-requests`` requests, whichever comes
first; requests still in flight are awaited.

Figures: accepted events/s and requests/s (HTTP 200 only, over the load window), response time p50/p90/p99/
max as the client sees it (connection set-up included), statuses, the collector's CPU seconds, and lost
events: every event answered 200 must be on ``events.raw`` (high watermarks) and, unless
``--topic-only``, in ClickHouse after a ``revstream worker`` drained the topic (``uniqExact(message_id)``
over ``events`` and ``failed_events`` for the benchmark's own messageIds). The client runs on the same
machine, so on a 2-core box the collector, the client, the broker and later the worker share two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from confluent_kafka import Consumer, TopicPartition

from benchmarks import figures_json
from benchmarks.pipeline import broker_up, committed_lag, fresh_topics
from sinks import ClickHouseSink
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
WRITE_KEY = "bench-write-key"
TARGET = "127.0.0.1"
EVENTS: tuple[tuple[str, str | None, dict[str, object]], ...] = (
    ("page", None, {}),
    ("track", "Element Clicked", {"selector": "button.add-to-cart"}),
    ("track", "Scroll Depth Reached", {"depth": 50}),
    ("track", "Product Viewed", {"product_id": "p-1", "price": 19.9}),
    ("track", "Page Engagement", {"engagement_time_ms": 4200}),
)


@dataclass
class Load:
    deadline: float
    budget: int
    think: float
    sent: int = 0
    accepted_events: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    first: float = 0.0
    last: float = 0.0
    lags: list[float] = field(default_factory=list)

    def take(self) -> bool:
        if self.sent >= self.budget or time.monotonic() >= self.deadline:
            return False
        self.sent += 1
        return True


def batch(user: str, seq: int, rng: random.Random) -> tuple[bytes, int]:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    events = []
    for i in range(rng.randint(1, 5)):
        kind, name, properties = EVENTS[rng.randrange(len(EVENTS))]
        event: dict[str, Any] = {
            "type": kind,
            "messageId": f"{user}-{seq}-{i}",
            "anonymousId": user,
            "timestamp": stamp,
            "properties": properties,
            "context": {"page": {"path": "/product/p-1", "url": "https://shop.example/product/p-1"}},
        }
        if name is not None:
            event["event"] = name
        events.append(event)
    return orjson.dumps({"batch": events, "sentAt": stamp, "writeKey": WRITE_KEY}), len(events)


async def user(url: str, number: int, load: Load, ramp: float, rng: random.Random) -> None:
    name = f"bench-{number}"
    await asyncio.sleep(rng.uniform(0, ramp))
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        seq = 0
        while True:
            pause = rng.expovariate(1 / load.think) if load.think > 0 else 0.0
            await asyncio.sleep(min(pause, max(load.deadline - time.monotonic(), 0.0)))
            if not load.take():
                return
            body, count = batch(name, seq, rng)
            seq += 1
            start = time.monotonic()
            try:
                async with session.post(url, data=body, headers={"Content-Type": "text/plain"}) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as e:
                status = type(e).__name__
            end = time.monotonic()
            load.latencies.append(end - start)
            load.statuses[status] = load.statuses.get(status, 0) + 1
            if status == "200":
                load.accepted_events += count
                load.first = load.first or start
                load.last = end


async def run_load(url: str, args: argparse.Namespace) -> Load:
    load = Load(deadline=time.monotonic() + args.duration, budget=args.max_requests, think=args.think)
    rng = random.Random(7)
    seeds = [rng.randrange(2**32) for _ in range(args.users)]
    monitor = asyncio.create_task(loop_lag(load))
    await asyncio.gather(*(user(url, n, load, args.ramp, random.Random(seeds[n])) for n in range(args.users)))
    monitor.cancel()
    return load


async def loop_lag(load: Load) -> None:
    """How late the client's own event loop runs a 50 ms timer: latency the collector is not to blame for."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(0.05)
        load.lags.append(time.monotonic() - before - 0.05)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def topic_count(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((TARGET, 0))
        return int(probe.getsockname()[1])


def wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"collector exited: {log.read_text()[-2000:]}"
            raise RuntimeError(msg)
        try:
            with socket.create_connection((TARGET, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    msg = "collector did not start"
    raise RuntimeError(msg)


def drain_into_warehouse(env: dict[str, str], bootstrap: str, prefix: str, partitions: int, log: Path) -> float:
    """Run a worker until its group has committed every topic; returns the seconds it took."""
    started = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=out, stderr=out)
        try:
            zero_seen = 0
            while zero_seen < 2:
                if proc.poll() is not None:
                    msg = f"worker exited: {log.read_text()[-2000:]}"
                    raise RuntimeError(msg)
                lag, raw_done = committed_lag(bootstrap, prefix, prefix, partitions)
                zero_seen = zero_seen + 1 if lag == 0 and raw_done > 0 else 0
                time.sleep(1.0)
        finally:
            proc.terminate()
            proc.wait(60)
    return time.monotonic() - started


def bench(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"cbench{uuid.uuid4().hex[:8]}"
    partitions = args.partitions
    settings = Settings(brokers=args.bootstrap, topic_prefix=prefix, app_id=prefix, partitions=partitions)
    with fresh_topics(settings):
        port = free_port()
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "REVSTREAM_BROKERS": args.bootstrap,
                "REVSTREAM_TOPIC_PREFIX": prefix,
                "REVSTREAM_APP_ID": prefix,
                "REVSTREAM_PARTITIONS": str(partitions),
                "REVSTREAM_CLICKHOUSE_DSN": f"chdb://{tmp}/warehouse",
                "REVSTREAM_DATA_DIR": tmp,
                "REVSTREAM_WRITE_KEYS": WRITE_KEY,
                "REVSTREAM_LOG_LEVEL": "WARNING",
            }
            log = Path(tmp) / "collector.log"
            with log.open("wb") as out:
                collector = subprocess.Popen(
                    [sys.executable, "-m", "streams.cli", "collect", "--host", TARGET, "--port", str(port)],
                    env=env,
                    stdout=out,
                    stderr=out,
                )
            try:
                wait_healthy(port, collector, log)
                cpu_before = cpu_seconds(collector.pid)
                client_before = cpu_seconds(os.getpid())
                started = time.monotonic()
                url = f"http://{TARGET}:{port}/v1/batch"
                # The client's own cyclic GC walks 10,000 sessions' objects in pauses that would be measured as
                # collector latency; it is paused for the bounded run.
                gc.disable()
                try:
                    load = asyncio.run(run_load(url, args))
                finally:
                    gc.enable()
                elapsed = time.monotonic() - started
                collector_cpu = cpu_seconds(collector.pid) - cpu_before
                client_cpu = cpu_seconds(os.getpid()) - client_before
            finally:
                collector.terminate()
                collector.wait(60)
            on_topic = topic_count(args.bootstrap, settings.topic("events.raw"), partitions)
            stored = None
            drain_s = None
            if not args.topic_only:
                drain_s = drain_into_warehouse(env, args.bootstrap, prefix, partitions, Path(tmp) / "worker.log")
                with ClickHouseSink(dsn=env["REVSTREAM_CLICKHOUSE_DSN"]) as sink:
                    stored = sink.query(
                        "SELECT uniqExact(message_id) FROM (SELECT message_id FROM events"
                        " UNION ALL SELECT message_id FROM failed_events) WHERE startsWith(message_id, 'bench-')"
                    ).result_rows[0][0]
        latencies = sorted(load.latencies)
        window = max(load.last - load.first, 1e-9)
        ok = load.statuses.get("200", 0)
        return {
            "users": args.users,
            "think_seconds_mean": args.think,
            "ramp_seconds": args.ramp,
            "partitions": partitions,
            "requests": len(latencies),
            "statuses": dict(sorted(load.statuses.items())),
            "accepted_events": load.accepted_events,
            "load_seconds": round(elapsed, 2),
            "accepted_requests_per_s": round(ok / window),
            "accepted_events_per_s": round(load.accepted_events / window),
            "latency_ms": {
                "p50": round(percentile(latencies, 0.50) * 1000, 2),
                "p90": round(percentile(latencies, 0.90) * 1000, 2),
                "p99": round(percentile(latencies, 0.99) * 1000, 2),
                "max": round((latencies[-1] if latencies else 0.0) * 1000, 2),
            },
            "collector_cpu_seconds": round(collector_cpu, 2),
            "collector_cpu_ms_per_1k_events": round(collector_cpu * 1e6 / max(load.accepted_events, 1), 1),
            "client_cpu_seconds": round(client_cpu, 2),
            "client_loop_lag_ms": {
                "p50": round(percentile(sorted(load.lags), 0.5) * 1000, 2),
                "p99": round(percentile(sorted(load.lags), 0.99) * 1000, 2),
            },
            "events_on_topic": on_topic,
            "lost_on_topic": max(load.accepted_events - on_topic, 0),
            "events_in_clickhouse": stored,
            "lost_in_clickhouse": None if stored is None else max(load.accepted_events - stored, 0),
            "worker_drain_seconds": None if drain_s is None else round(drain_s, 1),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000, help="concurrent simulated users (default 10000)")
    parser.add_argument("--duration", type=float, default=60.0, help="load seconds at most (default 60)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="requests at most (default 200000)")
    parser.add_argument("--think", type=float, default=10.0, help="mean seconds between a user's batches (default 10)")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which users start (default 10)")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092", help="Kafka bootstrap (default 127.0.0.1:19092)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the benchmark topics (default 4)")
    parser.add_argument("--topic-only", action="store_true", help="count events on the topic, skip ClickHouse")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if not args.bootstrap.startswith(("127.0.0.1:", "localhost:")):
        parser.error("--bootstrap must be on 127.0.0.1: this benchmark only targets this machine")

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    started_broker = False
    port = args.bootstrap.rsplit(":", 1)[1]
    if not broker_up(args.bootstrap):
        kafka_env = {**os.environ, "REVSTREAM_KAFKA_PORT": port}
        subprocess.run([str(ROOT / "scripts" / "kafka.sh"), "start"], env=kafka_env, check=True)
        started_broker = True
    try:
        results["collector"] = bench(args)
    finally:
        if started_broker:
            kafka_env = {**os.environ, "REVSTREAM_KAFKA_PORT": port}
            subprocess.run([str(ROOT / "scripts" / "kafka.sh"), "stop"], env=kafka_env, check=False)
    figures = results["collector"]
    print(
        f"{figures['users']} users, {figures['requests']} requests in {figures['load_seconds']} s: "
        f"{figures['accepted_events_per_s']} accepted events/s ({figures['accepted_requests_per_s']} requests/s), "
        f"p50 {figures['latency_ms']['p50']} ms, p99 {figures['latency_ms']['p99']} ms, "
        f"statuses {figures['statuses']}"
    )
    print(
        f"accepted {figures['accepted_events']} events; on the topic {figures['events_on_topic']} "
        f"(lost {figures['lost_on_topic']}); in ClickHouse {figures['events_in_clickhouse']} "
        f"(lost {figures['lost_in_clickhouse']})"
    )
    print(f"all figures: {orjson.dumps(figures).decode()}")
    figures_json(results, args.json)
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
