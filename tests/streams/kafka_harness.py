"""Helpers for integration tests that run a real ``revstream worker`` process against the real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streams.kafka import CONSUMED_TOPICS


@dataclass(frozen=True)
class Deployment:
    """One isolated deployment on the shared broker: its own topic prefix, consumer group and warehouse."""

    bootstrap: str
    prefix: str
    data_dir: Path
    partitions: int = 3

    @classmethod
    def new(cls, bootstrap: str, tmp_path: Path, partitions: int = 3) -> Deployment:
        return cls(bootstrap, f"it{uuid.uuid4().hex[:10]}", tmp_path, partitions)

    @property
    def dsn(self) -> str:
        return f"chdb://{self.data_dir / 'warehouse'}?database=kafka"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "REVSTREAM_BROKERS": self.bootstrap,
            "REVSTREAM_TOPIC_PREFIX": self.prefix,
            "REVSTREAM_APP_ID": self.prefix,
            "REVSTREAM_PARTITIONS": str(self.partitions),
            "REVSTREAM_CLICKHOUSE_DSN": self.dsn,
            "REVSTREAM_DATA_DIR": str(self.data_dir),
            "REVSTREAM_BATCH_SECONDS": "0.5",
            "REVSTREAM_LOG_LEVEL": os.environ.get("REVSTREAM_TEST_WORKER_LOG_LEVEL", "WARNING"),
        }


def lag(deployment: Deployment) -> int:
    """Messages on the deployment's topics not yet committed by its consumer group."""
    return sum(lags(deployment).values())


def lags(deployment: Deployment) -> dict[str, int]:
    """Uncommitted messages per ``topic:partition`` (only those with any)."""
    consumer = Consumer({"bootstrap.servers": deployment.bootstrap, "group.id": deployment.prefix})
    try:
        out = {}
        names = [f"{deployment.prefix}.{topic}" for topic in CONSUMED_TOPICS]
        metadata = consumer.list_topics(timeout=10).topics
        partitions = [TopicPartition(name, p) for name in names for p in metadata[name].partitions]
        for tp in consumer.committed(partitions, timeout=10):
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high - max(tp.offset, 0):
                out[f"{tp.topic}:{tp.partition}"] = high - max(tp.offset, 0)
        return out
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[tuple[bytes | None, bytes]]:
    """Every message on ``topic`` (all partitions, from the start) as ``(key, value)``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out, ended, deadline = [], set(), time.monotonic() + timeout
        while len(ended) < len(partitions) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                ended.add(message.partition())
                continue
            out.append((message.key(), message.value()))
        return out
    finally:
        consumer.close()


@contextmanager
def worker(
    deployment: Deployment, log: Path, *, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process (``env`` defaults to the deployment's); stopped with SIGTERM (then SIGKILL)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env or deployment.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_drained(deployment: Deployment, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    """Wait until every topic is consumed and committed twice in a row (nothing in flight)."""
    deadline = time.monotonic() + timeout
    zero_seen = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"worker exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
            raise AssertionError(msg)
        try:
            remaining = lag(deployment)
        except KafkaException:  # e.g. NOT_COORDINATOR while a restarted broker loads its group state
            time.sleep(1.0)
            continue
        zero_seen = zero_seen + 1 if remaining == 0 else 0
        if zero_seen >= 2:
            return
        time.sleep(1.0)
    msg = f"worker did not drain within {timeout}s (lag {lags(deployment)}):\n{log.read_text()[-4000:]}"
    raise AssertionError(msg)
