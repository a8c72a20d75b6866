"""The HTTP collector: Segment's HTTP Tracking API in front of the ``events.raw`` topic.

Endpoints (``POST``; ``OPTIONS`` answers CORS preflights)::

    /v1/track /v1/identify /v1/page /v1/screen /v1/alias /v1/group   one call; the path sets ``type``
    /v1/t     /v1/i        /v1/p    /v1/s      /v1/a     /v1/g       the same, analytics.js' short paths
    /v1/batch /v1/b                                                  {"batch": [calls], "sentAt"?, ...}
    GET /tracker.js  the browser tracker (streams/static)   GET /demo  a page that loads it   GET /health

A request is answered ``200 {"success": true}`` only after Kafka has stored every event in it. Otherwise:
``415`` for a content type other than JSON or text (analytics.js and ``sendBeacon`` send ``text/plain`` to
avoid a CORS preflight) or an encoding other than gzip, ``413`` beyond Segment's limits (32 KB a call or an
event of a batch, 500 KB a batch, counted after gzip is undone), ``400`` for a body that is not JSON, not an
object, or a batch event without ``type``, ``401`` for a missing or unknown write key (HTTP basic user name,
else ``writeKey`` in the body; no configured keys means any key), and ``503`` with ``Retry-After`` when
Kafka does not confirm delivery in time. A rejected request produces nothing.

The collector checks only what it must to frame events. Each accepted event becomes one record, keyed by
``anonymousId`` (else ``user:<userId>``, as :func:`streams.kafka.device_key`), stamped as Segment stamps it:
``receivedAt`` (server time, ISO 8601 with milliseconds and ``Z``, overriding the client's), ``messageId``
(``api-<uuid>`` when missing), ``sentAt`` and ``context``/``integrations`` from the batch when the event
lacks them; ``writeKey`` is removed. Full validation stays in the worker's ingest, which sends invalid
events to the failed stream with their bytes. A retried request whose events had no ``messageId`` gets new
ids, so it can be stored twice; every Segment SDK and our tracker set ``messageId``.

Why a standalone aiohttp app and not Faust's web views: the collector is stateless and is scaled by request
load behind a load balancer, the worker by partitions; a collector inside a worker would join the consumer
group, so every collector restart would rebalance the pipeline, and collectors could not outnumber
partitions. It produces with confluent-kafka (librdkafka, the producer ``revstream simulate --to-kafka``
already uses), whose C batching and idempotent retries are cheaper per event than aiokafka's pure-Python
producer inside Faust; :mod:`streams.delivery` bridges its delivery callbacks to asyncio futures. aiohttp is
the server Faust itself runs on, so it adds no dependency.

>>> import asyncio
>>> from aiohttp.test_utils import TestClient, TestServer
>>> producer = MemoryProducer()
>>> async def send() -> int:
...     async with TestClient(TestServer(Collector(producer=producer).app())) as client:
...         response = await client.post("/v1/t", json={"event": "Signed Up", "anonymousId": "a1"})
...         return response.status
>>> asyncio.run(send())
200
>>> key, value = producer.records[0]
>>> key, sorted(orjson.loads(value))
(b'a1', ['anonymousId', 'event', 'messageId', 'receivedAt', 'type'])
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import math
import os
import signal
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson
import structlog
from aiohttp import web

from schemas.errors import ConfigError
from schemas.segment import MAX_BATCH_BYTES, MAX_EVENT_BYTES
from streams.delivery import DeliveryError, KafkaProducer, MemoryProducer, RawProducer, Record
from streams.kafka import ensure_topics
from streams.settings import Settings

__all__ = ["Collector", "DeliveryError", "MemoryProducer", "collect", "parse_write_keys"]

log = structlog.get_logger(__name__)

CALLS = {
    "track": "track",
    "identify": "identify",
    "page": "page",
    "screen": "screen",
    "alias": "alias",
    "group": "group",
    "batch": "batch",
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "a": "alias",
    "g": "group",
    "b": "batch",
}
CONTENT_TYPES = frozenset({"application/json", "text/plain"})
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Content-Encoding, X-Retry-Count"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_write_keys(text: str) -> frozenset[str]:
    """The write keys of ``REVSTREAM_WRITE_KEYS`` (comma separated, blanks ignored).

    >>> sorted(parse_write_keys(" k1, ,k2 "))
    ['k1', 'k2']
    """
    return frozenset(key.strip() for key in text.split(",") if key.strip())


def received_at(now: datetime) -> str:
    """Segment's ``receivedAt`` format: ISO 8601 in UTC with milliseconds and ``Z``.

    >>> received_at(datetime(2026, 11, 1, 10, 0, 1, 123456, tzinfo=UTC))
    '2026-11-01T10:00:01.123Z'
    """
    # isoformat, not strftime: this runs once a request, and isoformat is an order of magnitude cheaper.
    return now.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def partition_key(event: dict[str, Any]) -> bytes | None:
    """The record key: ``anonymousId``, else ``user:<userId>``, as :func:`streams.kafka.device_key`.

    >>> partition_key({"userId": "u1"}), partition_key({"anonymousId": "a1", "userId": "u1"})
    (b'user:u1', b'a1')
    """
    anonymous_id = event.get("anonymousId")
    if isinstance(anonymous_id, str) and anonymous_id:
        return anonymous_id.encode()
    user_id = event.get("userId")
    if isinstance(user_id, str) and user_id:
        return f"user:{user_id}".encode()
    return None


class Rejected(Exception):  # noqa: N818 - control flow inside a request, never leaves the handler
    """A request the collector refuses with ``status``; nothing of it is produced."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _now() -> datetime:
    return datetime.now(UTC)


