"""Erasure in the warehouse: find every id linked to a subject, delete their rows everywhere, prove it, log it.

Linked ids are the closure over ``(anonymous_id, user_id, person_id)`` in ``events`` (and
``identity_links`` when it exists): erasing a user also erases the browsers they used while logged in.
Every table that has any of those columns is cleared with ``ALTER TABLE ... DELETE``, a mutation that
rewrites the affected parts, so the rows are physically gone when it finishes; ``failed_events`` is
cleared of any raw input that mentions one of the ids. The erasure waits for the mutations and fails with
:class:`ErasureError` if they are not done within ``bound_seconds``. The tables are discovered from
``system.columns``, so a table added later is covered without a change here.

``erasure_log`` gets one row per table with the hashes of the ids (never the ids) and the count removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from schemas.errors import ErasureError
from schemas.privacy import ErasureLogRow, ErasureRequest
from sinks.clickhouse import ClickHouseSink

log = structlog.get_logger(__name__)

ID_COLUMNS = (
    "anonymous_id",
    "user_id",
    "person_id",
    "other_anonymous_id",
    "other_user_id",
    "other_person_id",
    "old_person_id",
    "new_person_id",
)
_MAX_HOPS = 6


@dataclass
class ErasureReport:
    request_id: str
    ids: list[str]
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def linked_ids(sink: ClickHouseSink, subject_id: str) -> list[str]:
    """``subject_id`` and every id that appears on a row with it, transitively (a few hops at most)."""
    tables = _tables_with_ids(sink)
    sources = [t for t in ("events", "identity_links") if t in tables]
    found = {subject_id}
    frontier = {subject_id}
    for _ in range(_MAX_HOPS):
        if not frontier:
            break
        new: set[str] = set()
        for table in sources:
            cols = tables[table]
            where = " OR ".join(f"{c} IN %(ids)s" for c in cols)
            sql = f"SELECT DISTINCT {', '.join(cols)} FROM {table} WHERE {where}"  # noqa: S608 - see _tables_with_ids
            rows = sink.query(sql, {"ids": list(frontier)})
            new.update(v for row in rows.result_rows for v in row if v)
        frontier = new - found
        found |= new
    return sorted(found)


def erase(
    sink: ClickHouseSink,
    request: ErasureRequest,
    *,
    subject: Callable[[str], str],
    bound_seconds: float = 300.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ErasureReport:
    """Remove every row about ``request.subject_id`` and its linked ids; log it. Idempotent."""
    ids = linked_ids(sink, request.subject_id)
    report = ErasureReport(request_id=request.request_id, ids=ids)
    deadline = time.monotonic() + bound_seconds
    for table, cols in _tables_with_ids(sink).items():
        where = " OR ".join(f"{c} IN %(ids)s" for c in cols)
        report.removed[table] = _delete(sink, table, where, {"ids": ids})
    report.removed["failed_events"] = _delete(sink, "failed_events", "multiSearchAny(raw, %(ids)s)", {"ids": ids})
    _wait_for_mutations(sink, list(report.removed), deadline, bound_seconds)
    subjects = sorted(subject(i) for i in ids)
    now = clock()
    rows: list[object] = [
        ErasureLogRow(
            request_id=request.request_id,
            subject=subject(request.subject_id),
            subjects=subjects,
            table=table,
            rows_removed=count,
            requested_at=request.requested_at,
            erased_at=now,
        )
        for table, count in report.removed.items()
    ]
    sink.insert("erasure_log", rows, token=f"erasure:{request.request_id}")
    log.info("erased", request_id=request.request_id, ids=len(ids), rows=report.total)
    return report


def suppressed_subjects(sink: ClickHouseSink) -> set[str]:
    """Hashes of every id ever erased: ingest refuses their events, so a replay cannot bring them back."""
    rows = sink.query("SELECT DISTINCT arrayJoin(subjects) FROM erasure_log").result_rows
    return {row[0] for row in rows}


def _tables_with_ids(sink: ClickHouseSink) -> dict[str, list[str]]:
    rows = sink.query(
        "SELECT table, groupArray(name) FROM system.columns WHERE database = currentDatabase() AND name IN %(c)s "
        "AND table IN (SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%%MergeTree')"
        " GROUP BY table ORDER BY table",
        {"c": list(ID_COLUMNS)},
    ).result_rows
    return {table: sorted(cols) for table, cols in rows if not table.startswith(".")}


def _delete(sink: ClickHouseSink, table: str, where: str, parameters: dict[str, object]) -> int:
    # Table and column names come from system.columns, never from a request; the ids are bound parameters.
    count = int(sink.query(f"SELECT count() FROM {table} WHERE {where}", parameters).result_rows[0][0])  # noqa: S608
    if count:
        sink.command(f"ALTER TABLE {table} DELETE WHERE {where}", parameters)
    return count


def _wait_for_mutations(sink: ClickHouseSink, tables: Iterable[str], deadline: float, bound: float) -> None:
    names = list(tables)
    while True:
        pending = sink.query(
            "SELECT table, count(), any(latest_fail_reason) FROM system.mutations"
            " WHERE database = currentDatabase() AND table IN %(t)s AND NOT is_done GROUP BY table",
            {"t": names},
        ).result_rows
        if not pending:
            return
        failed = {table: reason for table, _, reason in pending if reason}
        if failed:
            msg = f"erasure failed in ClickHouse: {failed}"
            raise ErasureError(msg)
        if time.monotonic() > deadline:
            msg = f"erasure not physically complete within {bound:g} s: mutations pending on {dict(pending)}"
            raise ErasureError(msg)
        time.sleep(0.2)
