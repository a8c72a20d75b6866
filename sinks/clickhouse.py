"""The ClickHouse writer: one class for a server (``http://host:8123/db``) and embedded chDB (``chdb:///path``).

Both go through clickhouse-connect, so the same insert code runs against either. Inserts are synchronous,
never ``async_insert``; each carries an ``insert_deduplication_token`` that the caller derives from the
input's coordinates (``topic:partition:first-last`` or ``file:first-last``), so a retried or replayed batch
is stored once. Connection trouble is retried here with exponential backoff before :class:`SinkError`.

chDB allows one open database path per process: close a sink before opening another path.

>>> import tempfile
>>> with ClickHouseSink(dsn=f"chdb://{tempfile.mkdtemp()}") as sink:
...     sink.migrate() == [m.version for m in MIGRATIONS]
...     sink.query("SELECT count() FROM events").result_rows
True
[(0,)]
"""

from __future__ import annotations

import fcntl
import re
import threading
import time
from collections.abc import Callable, Container, Mapping, Sequence
from contextlib import closing
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import clickhouse_connect
import structlog
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from schemas.alerts import ALERT_COLUMNS
from schemas.attribution import ATTRIBUTION_CREDIT_COLUMNS, BUDGET_RECOMMENDATION_COLUMNS
from schemas.errors import ConfigError, SinkError
from schemas.identity import IDENTITY_LINK_COLUMNS, PERSON_CHANGE_COLUMNS, PROBABLE_DUPLICATE_COLUMNS
from schemas.privacy import CONSENT_REFUSAL_COLUMNS, ERASURE_LOG_COLUMNS
from schemas.records import EVENT_COLUMNS, FAILED_COLUMNS
from schemas.scores import METRIC_COLUMNS, SCORE_COLUMNS, SESSION_COLUMNS
from schemas.spend import SPEND_COLUMNS
from schemas.value import CUSTOMER_VALUE_COLUMNS, HIGH_VALUE_ALERT_COLUMNS
from sinks.migrations import MIGRATIONS, MIGRATIONS_TABLE, RETENTION

log = structlog.get_logger(__name__)

# Check-then-insert must be atomic per process: when Faust cancels an agent (a rebalance), the insert its
# thread was running still completes, possibly after the restarted agent's check; the lock orders the two.
_CHECKED_INSERTS = threading.Lock()
# A worker's agents each open a sink at start-up; one migrates and the others then find nothing to do.
_MIGRATING = threading.Lock()

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": EVENT_COLUMNS,
    "failed_events": FAILED_COLUMNS,
    "customer_value": CUSTOMER_VALUE_COLUMNS,
    "high_value_alerts": HIGH_VALUE_ALERT_COLUMNS,
    "erasure_log": ERASURE_LOG_COLUMNS,
    "consent_refusals": CONSENT_REFUSAL_COLUMNS,
    "identity_links": IDENTITY_LINK_COLUMNS,
    "person_changes": PERSON_CHANGE_COLUMNS,
    "probable_duplicates": PROBABLE_DUPLICATE_COLUMNS,
    "attribution_credits": ATTRIBUTION_CREDIT_COLUMNS,
    "scores": SCORE_COLUMNS,
    "sessions": SESSION_COLUMNS,
    "model_metrics": METRIC_COLUMNS,
    "alerts": ALERT_COLUMNS,
    "marketing_spend": SPEND_COLUMNS,
    "budget_recommendations": BUDGET_RECOMMENDATION_COLUMNS,
}
_SCHEMES = ("chdb", "http", "https", "clickhouse", "clickhouses")
_DATABASE_NAME = re.compile(r"[A-Za-z0-9_]+")
# ClickHouse error codes that mean "temporarily overloaded, try the same insert again later".
_OVERLOAD_CODES = ("Code: 202.", "Code: 252.", "Code: 241.", "Code: 159.")


def connect(dsn: str) -> Client:
    """Open a clickhouse-connect client for ``dsn``, creating its database if missing.

    A bad DSN is a one-line :class:`ConfigError`:

    >>> connect("postgres://localhost/x")
    Traceback (most recent call last):
    ...
    schemas.errors.ConfigError: unsupported ClickHouse DSN 'postgres://localhost/x': use chdb:///path or http://host:8123/db
    """
    parts = urlsplit(dsn)
    if parts.scheme not in _SCHEMES:
        msg = f"unsupported ClickHouse DSN {dsn!r}: use chdb:///path or http://host:8123/db"
        raise ConfigError(msg)
    query = parse_qs(parts.query)
    if parts.scheme == "chdb":
        path = parts.path
        if path and path != ":memory:":
            try:
                Path(path).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                msg = f"cannot create the embedded ClickHouse directory {path!r}: {e.strerror}"
                raise ConfigError(msg) from e
        database = query.pop("database", [""])[0]
        server = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    else:
        database = parts.path.strip("/")
        server = urlunsplit(parts._replace(path="/"))
    if database and not _DATABASE_NAME.fullmatch(database):
        msg = f"invalid database name {database!r} in DSN: use letters, digits and _"
        raise ConfigError(msg)
    try:
        if database:
            with closing(_client(server, parts.scheme)) as bootstrap:
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        return _client(dsn, parts.scheme)
    except ClickHouseError as e:
        if parts.scheme == "chdb":
            _ensure_unlocked(parts.path)
        msg = f"cannot connect to ClickHouse at {dsn!r}: {_first_line(e)}"
        raise ConfigError(msg) from e


