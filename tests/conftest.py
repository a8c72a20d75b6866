"""Shared fixtures: a real embedded ClickHouse (chDB) warehouse, and a real Kafka broker for integration tests.

chDB opens one data path per process, so the whole session shares one path and each test gets a database
of its own in it. The broker is started once per session by ``scripts/kafka.sh`` (the same script a
developer and CI use) and stopped at the end, unless one was already running on the port.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def warehouse_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("warehouse")


@pytest.fixture
def warehouse_dsn(warehouse_path: Path) -> str:
    """A fresh database in the session's chDB path."""
    return f"chdb://{warehouse_path}?database=t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    port = os.environ.get("REVSTREAM_KAFKA_PORT", "19092")
    env = {**os.environ, "REVSTREAM_KAFKA_PORT": port}
    script = str(ROOT / "scripts" / "kafka.sh")
    status = subprocess.run([script, "status"], env=env, capture_output=True, text=True, check=False)
    started_here = status.returncode != 0
    if started_here:
        subprocess.run([script, "start", "--fresh"], env=env, check=True)
    yield f"127.0.0.1:{port}"
    if started_here:
        subprocess.run([script, "stop"], env=env, check=False)


def segment(**fields: object) -> bytes:
    """A valid Segment page call with ``fields`` overriding the defaults, as wire bytes."""
    event: dict[str, object] = {
        "type": "page",
        "messageId": uuid.uuid4().hex,
        "anonymousId": "device-1",
        "timestamp": "2026-11-01T10:00:00.000Z",
        "sentAt": "2026-11-01T10:00:00.500Z",
        "receivedAt": "2026-11-01T10:00:01.000Z",
        "context": {"ip": "203.0.113.9", "page": {"url": "https://shop.example/", "path": "/"}},
    }
    event.update(fields)
    return orjson.dumps(event)