class Collector:
    """The Segment HTTP API as an aiohttp app that hands accepted events to ``producer``.

    ``write_keys`` empty accepts any key. ``retry_after`` (seconds) is sent with 503 answers. ``clock``
    gives the ``receivedAt`` time and ``new_id`` the ``messageId`` of events without one (both for tests).
    """

    def __init__(
        self,
        *,
        producer: RawProducer,
        write_keys: Collection[str] = (),
        retry_after: int = 5,
        clock: Callable[[], datetime] = _now,
        new_id: Callable[[], str] = lambda: f"api-{uuid.uuid4()}",
    ) -> None:
        self.producer = producer
        self.write_keys = write_keys
        self.retry_after = retry_after
        self.clock = clock
        self.new_id = new_id
        self._keys = [key.encode() for key in write_keys]
        self.stats: Counter[str] = Counter()
        self._warned_at = -math.inf
        static = resources.files("streams") / "static"
        self._tracker = (static / "tracker.js").read_bytes()
        self._demo = (static / "demo.html").read_bytes()

    def app(self) -> web.Application:
        """A new aiohttp application serving this collector (gzip is undone here, not by aiohttp)."""
        app = web.Application(
            middlewares=[_cors],
            client_max_size=MAX_BATCH_BYTES,
            handler_args={"auto_decompress": False},
        )
        for path in CALLS:
            app.router.add_post(f"/v1/{path}", self._handle)
            app.router.add_route("OPTIONS", f"/v1/{path}", _preflight)
        app.router.add_get("/tracker.js", self._static(self._tracker, "application/javascript"))
        app.router.add_get("/demo", self._static(self._demo, "text/html"))
        app.router.add_get("/health", self._health)
        return app

    def _static(self, body: bytes, content_type: str) -> Handler:
        async def serve(_request: web.Request) -> web.StreamResponse:
            headers = {"Cache-Control": "public, max-age=300"}
            return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

        return serve

    async def _health(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, **self.stats}, dumps=_dumps)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        call = CALLS[request.path.rsplit("/", 1)[1]]
        try:
            records = await self._records(request, call)
        except Rejected as e:
            self.stats[f"rejected_{e.status}"] += 1
            log.debug("request rejected", path=request.path, status=e.status, reason=str(e))
            return _answer(e.status, {"success": False, "error": str(e)})
        try:
            await self.producer.deliver(records)
        except DeliveryError as e:
            self.stats["unavailable"] += 1
            if time.monotonic() - self._warned_at >= 10:  # one line per 10 s while Kafka is away, not per request
                self._warned_at = time.monotonic()
                log.warning("events not delivered; answering 503", error=str(e), unavailable=self.stats["unavailable"])
            body = {"success": False, "error": "events could not be stored; retry later"}
            return _answer(503, body, headers={"Retry-After": str(self.retry_after)})
        self.stats["requests"] += 1
        self.stats["events"] += len(records)
        return _answer(200, {"success": True})

    async def _records(self, request: web.Request, call: str) -> list[Record]:
        """Check, decode, authenticate and stamp one request; raises :class:`Rejected`."""
        if request.content_type not in CONTENT_TYPES:
            msg = f"unsupported content type {request.content_type!r}; send application/json"
            raise Rejected(415, msg)
        header_key = self._header_key(request)
        limit = MAX_BATCH_BYTES if call == "batch" else MAX_EVENT_BYTES
        body = _decode(await _read(request, limit), request.headers.get("Content-Encoding", ""), limit)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            msg = f"not valid JSON: {e}"
            raise Rejected(400, msg) from e
        if not isinstance(data, dict):
            msg = f"the body must be a JSON object, not {type(data).__name__}"
            raise Rejected(400, msg)
        if call == "batch":
            events = _batch_events(data)
            body_key = data.get("writeKey") or next((e["writeKey"] for e in events if e.get("writeKey")), None)
        else:
            data["type"] = call
            events = [data]
            body_key = data.get("writeKey")
        if header_key is None:
            self._authenticate(body_key)
        return self._stamp(events, data if call == "batch" else {})

    def _header_key(self, request: web.Request) -> str | None:
        """The write key of an ``Authorization: Basic`` header (checked), or ``None`` without one."""
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, credentials = header.partition(" ")
        key: str | None = None
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = None
        if key is None:
            if not self._keys:
                return ""
            msg = "the Authorization header must be HTTP basic with the write key as user name"
            raise Rejected(401, msg)
        self._authenticate(key)
        return key

    def _authenticate(self, key: object) -> None:
        if not self._keys:
            return
        if not isinstance(key, str) or not key:
            msg = "a write key is required: HTTP basic user name or writeKey in the body"
            raise Rejected(401, msg)
        given = key.encode()
        # Compare with every key, in constant time, so timing tells nothing about a near miss.
        if not sum(hmac.compare_digest(given, known) for known in self._keys):
            msg = "unknown write key"
            raise Rejected(401, msg)

    def _stamp(self, events: list[dict[str, Any]], batch: dict[str, Any]) -> list[Record]:
        now = received_at(self.clock())
        sent_at, context, integrations = batch.get("sentAt"), batch.get("context"), batch.get("integrations")
        records = []
        for index, event in enumerate(events):
            event.pop("writeKey", None)
            event["receivedAt"] = now
            if event.get("messageId") in (None, ""):
                event["messageId"] = self.new_id()
            if sent_at is not None and "sentAt" not in event:
                event["sentAt"] = sent_at
            if isinstance(context, dict):
                own = event.get("context")
                if own is None:
                    event["context"] = context
                elif isinstance(own, dict):
                    event["context"] = {**context, **own}
            if integrations is not None and "integrations" not in event:
                event["integrations"] = integrations
            value = orjson.dumps(event)
            if len(value) > MAX_EVENT_BYTES:
                where = f"event {index} of the batch" if batch else "the event"
                msg = f"{where} is {len(value)} bytes; the limit is {MAX_EVENT_BYTES} (32 KB)"
                raise Rejected(413, msg)
            records.append((partition_key(event), value))
        return records