def _ensure_unlocked(path: str) -> None:
    """Explain a failed open: another process holds the embedded warehouse (chDB locks ``PATH/status``).

    Checked only after an open failed, because this process's own open engine holds the same lock.
    """
    status = Path(path) / "status"
    if not status.exists():
        return
    with status.open("rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = (
                f"the embedded warehouse {path} is open in another process (a running worker or demo?); "
                "stop it first, or point both at a ClickHouse server"
            )
            raise ConfigError(msg) from None
        fcntl.flock(f, fcntl.LOCK_UN)


def _client(dsn: str, scheme: str) -> Client:
    if scheme == "chdb":
        return clickhouse_connect.get_client(dsn=dsn)
    # No server session: a session serialises queries and breaks inserts from several threads.
    return clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False)


class ClickHouseSink:
    """Buffered, idempotent writer of revstream's records to their tables.

    ``write(table, rows)`` buffers; ``flush(token=...)`` inserts every buffered table with the token
    ``{token}:{table}`` and empties the buffers, also when an insert fails.
    """

    def __init__(
        self,
        *,
        dsn: str | None = None,
        client: Client | None = None,
        retries: int = 5,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if client is None:
            if dsn is None:
                msg = "ClickHouseSink needs a dsn or a client"
                raise ConfigError(msg)
            client = connect(dsn)
        self.dsn = dsn
        self.retries = retries
        self.backoff = backoff
        self._client = client
        self._sleep = sleep
        self._buffers: dict[str, list[object]] = {}
        self._columns = TABLE_COLUMNS
        self._getters = {table: attrgetter(*cols) for table, cols in self._columns.items()}
        # Column types by table, read once: without them clickhouse-connect runs DESCRIBE TABLE before every
        # insert (a third of a small insert's time on chDB).
        self._types: dict[str, list[str]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def client(self) -> Client:
        return self._client

    def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded; returns the versions applied now."""
        with _MIGRATING:
            return self._migrate()

    def _migrate(self) -> list[int]:
        self._types.clear()
        self._client.command(MIGRATIONS_TABLE)
        done = {row[0] for row in self._client.query("SELECT version FROM schema_migrations").result_rows}
        applied = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            for statement in migration.statements:
                self._client.command(statement)
            self._client.insert(
                "schema_migrations", [[migration.version, migration.name]], column_names=["version", "name"]
            )
            applied.append(migration.version)
            log.info("migration applied", version=migration.version, name=migration.name)
        return applied

    def apply_retention(self, days: Mapping[str, int]) -> None:
        """Set each table's TTL from ``days`` (setting name -> days); rows past it go at the next merge.

        ``materialize_ttl_after_modify = 0``: a changed TTL applies as parts merge, instead of rewriting
        every part at start-up.
        """
        for table, (column, setting) in RETENTION.items():
            when = f"toDateTime({column})" if column.endswith("_at") else column
            self._client.command(
                f"ALTER TABLE {table} MODIFY TTL {when} + INTERVAL {int(days[setting])} DAY",
                settings={"materialize_ttl_after_modify": 0},
            )

    def write(self, table: str, rows: Sequence[object]) -> None:
        if table not in self._columns:
            msg = f"unknown table {table!r}"
            raise SinkError(msg)
        self._buffers.setdefault(table, []).extend(rows)

    def flush(self, *, token: str) -> int:
        """Insert everything buffered; returns the number of rows written. The buffers are empty afterwards,
        also when an insert fails."""
        return self.insert_all(self.take(), token=token)

    def take(self) -> dict[str, list[object]]:
        """The buffered rows by table, leaving the buffers empty (to insert them later with :meth:`insert_all`)."""
        buffers, self._buffers = self._buffers, {}
        return buffers

    def insert_all(self, buffers: Mapping[str, Sequence[object]], *, token: str) -> int:
        """One insert per table of ``buffers``, each with the token ``{token}:{table}``; returns the rows written."""
        written = 0
        for table, rows in buffers.items():
            if rows:
                self.insert(table, rows, token=f"{token}:{table}")
                written += len(rows)
        return written

    def insert(self, table: str, rows: Sequence[object], *, token: str) -> None:
        """One insert with retries; the same ``token`` makes a retried insert a no-op on the server."""
        getter = self._getters[table]
        data = [getter(row) for row in rows]
        try:
            self._insert_retrying(table, data, token=token)
        finally:
            # clickhouse-connect's insert context refers to itself (a bound method in an attribute), so it
            # is freed only by the cyclic collector, and with it the rows it holds: emptied here, they are
            # freed now, and the collector has ~27k fewer objects to scan per 20,000 embedded inputs.
            data.clear()

    def _insert_retrying(self, table: str, data: list[tuple[Any, ...]], *, token: str) -> None:
        settings: dict[str, Any] = {"insert_deduplication_token": token, "async_insert": 0}
        attempt = 0
        while True:
            try:
                types = self._types.get(table) or self._column_types(table)
                self._client.insert(
                    table, data, column_names=self._columns[table], column_type_names=types, settings=settings
                )
            except (OperationalError, DatabaseError) as e:
                overloaded = isinstance(e, OperationalError) or any(c in str(e) for c in _OVERLOAD_CODES)
                if not overloaded:
                    msg = f"insert into {table} failed: {_first_line(e)}"
                    raise SinkError(msg) from e
                if attempt >= self.retries:
                    msg = f"insert into {table} failed after {attempt + 1} attempts: {_first_line(e)}"
                    raise SinkError(msg, retry_after=self.backoff * 2**attempt) from e
                delay = self.backoff * 2**attempt
                log.warning("insert retry", table=table, attempt=attempt + 1, delay=delay, error=_first_line(e))
                self._sleep(delay)
                attempt += 1
            else:
                return

    def _column_types(self, table: str) -> list[str]:
        described = {r[0]: r[1] for r in self._client.query(f"DESCRIBE TABLE {table}").result_rows}
        missing = [c for c in self._columns[table] if c not in described]
        if missing:
            msg = f"table {table} has no column {missing[0]!r}: run the migrations (revstream migrate)"
            raise SinkError(msg)
        self._types[table] = types = [described[c] for c in self._columns[table]]
        return types

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        try:
            return self._client.query(sql, parameters=parameters)
        except ClickHouseError as e:
            msg = f"query failed: {_first_line(e)}"
            raise SinkError(msg) from e

    def stored_message_ids(self, table: str, rows: Sequence[Any]) -> dict[str, str]:
        """Which of ``rows`` (with ``message_id`` and ``event_at``) are already in ``table``, with the
        ``source`` of the input each was stored from.

        Filtering on the day first lets ClickHouse skip the parts of other days (the tables are ordered
        by day, then message id).
        """
        if not rows:
            return {}
        days = sorted({r.event_at.date() for r in rows})
        ids = [r.message_id for r in rows]
        result = self.query(
            f"SELECT message_id, any(source) FROM {table}"  # noqa: S608
            " WHERE toDate(event_at) IN %(days)s AND message_id IN %(ids)s GROUP BY message_id",
            {"days": days, "ids": ids},
        )
        return {r[0]: r[1] for r in result.result_rows}

    def insert_absent(
        self, table: str, rows: Sequence[Any], *, key: str, token: str, check: Sequence[Any] | None = None
    ) -> list[Any]:
        """Insert the ``rows`` whose ``key`` (``message_id`` or ``source``) ``table`` does not hold yet, each key
        once (the last row with it).

        Only ``check`` (default: all ``rows``) is looked up; the rest is inserted as is. Check and insert
        happen under one process-wide lock. Returns the rows inserted.
        """
        with _CHECKED_INSERTS:
            candidates = rows if check is None else check
            stored: Container[str]
            if not candidates:
                stored = ()
            elif key == "message_id":
                stored = self.stored_message_ids(table, candidates)
            else:
                values = [getattr(r, key) for r in candidates]
                result = self.query(f"SELECT {key} FROM {table} WHERE {key} IN %(v)s", {"v": values})  # noqa: S608
                stored = {r[0] for r in result.result_rows}
            fresh = list({getattr(r, key): r for r in rows if getattr(r, key) not in stored}.values())
            if fresh:
                self.insert(table, fresh, token=token)
            return fresh

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=parameters)
        except ClickHouseError as e:
            msg = f"command failed: {_first_line(e)}"
            raise SinkError(msg) from e

    def close(self) -> None:
        self._client.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:500] if text else type(error).__name__
