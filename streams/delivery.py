"""Confirmed delivery to Kafka for asyncio code: the collector's producers.

A :class:`RawProducer` takes a request's records and returns only once the broker has acknowledged every
one of them, or raises :class:`DeliveryError` (a :class:`~schemas.errors.RevstreamError`) so the caller can
answer "retry later" instead of losing data:

* :class:`KafkaProducer` wraps confluent-kafka's (librdkafka's) ``Producer``: records are produced from the
  event loop (``produce()`` only enqueues, in C, without I/O), a daemon thread calls ``poll()`` to run the
  delivery callbacks, and the callback of a request's last record resolves that request's future with
  ``loop.call_soon_threadsafe`` -- one cross-thread wake-up per request, not per record. librdkafka batches
  records of concurrent requests into the same produce requests (``linger.ms``), retries, and with
  ``enable.idempotence`` never writes a retried record twice. Its ``message.timeout.ms`` is the delivery
  timeout, so a broker that is down fails the records within ``timeout`` seconds.
* :class:`MemoryProducer` keeps records in a list: the test double and the doctest producer.

confluent-kafka's own ``aio.AIOProducer`` was not used: it adds a buffering layer with its own timeout and a
thread pool in front of the same C producer, and it is newer than the rest of the API we rely on.

>>> import asyncio
>>> producer = MemoryProducer()
>>> asyncio.run(producer.deliver([(b"a1", b'{"type":"page"}')]))
>>> producer.records
[(b'a1', b'{"type":"page"}')]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import structlog
from confluent_kafka import KafkaException, Producer

from schemas.errors import RevstreamError

log = structlog.get_logger(__name__)

Record = tuple[bytes | None, bytes]
"""``(key, value)`` of one Kafka record."""


class DeliveryError(RevstreamError):
    """Records could not be confirmed as stored by Kafka (broker down, timeout, full queue); retry later.

    >>> str(DeliveryError("delivery timed out"))
    'delivery timed out'
    """


class RawProducer(Protocol):
    """Where the collector sends a request's records; ``deliver`` returns once all are stored."""

    async def deliver(self, records: Sequence[Record]) -> None: ...

    async def close(self) -> None: ...


class MemoryProducer:
    """Keeps delivered records in ``records``; fails every delivery with ``error`` when it is set.

    >>> import asyncio
    >>> producer = MemoryProducer(error="broker down")
    >>> asyncio.run(producer.deliver([(None, b"{}")]))
    Traceback (most recent call last):
    ...
    streams.delivery.DeliveryError: broker down
    >>> producer.records
    []
    """

    def __init__(self, *, error: str | None = None) -> None:
        self.error = error
        self.records: list[Record] = []
        self.closed = False

    async def deliver(self, records: Sequence[Record]) -> None:
        if self.error is not None:
            raise DeliveryError(self.error)
        self.records.extend(records)

    async def close(self) -> None:
        self.closed = True


class _Pending:
    """One ``deliver`` call in flight; its counters are touched only by the poll thread."""

    __slots__ = ("error", "future", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: str | None = None

    def delivered(self, err: object, _msg: object) -> None:  # runs in the poll thread
        if err is not None and self.error is None:
            self.error = str(err)
        self.remaining -= 1
        if self.remaining == 0:
            # RuntimeError: the loop closed while the record was in flight, so nobody is waiting.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if self.future.done():
            return
        if self.error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(DeliveryError(f"Kafka did not store the events: {self.error}"))


class KafkaProducer:
    """Produces to ``topic`` on ``bootstrap`` and confirms every delivery within ``timeout`` seconds.

    ``config`` adds or overrides librdkafka settings. ``deliver`` may be awaited from any event loop (each
    call resolves on the loop that awaits it); ``close`` flushes what is left and stops the poll thread.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        timeout: float = 10.0,
        config: dict[str, str | int | float | bool] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self.config = config
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.timeout.ms": int(timeout * 1000),
                "queue.buffering.max.messages": 200_000,
                **(config or {}),
            },
            # librdkafka's own log lines (a broker that went away ...) through logging, not raw on stderr
            logger=logging.getLogger("librdkafka"),
        )
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="revstream-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.1)

    async def deliver(self, records: Sequence[Record]) -> None:
        if not records:
            return
        loop = asyncio.get_running_loop()
        pending = _Pending(loop, len(records))
        deadline = loop.time() + self.timeout
        for key, value in records:
            while True:
                try:
                    self._producer.produce(self.topic, value=value, key=key, on_delivery=pending.delivered)
                    break
                except BufferError:
                    # librdkafka's queue is full: wait for deliveries to drain it rather than fail at once.
                    if loop.time() >= deadline:
                        msg = "the Kafka producer queue stayed full"
                        raise DeliveryError(msg) from None
                    await asyncio.sleep(0.01)
                except KafkaException as e:
                    msg = f"cannot produce to {self.topic}: {e}"
                    raise DeliveryError(msg) from e
        try:
            # librdkafka fails records itself after message.timeout.ms; the margin only guards against a
            # callback that never comes.
            await asyncio.wait_for(pending.future, timeout=max(deadline - loop.time(), 0.0) + 2.0)
        except TimeoutError:
            msg = f"Kafka did not confirm delivery to {self.topic} within {self.timeout:g}s"
            raise DeliveryError(msg) from None

    async def close(self) -> None:
        """Stop the poll thread, then wait (up to ``timeout``) for the records in flight."""
        # One polling thread at a time: flush() serves the remaining callbacks itself.
        self._stopping.set()
        await asyncio.to_thread(self._poller.join)
        remaining = await asyncio.to_thread(self._producer.flush, self.timeout)
        if remaining:
            log.warning("records not delivered at shutdown", topic=self.topic, records=remaining)