def _batch_events(data: dict[str, Any]) -> list[dict[str, Any]]:
    batch = data.get("batch")
    if not isinstance(batch, list):
        msg = 'a batch must be a JSON object with a "batch" array'
        raise Rejected(400, msg)
    for index, event in enumerate(batch):
        if not isinstance(event, dict):
            msg = f"event {index} of the batch must be a JSON object, not {type(event).__name__}"
            raise Rejected(400, msg)
        if not isinstance(event.get("type"), str) or not event["type"]:
            msg = f'event {index} of the batch has no "type"'
            raise Rejected(400, msg)
    return batch


async def _read(request: web.Request, limit: int) -> bytes:
    too_large = f"the body is larger than {limit} bytes ({limit // 1024} KB)"
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, too_large)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Rejected(413, too_large) from None
    if len(body) > limit:
        raise Rejected(413, too_large)
    return body


def _decode(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding: gzip`` without ever inflating more than ``limit + 1`` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        msg = f"unsupported content encoding {encoding!r}; send gzip or nothing"
        raise Rejected(415, msg)
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        msg = f"the body is not valid gzip: {e}"
        raise Rejected(400, msg) from e
    if len(plain) > limit:
        msg = f"the body is larger than {limit} bytes ({limit // 1024} KB) once decompressed"
        raise Rejected(413, msg)
    if not inflater.eof:
        msg = "the gzip body is truncated"
        raise Rejected(400, msg)
    return plain


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def _answer(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


async def _preflight(request: web.Request) -> web.StreamResponse:
    headers = {
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
        "Access-Control-Max-Age": "86400",
    }
    return web.Response(status=204, headers=headers)


@web.middleware
async def _cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let any origin call the API and read the answer (write keys are public in browsers anyway).

    The origin is echoed, not ``*``, because ``sendBeacon`` sends credentials, and a credentialed request
    may only be answered with its own origin.
    """
    origin = request.headers.get("Origin")
    try:
        response = await handler(request)
    except web.HTTPException as e:
        if origin:
            e.headers.update(_cors_headers(origin))
        raise
    if origin:
        response.headers.update(_cors_headers(origin))
    return response


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "Retry-After",
        "Vary": "Origin",
    }


def collect(settings: Settings, *, host: str, port: int, delivery_timeout: float = 10.0) -> int:
    """``revstream collect``: create the topics, serve until SIGINT or SIGTERM, flush, return 0."""
    keys = parse_write_keys(settings.write_keys)
    if not keys:
        log.warning("no write keys configured (REVSTREAM_WRITE_KEYS): the collector accepts any key")
    ensure_topics(settings)
    asyncio.run(_serve(settings, keys, host=host, port=port, delivery_timeout=delivery_timeout))
    return 0


class RunningCollector:
    """A collector listening on ``host:port`` inside an already running event loop (``revstream collect``,
    or the Faust worker when ``REVSTREAM_WORKER_COLLECTOR`` is set); :meth:`stop` flushes and closes."""

    def __init__(self, runner: web.AppRunner, producer: KafkaProducer, collector: Collector) -> None:
        self.runner = runner
        self.producer = producer
        self.collector = collector

    @classmethod
    async def start(
        cls, settings: Settings, keys: frozenset[str], *, host: str, port: int, delivery_timeout: float
    ) -> RunningCollector:
        topic = settings.topic("events.raw")
        producer = KafkaProducer(bootstrap=settings.kafka_bootstrap, topic=topic, timeout=delivery_timeout)
        collector = Collector(producer=producer, write_keys=keys)
        runner = web.AppRunner(collector.app(), access_log=None, shutdown_timeout=delivery_timeout + 5)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=4096)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            await producer.close()
            reason = os.strerror(e.errno) if e.errno else str(e)
            msg = f"cannot listen on {host}:{port}: {reason}"
            raise ConfigError(msg) from e
        log.info("collector listening", url=f"http://{host}:{port}", topic=topic, write_keys=len(keys))
        return cls(runner, producer, collector)

    async def stop(self) -> None:
        log.info("collector stopping", **self.collector.stats)
        try:
            await self.runner.cleanup()
        finally:
            await self.producer.close()


async def _serve(settings: Settings, keys: frozenset[str], *, host: str, port: int, delivery_timeout: float) -> None:
    running = await RunningCollector.start(settings, keys, host=host, port=port, delivery_timeout=delivery_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop()
