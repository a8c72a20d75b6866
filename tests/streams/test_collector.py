"""The collector in memory: aiohttp's test server and client, a MemoryProducer passed to the constructor."""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDictProxy

from schemas import MAX_BATCH_BYTES, MAX_EVENT_BYTES
from streams.cli import main
from streams.collector import CALLS, Collector
from streams.delivery import DeliveryError, KafkaProducer, MemoryProducer

NOW = datetime(2026, 11, 1, 10, 0, 1, 234567, tzinfo=UTC)
KEY = "wk_live_1"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: CIMultiDictProxy[str]


def collector(producer: MemoryProducer | None = None, *, keys: tuple[str, ...] = (KEY,)) -> Collector:
    ids = iter(f"gen-{n}" for n in range(1000))
    return Collector(
        producer=producer or MemoryProducer(), write_keys=keys, clock=lambda: NOW, new_id=lambda: next(ids)
    )


def request(
    target: Collector,
    path: str,
    body: object = None,
    *,
    data: bytes | None = None,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    auth: str | None = KEY,
) -> Answer:
    """One HTTP request to a fresh server; ``body`` is sent as JSON, ``data`` as raw bytes."""
    sent = {"Content-Type": "application/json"} if method == "POST" else {}
    if auth is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(f"{auth}:".encode()).decode()
    sent.update(headers or {})
    payload = data if data is not None else (None if body is None else orjson.dumps(body))

    async def go() -> Answer:
        async with TestClient(TestServer(target.app())) as client:
            response = await client.request(method, path, data=payload, headers=sent)
            raw = await response.read()
            parsed = orjson.loads(raw) if response.content_type == "application/json" and raw else {}
            return Answer(response.status, parsed, response.headers)

    return asyncio.run(go())


def produced(producer: MemoryProducer) -> list[tuple[bytes | None, dict[str, Any]]]:
    return [(key, orjson.loads(value)) for key, value in producer.records]


def event(**fields: object) -> dict[str, object]:
    return {"type": "track", "event": "Product Viewed", "anonymousId": "a1", "messageId": "m1", **fields}


@pytest.mark.parametrize("path", sorted(CALLS))
def test_every_endpoint_and_short_path_accepts_and_produces(path: str) -> None:
    producer = MemoryProducer()
    body: dict[str, object] = {"batch": [event(), event(messageId="m2")]} if CALLS[path] == "batch" else event()
    answer = request(collector(producer), f"/v1/{path}", body)
    assert (answer.status, answer.body) == (200, {"success": True})
    records = produced(producer)
    assert len(records) == (2 if CALLS[path] == "batch" else 1)
    assert all(key == b"a1" for key, _ in records)
    expected_type = "track" if CALLS[path] == "batch" else CALLS[path]
    assert {value["type"] for _, value in records} == {expected_type}


def test_single_call_stamps_received_at_and_message_id_as_segment_does() -> None:
    producer = MemoryProducer()
    client_event = {"event": "Signed Up", "userId": "u1", "receivedAt": "1999-01-01T00:00:00Z", "writeKey": KEY}
    assert request(collector(producer), "/v1/track", client_event, auth=None).status == 200
    [(key, value)] = produced(producer)
    assert key == b"user:u1"
    assert value == {
        "event": "Signed Up",
        "userId": "u1",
        "type": "track",
        "receivedAt": "2026-11-01T10:00:01.234Z",
        "messageId": "gen-0",
    }


def test_batch_events_become_one_record_each_with_batch_fields() -> None:
    producer = MemoryProducer()
    body = {
        "batch": [
            event(messageId=""),
            event(messageId="keep", sentAt="2026-11-01T09:59:59.000Z", context={"ip": "203.0.113.1"}),
            {"type": "identify", "userId": "u9", "traits": {"plan": "pro"}, "writeKey": KEY},
        ],
        "sentAt": "2026-11-01T10:00:00.000Z",
        "context": {"library": {"name": "analytics-node"}, "ip": "198.51.100.7"},
        "writeKey": KEY,
    }
    assert request(collector(producer), "/v1/batch", body, auth=None).status == 200
    (k1, first), (k2, second), (k3, third) = produced(producer)
    assert (k1, k2, k3) == (b"a1", b"a1", b"user:u9")
    assert [first["messageId"], second["messageId"], third["messageId"]] == ["gen-0", "keep", "gen-1"]
    assert first["sentAt"] == "2026-11-01T10:00:00.000Z"
    assert second["sentAt"] == "2026-11-01T09:59:59.000Z"
    assert first["context"] == body["context"]
    assert second["context"] == {"library": {"name": "analytics-node"}, "ip": "203.0.113.1"}
    assert all(v["receivedAt"] == "2026-11-01T10:00:01.234Z" and "writeKey" not in v for v in (first, third))


def test_empty_batch_is_accepted() -> None:
    producer = MemoryProducer()
    assert request(collector(producer), "/v1/b", {"batch": []}).status == 200
    assert producer.records == []


