"""The collector end to end: real senders -> a real ``revstream collect`` process -> a real broker -> a real
``revstream worker`` process -> ClickHouse (chDB).

Senders: the official Segment Node SDK (``@segment/analytics-node`` from npm, installed from
``tests/js/package-lock.json`` with ``npm ci``), our tracker in headless Chromium (Debian's
``/usr/bin/chromium``, driven over the DevTools protocol with aiohttp's websocket client), and bad requests
that must be refused without anything reaching Kafka. chDB holds its data path for one process at a time, so
each test stops its worker before it reads the warehouse.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from confluent_kafka import Consumer, TopicPartition

from sinks import ClickHouseSink
from streams.collector import Collector
from streams.delivery import MemoryProducer
from streams.kafka import ensure_topics
from streams.settings import Settings
from tests.conftest import ROOT
from tests.streams.kafka_harness import Deployment, wait_drained, worker

pytestmark = pytest.mark.integration

WRITE_KEY = "e2e-write-key"
JS = ROOT / "tests" / "js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Stack:
    deployment: Deployment
    url: str
    log: Path

    def health(self) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", int(self.url.rsplit(":", 1)[1])), timeout=5) as conn:
            conn.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            raw = b"".join(iter(lambda: conn.recv(65536), b""))
        result: dict[str, Any] = orjson.loads(raw.split(b"\r\n\r\n", 1)[1])
        return result

    def raw_messages(self) -> int:
        """Records on the deployment's ``events.raw`` topic (high watermarks; nothing is ever deleted)."""
        consumer = Consumer({"bootstrap.servers": self.deployment.bootstrap, "group.id": f"{self.deployment.prefix}-n"})
        try:
            topic = f"{self.deployment.prefix}.events.raw"
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(self.deployment.partitions)
            )
        finally:
            consumer.close()

    def drain(self) -> None:
        """Run a worker until every topic is consumed, then stop it so the warehouse can be read."""
        log = self.log.parent / "worker.log"
        with worker(self.deployment, log) as proc:
            wait_drained(self.deployment, proc, log, timeout=90)

    def query(self, sql: str, **params: object) -> list[tuple[Any, ...]]:
        with ClickHouseSink(dsn=self.deployment.dsn) as sink:
            sink.migrate()
            return list(sink.query(sql, params).result_rows)


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """A fresh deployment and a real ``revstream collect`` process on a free port."""
    deployment = Deployment.new(kafka_bootstrap, tmp_path)
    ensure_topics(
        Settings(brokers=deployment.bootstrap, topic_prefix=deployment.prefix, partitions=deployment.partitions)
    )
    port = free_port()
    log = tmp_path / "collector.log"
    env = {**deployment.env, "REVSTREAM_WRITE_KEYS": f"other-key,{WRITE_KEY}", "REVSTREAM_LOG_LEVEL": "INFO"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "collect", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    result = Stack(deployment, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"collector exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                result.health()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"collector did not answer within 60s:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """``npm ci`` in tests/js (the SDK from the lock file) unless that install is already in place."""
    installed = JS / "node_modules" / ".package-lock.json"
    lock = JS / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS, check=True)
    return JS / "node_modules"


def test_official_segment_node_sdk_events_reach_clickhouse(stack: Stack, node_modules: Path) -> None:
    user = f"sdk-{uuid.uuid4().hex[:10]}"
    sent = subprocess.run(
        ["node", str(JS / "send_with_sdk.mjs"), stack.url, WRITE_KEY, user],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert orjson.loads(sent.stdout.strip().splitlines()[-1]) == {"sent": 6, "failed": []}
    assert stack.raw_messages() == 6

    stack.drain()
    rows = stack.query(
        "SELECT type, event, user_id, anonymous_id, revenue, order_id, received_at > sent_at - INTERVAL 1 MINUTE"
        " FROM events WHERE user_id = {user:String} OR anonymous_id = {device:String} ORDER BY type",
        user=user,
        device=f"{user}-device",
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("alias", ""),
        ("group", ""),
        ("identify", ""),
        ("page", "Cart"),
        ("screen", "Home"),
        ("track", "Order Completed"),
    ]
    order = rows[-1]
    assert (order[2], order[4], order[5]) == (user, 42.5, f"{user}-order")
    assert all(r[6] for r in rows)
    assert stack.query("SELECT count() FROM failed_events") == [(0,)]


TEST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title>
<script async src="{collector}/tracker.js" data-write-key="{key}"></script></head>
<body style="margin:0">
<div class="promo-banner" style="height:80px">Free shipping over $50</div>
<button class="apply-coupon" style="width:200px;height:60px">Apply coupon</button>
<div style="height:4000px"></div><p>end</p>
</body></html>"""


class DevTools:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def read(self) -> None:
        async for message in self.ws:
            data = orjson.loads(message.data)
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                if "error" in data:
                    future.set_exception(AssertionError(f"DevTools error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))

    async def send(self, method: str, **params: object) -> dict[str, Any]:
        call_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        await self.ws.send_str(orjson.dumps({"id": call_id, "method": method, "params": params}).decode())
        return await asyncio.wait_for(future, 30)

    async def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise
        )
        if "exceptionDetails" in result:
            msg = f"{expression!r} raised {result['exceptionDetails']}"
            raise AssertionError(msg)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                msg = f"timed out waiting for {expression}"
                raise AssertionError(msg)
            await asyncio.sleep(0.1)

    async def click(self, x: float, y: float, count: int = 1) -> None:
        await self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=count)


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[DevTools]:
    """Headless Debian Chromium with a fresh profile; yields a DevTools client on its blank page."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)"
    log = (profile.parent / "chromium.log").open("ab")
    proc = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, f"chromium exited with {proc.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                devtools = DevTools(ws)
                reader = asyncio.create_task(devtools.read())
                try:
                    yield devtools
                finally:
                    reader.cancel()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


async def browse(stack: Stack, profile: Path) -> str:
    """Open a shop page on another origin, scroll, rage-click, dead-click, set consent, leave; returns the
    page's anonymousId."""
    app = web.Application()
    html = TEST_PAGE.format(collector=stack.url, key=WRITE_KEY)

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app.router.add_get("/shop", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with chromium(profile) as tab:
            await tab.send("Page.enable")
            # localhost and 127.0.0.1 are different origins: the tracker works cross-origin (CORS).
            await tab.send("Page.navigate", url=f"http://localhost:{port}/shop")
            anonymous_id: str = await tab.wait_for("window.revstream && revstream.user().anonymousId")
            box = await tab.evaluate(
                "(() => { const r = document.querySelector('button.apply-coupon').getBoundingClientRect();"
                " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
            )
            for count in range(1, 5):  # four clicks within ~0.4 s on one spot: a rage click
                await tab.click(box[0], box[1], count)
                await asyncio.sleep(0.08)
            await tab.click(40, 40)  # the promo banner: not interactive, changes nothing -> a dead click
            await tab.evaluate("revstream.consent({analytics: true, marketing: false})")
            for y in (800, 1600, 2600, 5000):
                await tab.evaluate(f"window.scrollTo(0, {y})")
                await asyncio.sleep(0.25)
            await asyncio.sleep(1.3)  # the rage burst and the dead-click watch end after 1 s
            assert await tab.evaluate("revstream.flush()", await_promise=True) is True
            before = stack.health()["events"]
            await tab.send("Page.navigate", url="about:blank")  # pagehide: engagement goes by sendBeacon
            deadline = time.monotonic() + 15
            while stack.health()["events"] == before:
                assert time.monotonic() < deadline, "the page-hide beacon did not arrive"
                await asyncio.sleep(0.2)
            return anonymous_id
    finally:
        await runner.cleanup()


def test_tracker_in_headless_chromium_reaches_clickhouse(stack: Stack, tmp_path: Path) -> None:
    anonymous_id = asyncio.run(asyncio.wait_for(browse(stack, tmp_path / "profile"), 60))
    stack.drain()
    rows = stack.query(
        "SELECT type, event, properties, consent, page_path, user_agent FROM events"
        " WHERE anonymous_id = {a:String} ORDER BY event_at, message_id",
        a=anonymous_id,
    )
    events = [(r[0], r[1]) for r in rows]
    by_event: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_event.setdefault(row[1], []).append(orjson.loads(row[2]))
    assert events[0] == ("page", "")
    assert rows[0][4] == "/shop"
    assert "HeadlessChrome" in rows[0][5] or "Chrome" in rows[0][5]
    assert sorted(p["depth"] for p in by_event["Scroll Depth Reached"]) == [25, 50, 75, 100]
    assert by_event["Rage Click"] == [{"selector": "button.apply-coupon", "clicks": 4}]
    assert by_event["Dead Click"] == [{"selector": "div.promo-banner"}]
    assert len(by_event["Element Clicked"]) == 4
    [consent_row] = [r for r in rows if r[1] == "Segment Consent Preference Updated"]
    # purposes mapped from the categories; personalisation was not asked, and consent is optional in tests
    assert consent_row[3] == {"analytics": True, "marketing": False, "personalisation": True}
    assert by_event["Page Engagement"][0]["engagement_time_ms"] > 0
    later = [r for r in rows if r[1] == "Scroll Depth Reached"]
    assert all(r[3] == consent_row[3] for r in later)
    assert stack.query("SELECT count() FROM failed_events") == [(0,)]


async def bad_requests(url: str) -> list[tuple[str, int]]:
    good = {"type": "track", "event": "Marker", "anonymousId": "marker-device", "messageId": "marker-1"}
    basic = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    wrong = "Basic " + base64.b64encode(b"stolen:").decode()
    json_type = {"Content-Type": "application/json"}
    auth = {**json_type, "Authorization": basic}
    cases: list[tuple[str, str, bytes, dict[str, str]]] = [
        ("wrong key", "/v1/track", orjson.dumps(good), {**json_type, "Authorization": wrong}),
        ("wrong body key", "/v1/batch", orjson.dumps({"batch": [good], "writeKey": "stolen"}), json_type),
        ("no key", "/v1/track", orjson.dumps(good), json_type),
        ("bad JSON", "/v1/batch", b'{"batch": [', auth),
        ("oversize call", "/v1/track", orjson.dumps({**good, "properties": {"x": "y" * 40_000}}), auth),
        ("oversize batch", "/v1/batch", orjson.dumps({"batch": [good] * 6000}), auth),
        ("gzip bomb", "/v1/batch", gzip.compress(b" " * 50_000_000), {**auth, "Content-Encoding": "gzip"}),
        ("wrong content type", "/v1/track", orjson.dumps(good), {**auth, "Content-Type": "text/html"}),
        ("marker", "/v1/track", orjson.dumps(good), auth),
    ]
    out = []
    async with aiohttp.ClientSession() as http:
        for name, path, body, headers in cases:
            async with http.post(url + path, data=body, headers=headers) as response:
                out.append((name, response.status))
    return out


def test_bad_requests_get_their_status_and_nothing_reaches_kafka(stack: Stack) -> None:
    answers = asyncio.run(bad_requests(stack.url))
    assert answers == [
        ("wrong key", 401),
        ("wrong body key", 401),
        ("no key", 401),
        ("bad JSON", 400),
        ("oversize call", 413),
        ("oversize batch", 413),
        ("gzip bomb", 413),
        ("wrong content type", 415),
        ("marker", 200),
    ]
    assert stack.raw_messages() == 1
    stack.drain()
    assert stack.query("SELECT event, anonymous_id FROM events") == [("Marker", "marker-device")]
    assert stack.query("SELECT count() FROM failed_events") == [(0,)]


BEHAVIOUR_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Checkout</title>
<script async src="{collector}/tracker.js" data-write-key="{key}"></script></head>
<body style="margin:0;font:16px sans-serif">
<p class="copy" style="width:600px">A long paragraph of shipping terms that a careful reader selects to copy.</p>
<input class="qty" type="number" value="1" style="width:200px;height:40px">
<form name="checkout" onsubmit="return false"><input name="email"><input name="zip">
  <button type="submit">Pay</button></form>
<button class="boom" onclick="setTimeout(function () {{ null.price; }})">Boom</button>
</body></html>"""


async def behaviours(profile: Path) -> list[dict[str, Any]]:
    """Drive the tracker in Chromium against an in-process collector; returns the events it received."""
    producer = MemoryProducer()
    collector = TestServer(Collector(producer=producer, write_keys=[WRITE_KEY]).app(), host="127.0.0.1")
    await collector.start_server()
    app = web.Application()
    html = BEHAVIOUR_PAGE.format(collector=str(collector.make_url("")).rstrip("/"), key=WRITE_KEY)

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app.router.add_get("/checkout", page)
    site = TestServer(app, host="127.0.0.1")
    await site.start_server()
    try:
        async with chromium(profile) as tab:
            await tab.send("Page.enable")
            await tab.send("Page.navigate", url=f"http://localhost:{site.port}/checkout")
            await tab.wait_for("window.revstream && revstream.user().anonymousId")

            async def centre(selector: str) -> tuple[float, float]:
                x, y = await tab.evaluate(
                    f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
                    " return [r.x + 20, r.y + r.height / 2]; })()"
                )
                return x, y

            x, y = await centre("p.copy")
            for count in (1, 2, 3):  # a triple click selects the paragraph: reading, not rage
                await tab.click(x, y, count)
                await asyncio.sleep(0.05)
            assert await tab.evaluate("String(getSelection()).length > 20")
            x, y = await centre("input.qty")
            for _ in range(4):  # stepping a number input is not rage either
                await tab.click(x + 170, y - 6)
                await asyncio.sleep(0.05)
            x, y = await centre("form input[name=email]")
            await tab.click(x, y)
            await tab.send("Input.insertText", text="someone@example.com")
            x, y = await centre("button.boom")
            await tab.click(x, y)
            await asyncio.sleep(1.3)
            await tab.evaluate("revstream.identify('user-7', {plan: 'pro'})")
            await tab.evaluate("history.pushState({}, '', '/thanks')")  # an SPA navigation: leaves the form
            assert await tab.evaluate("revstream.flush()", await_promise=True) is True
    finally:
        await site.close()
        await collector.close()
    return [orjson.loads(value) for _, value in producer.records]


def test_tracker_behaviours_in_headless_chromium(tmp_path: Path) -> None:
    events = asyncio.run(asyncio.wait_for(behaviours(tmp_path / "profile"), 60))
    names = [e.get("event", e["type"]) for e in events]
    assert "Rage Click" not in names
    assert "Dead Click" not in names
    [error] = [e["properties"] for e in events if e.get("event") == "JS Error"]
    assert error["message"].startswith("TypeError: Cannot read properties of null")
    assert error["source"] == "/checkout"
    [abandoned] = [e["properties"] for e in events if e.get("event") == "Form Abandoned"]
    assert abandoned["form"] == "checkout"
    assert abandoned["fields_touched"] == 1
    assert abandoned["last_field"] == "email"
    assert "someone@example.com" not in orjson.dumps(events).decode()
    pages = [e for e in events if e["type"] == "page"]
    assert [p["context"]["page"]["path"] for p in pages] == ["/checkout", "/thanks"]
    assert pages[1]["userId"] == "user-7"
    assert pages[1]["properties"]["referrer"].endswith("/checkout")
    assert {e["anonymousId"] for e in events} == {events[0]["anonymousId"]}
    assert all(e["receivedAt"] and e["sentAt"] and e["messageId"] for e in events)