@pytest.mark.parametrize(
    ("where", "path", "body", "auth"),
    [
        ("basic", "/v1/track", event(), KEY),
        ("body", "/v1/track", event(writeKey=KEY), None),
        ("batch body", "/v1/batch", {"batch": [event()], "writeKey": KEY}, None),
        ("batch event", "/v1/batch", {"batch": [event(writeKey=KEY)]}, None),
    ],
)
def test_write_key_from_basic_auth_or_body(where: str, path: str, body: dict[str, object], auth: str | None) -> None:
    producer = MemoryProducer()
    assert request(collector(producer, keys=("other", KEY)), path, body, auth=auth).status == 200, where
    assert len(producer.records) == 1


@pytest.mark.parametrize(
    ("path", "body", "auth", "headers"),
    [
        ("/v1/track", event(), "wrong", {}),
        ("/v1/track", event(writeKey="wrong"), None, {}),
        ("/v1/track", event(), None, {}),
        ("/v1/batch", {"batch": [event()], "writeKey": "wrong"}, None, {}),
        ("/v1/batch", {"batch": [event()]}, None, {}),
        ("/v1/track", event(writeKey=KEY), None, {"Authorization": "Bearer token"}),
        ("/v1/track", event(writeKey=KEY), None, {"Authorization": "Basic %%%"}),
    ],
    ids=["basic", "body", "missing", "batch-body", "batch-missing", "bearer", "malformed-basic"],
)
def test_wrong_or_missing_write_key_is_401(
    path: str, body: dict[str, object], auth: str | None, headers: dict[str, str]
) -> None:
    producer = MemoryProducer()
    answer = request(collector(producer), path, body, auth=auth, headers=headers)
    assert answer.status == 401
    assert answer.body["success"] is False
    assert producer.records == []


def test_without_configured_keys_any_key_is_accepted() -> None:
    producer = MemoryProducer()
    open_collector = collector(producer, keys=())
    assert request(open_collector, "/v1/track", event(), auth="anything").status == 200
    assert request(open_collector, "/v1/track", event(), auth=None).status == 200
    assert request(open_collector, "/v1/track", event(), headers={"Authorization": "Bearer x"}).status == 200
    assert len(producer.records) == 3


@pytest.mark.parametrize(
    ("path", "data", "fragment"),
    [
        ("/v1/track", b"{not json", "not valid JSON"),
        ("/v1/track", b"\xff\xfe", "not valid JSON"),
        ("/v1/track", b"", "not valid JSON"),
        ("/v1/track", b"[1, 2]", "must be a JSON object"),
        ("/v1/batch", b'{"batch": {"type": "page"}}', '"batch" array'),
        ("/v1/batch", b'{"events": []}', '"batch" array'),
        ("/v1/batch", b'{"batch": [{"type": "page"}, 3]}', "event 1 of the batch must be a JSON object"),
        ("/v1/batch", b'{"batch": [{"type": "page"}, {"event": "x"}]}', 'event 1 of the batch has no "type"'),
        ("/v1/batch", b'{"batch": [{"type": ""}]}', 'has no "type"'),
    ],
)
def test_bad_json_or_shape_is_400_and_produces_nothing(path: str, data: bytes, fragment: str) -> None:
    producer = MemoryProducer()
    answer = request(collector(producer), path, data=data)
    assert answer.status == 400
    assert fragment in answer.body["error"]
    assert producer.records == []


def test_collector_leaves_full_validation_to_the_worker() -> None:
    producer = MemoryProducer()
    body = {"batch": [{"type": "track"}, {"type": "nonsense", "anonymousId": 5}]}
    assert request(collector(producer), "/v1/batch", body).status == 200
    assert [value["type"] for _, value in produced(producer)] == ["track", "nonsense"]
    assert [key for key, _ in producer.records] == [None, None]


def padded(size: int, **fields: object) -> dict[str, object]:
    return event(properties={"padding": "x" * size}, **fields)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/track", padded(MAX_EVENT_BYTES)),
        # exactly at the limit as sent, over it once receivedAt is stamped
        ("/v1/t", padded(MAX_EVENT_BYTES - len(orjson.dumps(padded(0))))),
        ("/v1/batch", {"batch": [padded(30_000, messageId=f"m{i}") for i in range(18)]}),
        ("/v1/batch", {"batch": [event(), padded(MAX_EVENT_BYTES)]}),
    ],
    ids=["call", "call-stamped", "batch", "event-in-batch"],
)
def test_oversize_is_413_and_produces_nothing(path: str, body: dict[str, object]) -> None:
    producer = MemoryProducer()
    answer = request(collector(producer), path, body)
    assert answer.status == 413
    assert producer.records == []


def test_oversize_once_decompressed_is_413_without_inflating_it_all() -> None:
    producer = MemoryProducer()
    bomb = gzip.compress(b'{"batch": [' + b" " * 200_000_000 + b"]}")
    assert len(bomb) < MAX_BATCH_BYTES
    start = time.perf_counter()
    answer = request(collector(producer), "/v1/batch", data=bomb, headers={"Content-Encoding": "gzip"})
    assert answer.status == 413
    assert time.perf_counter() - start < 5
    assert producer.records == []


def test_gzip_body_is_accepted() -> None:
    producer = MemoryProducer()
    body = gzip.compress(orjson.dumps({"batch": [event(), event(messageId="m2")]}))
    assert request(collector(producer), "/v1/batch", data=body, headers={"Content-Encoding": "gzip"}).status == 200
    assert [value["messageId"] for _, value in produced(producer)] == ["m1", "m2"]


@pytest.mark.parametrize(
    ("data", "status"), [(b"\x1f\x8bnot gzip at all", 400), (gzip.compress(b'{"type": "page"}')[:-12], 400)]
)
def test_broken_gzip_is_400(data: bytes, status: int) -> None:
    producer = MemoryProducer()
    assert request(collector(producer), "/v1/page", data=data, headers={"Content-Encoding": "gzip"}).status == status
    assert producer.records == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "application/octet-stream"},
        {"Content-Type": "text/html"},
        {"Content-Encoding": "br"},
    ],
)
def test_wrong_content_type_or_encoding_is_415(headers: dict[str, str]) -> None:
    producer = MemoryProducer()
    assert request(collector(producer), "/v1/track", event(), headers=headers).status == 415
    assert producer.records == []


def test_text_plain_as_sent_by_analytics_js_and_send_beacon_is_accepted() -> None:
    producer = MemoryProducer()
    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    assert request(collector(producer), "/v1/batch", {"batch": [event()]}, headers=headers).status == 200
    assert len(producer.records) == 1


def test_cors_preflight_and_answers_carry_the_origin() -> None:
    target = collector()
    origin = {"Origin": "https://shop.example"}
    preflight = request(
        target,
        "/v1/batch",
        method="OPTIONS",
        auth=None,
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    for auth, status in ((KEY, 200), ("wrong", 401)):
        answer = request(target, "/v1/track", event(), auth=auth, headers=origin)
        assert answer.status == status
        assert answer.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Access-Control-Allow-Origin" not in request(target, "/v1/track", event()).headers


def test_delivery_failure_is_503_with_retry_after() -> None:
    producer = MemoryProducer(error="broker down")
    target = Collector(producer=producer, write_keys=[KEY], retry_after=7)
    answer = request(target, "/v1/batch", {"batch": [event()]})
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "7"
    assert answer.body["success"] is False
    assert target.stats["unavailable"] == 1


def test_kafka_unreachable_is_503_within_the_delivery_timeout() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def go() -> tuple[int, str, float]:
        producer = KafkaProducer(bootstrap=f"127.0.0.1:{port}", topic="t.events.raw", timeout=1.0)
        try:
            async with TestClient(TestServer(Collector(producer=producer).app())) as client:
                start = time.perf_counter()
                response = await client.post("/v1/track", json=event())
                return response.status, response.headers["Retry-After"], time.perf_counter() - start
        finally:
            await producer.close()

    status, retry_after, seconds = asyncio.run(go())
    assert (status, retry_after) == (503, "5")
    assert seconds < 4


def test_kafka_producer_raises_delivery_error_for_an_unreachable_broker() -> None:
    async def go() -> None:
        producer = KafkaProducer(bootstrap="127.0.0.1:9", topic="t", timeout=0.5)
        try:
            await producer.deliver([(b"k", b"{}")])
        finally:
            await producer.close()

    with pytest.raises(DeliveryError, match="Kafka did not store the events"):
        asyncio.run(go())


def test_serves_the_tracker_demo_and_health() -> None:
    target = collector()
    tracker = request(target, "/tracker.js", method="GET", auth=None)
    assert tracker.status == 200
    assert tracker.headers["Content-Type"].startswith("application/javascript")
    assert request(target, "/demo", method="GET", auth=None).headers["Content-Type"].startswith("text/html")
    request(target, "/v1/track", event())
    health = request(target, "/health", method="GET", auth=None)
    assert health.body == {"ok": True, "requests": 1, "events": 1}


def test_unknown_paths_and_methods() -> None:
    target = collector()
    assert request(target, "/v1/unknown", event()).status == 404
    assert request(target, "/v1/track", method="GET").status == 405


@settings(max_examples=60, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=12,
        ).map(orjson.dumps),
    ),
    path=st.sampled_from(["/v1/track", "/v1/batch"]),
)
def test_any_body_gets_a_clear_answer_and_is_produced_only_when_accepted(data: bytes, path: str) -> None:
    producer = MemoryProducer()
    answer = request(collector(producer), path, data=data)
    assert answer.status in (200, 400)
    if answer.status == 200:
        expected = len(orjson.loads(data)["batch"]) if path == "/v1/batch" else 1
        assert len(producer.records) == expected
    else:
        assert producer.records == []


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [(["collect", "--port", "http"], "expected a port number"), (["collect", "--port", "70000"], "between 0 and")],
)
def test_collect_flag_errors_are_one_line(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert fragment in err
    assert err.count("\n") == 1
