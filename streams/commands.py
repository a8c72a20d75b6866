"""What the CLI commands do, apart from argument parsing (:mod:`streams.cli`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from schemas.errors import ConfigError
from sinks.clickhouse import ClickHouseSink
from streams.embedded import EmbeddedRunner, RunSummary, ndjson_lines
from streams.logs import configure
from streams.pipeline import Pipeline
from streams.settings import Settings

err = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr; yields ``advance(n)``."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def open_sink(settings: Settings) -> ClickHouseSink:
    """The warehouse, migrated and with the retention TTLs of ``settings``."""
    sink = ClickHouseSink(dsn=settings.clickhouse_dsn)
    sink.migrate()
    sink.apply_retention(settings.model_dump(include={"retention_days", "failed_retention_days"}))
    return sink


def summary_line(summary: RunSummary) -> str:
    """``N events: V valid, F failed (by stage), R refused (by purpose)``."""
    line = f"{summary.inputs} events: {summary.valid} valid, {summary.failed_total} failed"
    if summary.failed:
        line += f" ({', '.join(f'{k} {v}' for k, v in sorted(summary.failed.items()))})"
    if summary.refused:
        refused = sum(summary.refused.values())
        line += f", {refused} refused ({', '.join(f'{k} {v}' for k, v in sorted(summary.refused.items()))})"
    return line


def run_embedded(settings: Settings, inputs: Iterator[tuple[str, bytes]], *, total: int | None) -> RunSummary:
    with open_sink(settings) as sink, progress_bar("events", total) as advance:
        runner = EmbeddedRunner(pipeline=Pipeline(settings), sink=sink, batch_size=settings.batch_size)
        return runner.run(inputs, progress=advance)


def replay(settings: Settings, file: str) -> int:
    if file == "-":
        summary = run_embedded(settings, ndjson_lines(sys.stdin.buffer, "stdin"), total=None)
    else:
        path = Path(file)
        with path.open("rb") as stream:
            total = sum(1 for _ in stream)
            stream.seek(0)
            summary = run_embedded(settings, ndjson_lines(stream, path.name), total=total)
    print(summary_line(summary))
    return 0


def migrate(settings: Settings) -> int:
    with ClickHouseSink(dsn=settings.clickhouse_dsn) as sink:
        applied = sink.migrate()
    print(f"applied migrations: {applied}" if applied else "warehouse is up to date")
    return 0


def sql(settings: Settings, query: str, *, fmt: str) -> int:
    with ClickHouseSink(dsn=settings.clickhouse_dsn) as sink:
        sink.migrate()
        result = sink.query(query)
    names, rows = list(result.column_names), result.result_rows
    if fmt == "json":
        for row in rows:
            sys.stdout.write(orjson.dumps(dict(zip(names, row, strict=True)), default=str).decode() + "\n")
    elif fmt == "tsv":
        sys.stdout.write("\t".join(names) + "\n")
        for row in rows:
            sys.stdout.write("\t".join(str(v) for v in row) + "\n")
    else:
        table = Table(*names)
        for row in rows:
            table.add_row(*(str(v) for v in row))
        Console().print(table)
    return 0


def simulate(
    settings: Settings,
    *,
    users: int,
    days: int,
    seed: int,
    malformed_rate: float,
    out: Path | None,
    truth: Path,
    spend: Path,
) -> int:
    from models.simulator import SimulationConfig
    from models.simulator import simulate as run_simulation
    from streams.kafka import ensure_topics, produce

    config = SimulationConfig(users=users, days=days, seed=seed, malformed_rate=malformed_rate)
    with progress_bar("planning people", users) as advance:
        sim = run_simulation(config, progress=advance)
    with progress_bar("writing events", None) as advance:
        lines = sim.collected_events(progress=advance)
        if out is None:
            ensure_topics(settings)
            count = produce(settings, lines)
            where = settings.topic("events.raw")
        else:
            with out.open("wb") as f:
                count = 0
                for line in lines:
                    f.write(line + b"\n")
                    count += 1
            where = str(out)
    truth.write_bytes(sim.truth_json())
    spend.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in sim.spend()))
    print(f"{count} events -> {where}; truth -> {truth}; spend -> {spend}")
    return 0


def demo(settings: Settings, *, users: int, days: int, seed: int, malformed_rate: float) -> int:
    from models.simulator import SimulationConfig
    from models.simulator import simulate as run_simulation

    config = SimulationConfig(users=users, days=days, seed=seed, malformed_rate=malformed_rate)
    err.print(f"simulating {users} people over {days} days (seed {seed}) ...")
    sim = run_simulation(config)
    name = f"demo-seed{seed}"
    inputs = ((f"{name}:{n}", line) for n, line in enumerate(sim.collected_events(), start=1))
    summary = run_embedded(settings, inputs, total=None)
    from schemas.spend import MarketingSpend, SpendRow

    spend: list[object] = [
        SpendRow.of(MarketingSpend.model_validate(r), source=f"{name}-spend:{n}") for n, r in enumerate(sim.spend(), 1)
    ]
    with ClickHouseSink(dsn=settings.clickhouse_dsn) as sink:
        sink.insert("marketing_spend", spend, token=f"{name}-spend")
        print_summary(sink, summary, prefix=f"{name}:", settings=settings)
    print(f'warehouse: {settings.clickhouse_dsn}  (query it: revstream sql "SELECT ...")')
    return 0


def print_summary(sink: ClickHouseSink, summary: RunSummary, *, prefix: str, settings: Settings) -> None:
    """The run in a few tables; revenue in ``value_currency`` (orders in a currency without a rate are left out
    and counted)."""
    rates = {settings.value_currency: 1.0, **settings.fx_rate_map}
    where = {"prefix": prefix, "currencies": list(rates), "rates": list(rates.values())}
    # An order's revenue in the reporting currency; 0 and flagged when its currency has no rate.
    rate = "transform(currency, {currencies:Array(String)}, {rates:Array(Float64)}, 0.)"
    order = "event = 'Order Completed'"
    out = Console()
    overview = sink.query(
        f"SELECT count(), uniqExact(session_id), uniqExact(person_id), countIf({order}),"  # noqa: S608 - constants
        f" ifNull(sumIf(revenue / {rate}, {order} AND {rate} > 0), 0), countIf({order} AND {rate} = 0)"
        " FROM events WHERE startsWith(source, {prefix:String})",
        where,
    ).result_rows[0]
    unconverted = f" ({overview[5]} orders in a currency without a rate left out)" if overview[5] else ""
    out.print(
        f"[bold]{summary.inputs}[/] events in: [green]{summary.valid} valid[/], "
        f"[red]{summary.failed_total} failed[/], {sum(summary.refused.values())} refused by consent; "
        f"warehouse holds {overview[0]} events, {overview[1]} sessions, "
        f"{overview[2]} people, {overview[3]} orders, revenue {overview[4]:,.2f} {settings.value_currency}"
        f"{unconverted}"
    )
    failed = Table("stage", "reason", "events", title="Failed events")
    for stage, reason, count in sink.query(
        "SELECT stage, substring(replaceRegexpOne(error, '(: line [0-9]+ column|, first seen at ).*$', ''), 1, 70)"
        " AS reason, count() AS n"
        " FROM failed_events"
        " WHERE startsWith(source, {prefix:String}) GROUP BY stage, reason ORDER BY n DESC LIMIT 10",
        where,
    ).result_rows:
        failed.add_row(stage, reason, str(count))
    out.print(failed)
    channels = Table(
        "channel",
        "sessions",
        "orders",
        "conversion",
        f"revenue ({settings.value_currency})",
        title="Conversions by channel",
    )
    for channel, sessions, orders, revenue in sink.query(
        f"SELECT channel, uniqExact(session_id) AS sessions, countIf({order}) AS orders,"  # noqa: S608 - constants
        f" ifNull(sumIf(revenue / {rate}, {order} AND {rate} > 0), 0) AS revenue FROM events"
        " WHERE startsWith(source, {prefix:String}) GROUP BY channel ORDER BY revenue DESC",
        where,
    ).result_rows:
        channels.add_row(channel, str(sessions), str(orders), f"{orders / sessions:.2%}", f"{revenue:,.2f}")
    out.print(channels)


def erase(settings: Settings, subject_id: str, *, via_kafka: bool) -> int:
    """Erase a person now (embedded warehouse or server), or ask the workers to (``via_kafka``)."""
    from datetime import UTC, datetime
    from uuid import uuid4

    from schemas.privacy import ErasureRequest
    from sinks.erasure import erase as erase_in_warehouse
    from streams.pipeline import pii_key

    request = ErasureRequest(subject_id=subject_id, request_id=str(uuid4()), requested_at=datetime.now(UTC))
    if via_kafka:
        from streams.kafka import ensure_topics, produce

        ensure_topics(settings)
        produce(settings, [request.model_dump_json().encode()], topic="privacy")
        print(f"erasure {request.request_id} of {subject_id!r} sent to {settings.topic('privacy')}")
        return 0
    from models.privacy import PiiHasher

    hasher = PiiHasher(key=pii_key(settings))
    with open_sink(settings) as sink:
        report = erase_in_warehouse(sink, request, subject=hasher.subject, bound_seconds=settings.erasure_bound_seconds)
    removed = ", ".join(f"{table} {n}" for table, n in sorted(report.removed.items()) if n) or "nothing stored"
    print(f"erased {subject_id!r} and {len(report.ids) - 1} linked ids: {removed}; future events are refused")
    return 0


def train(settings: Settings, *, days: int, min_sessions: int, rounds: int) -> int:
    """Fit the XGBoost challenger on the warehouse's labelled human sessions; workers hot-load the file."""
    from models.scoring import roc_auc, train_challenger
    from schemas.scores import SESSION_COLUMNS, SessionRecord

    with open_sink(settings) as sink:
        result = sink.query(
            f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions FINAL WHERE NOT bot"  # noqa: S608 - our column names
            " AND started_at >= now64(3) - toIntervalDay({days:UInt32}) ORDER BY started_at, session_id",
            {"days": days},
        )
    records = [SessionRecord(**dict(zip(SESSION_COLUMNS, row, strict=True))) for row in result.result_rows]
    positives = sum(r.purchased for r in records)
    if len(records) < min_sessions or positives < 10:
        msg = (
            f"not enough history to train: {len(records)} labelled sessions and {positives} purchases in the last "
            f"{days} days (need {min_sessions} and 10); run the demo or the worker longer, or lower --min-sessions"
        )
        raise ConfigError(msg)
    cut = int(len(records) * 0.8)  # time order: fit on the older 80%, check on the newest 20%
    snapshots, labels = [r.features() for r in records], [r.purchased for r in records]
    check = train_challenger(snapshots[:cut], labels[:cut], rounds=rounds)
    auc = roc_auc(list(zip(check.predict_batch(snapshots[cut:]), labels[cut:], strict=True)))
    model = train_challenger(snapshots, labels, rounds=rounds)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.challenger_path.with_suffix(".tmp.ubj")
    model.save(tmp)
    tmp.replace(settings.challenger_path)
    print(
        f"challenger {model.model_version}: {len(records)} sessions ({positives} purchases); "
        f"ROC AUC {auc:.3f} on the newest 20% (fitted on the rest) -> {settings.challenger_path}"
    )
    return 0


def load_spend(settings: Settings, file: str, *, via_kafka: bool = False) -> int:
    """Marketing spend NDJSON into ``marketing_spend``; invalid lines are reported by number, the rest load.
    With ``via_kafka`` the lines go to the workers' ``spend`` topic instead."""
    import hashlib

    from pydantic import ValidationError

    from schemas.spend import MarketingSpend, SpendRow

    path = Path(file)
    data = path.read_bytes()
    if via_kafka:
        from streams.kafka import ensure_topics, produce

        ensure_topics(settings)
        sent = produce(settings, [line for line in data.splitlines() if line.strip()], topic="spend")
        print(f"{sent} spend records sent to {settings.topic('spend')}")
        return 0
    rows: list[object] = []
    errors: list[str] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(SpendRow.of(MarketingSpend.model_validate_json(line), source=f"{path.name}:{number}"))
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            errors.append(f"{path.name}:{number}: {'.'.join(map(str, first['loc'])) or 'record'}: {first['msg']}")
    with open_sink(settings) as sink:
        sink.insert("marketing_spend", rows, token=f"spend:{hashlib.blake2b(data, digest_size=16).hexdigest()}")
    for error in errors[:20]:
        err.print(error, markup=False, highlight=False)
    print(f"{len(rows)} spend records loaded, {len(errors)} invalid")
    return 1 if errors else 0


def budget(
    settings: Settings,
    *,
    total: float,
    model: str,
    days: int,
    max_change: float,
    mins: dict[str, float],
    maxs: dict[str, float],
    overrides: dict[str, float],
    currency: str,
    publish: bool = False,
) -> int:
    """Fit a response curve per channel from recent spend and attributed revenue; recommend tomorrow's split
    (and with ``publish``, send it to the ``budget`` topic keyed by channel)."""
    from datetime import UTC, datetime, timedelta

    from models.budget import allocate, fit_curves

    with open_sink(settings) as sink:
        result = sink.query(
            "SELECT channel, day, spend, attributed_revenue FROM channel_daily WHERE model = {model:String}"
            " AND spend > 0 AND day > (SELECT max(day) FROM marketing_spend) - {days:UInt32} ORDER BY channel, day",
            {"model": model, "days": days},
        )
        points: dict[str, list[tuple[float, float]]] = {}
        last: dict[str, tuple[date, float]] = {}
        for channel, day, spend, revenue in result.result_rows:
            points.setdefault(channel, []).append((float(spend), float(revenue)))
            last[channel] = (day, float(spend))
        if not points:
            msg = f"no days with both spend and {model!r} attributed revenue: load spend (revstream spend FILE) first"
            raise ConfigError(msg)
        curves = fit_curves(points)
        current = {channel: spend for channel, (_, spend) in last.items()}
        allocation = allocate(
            curves,
            total_budget=total,
            current=current,
            min_spend=mins,
            max_spend=maxs,
            max_change=max_change,
            overrides=overrides,
        )
        tomorrow = max(day for day, _ in last.values()) + timedelta(days=1)
        recs = allocation.recommendations(day=tomorrow, currency=currency, computed_at=datetime.now(UTC))
        sink.insert("budget_recommendations", list(recs), token=f"budget:{tomorrow}:{datetime.now(UTC).isoformat()}")
    if publish:
        from streams.kafka import ensure_topics, produce

        ensure_topics(settings)
        produce(
            settings,
            [rec.to_json() for rec in recs],
            topic="budget",
            key=lambda raw: orjson.loads(raw)["channel"].encode(),
        )
        print(f"{len(recs)} recommendations sent to {settings.topic('budget')}")
    table = Table(
        "channel", "fit", "current", "recommended", "predicted revenue", "change", "why", title=f"Budget {tomorrow}"
    )
    for rec in recs:
        table.add_row(
            rec.channel, curves[rec.channel].describe() if rec.channel in curves else "-",
            f"{rec.current_spend:,.2f}", f"{rec.recommended_spend:,.2f}", f"{rec.predicted_revenue:,.2f}",
            f"{rec.predicted_change:+,.2f}", rec.reason,
        )  # fmt: skip
    Console().print(table)
    print(
        f"predicted revenue {allocation.total_revenue:,.2f} {currency} "
        f"(now {allocation.current_total_revenue:,.2f}) for a budget of {total:,.2f}"
    )
    return 0


def journeys(settings: Settings, *, day: date | None, device: str, channel: str) -> int:
    """One segment's funnel steps on ``day``, then every segment's bottleneck that day (see journey_steps)."""
    with open_sink(settings) as sink:
        if day is None:
            day = sink.query("SELECT max(toDate(event_at)) FROM events").result_rows[0][0]
        params = {"day": day, "device": device, "channel": channel}
        steps = sink.query(
            "SELECT step, entered, continued, drop_off, baseline_drop_off, lost_sessions, is_bottleneck"
            " FROM journey_steps WHERE day = {day:Date} AND device_type = {device:String}"
            " AND channel = {channel:String} ORDER BY step_index",
            params,
        ).result_rows
        worst = sink.query(
            "SELECT device_type, channel, step, entered, drop_off, baseline_drop_off, lost_sessions FROM journey_steps"
            " WHERE day = {day:Date} AND is_bottleneck ORDER BY lost_sessions DESC LIMIT 15",
            params,
        ).result_rows
    if not steps:
        msg = f"no sessions on {day} for device {device!r} and channel {channel!r}"
        raise ConfigError(msg)
    funnel = Table("step", "sessions", "went on", "drop-off", "7-day drop-off", "lost", "", title=f"Funnel {day}, "
                   f"device {device}, channel {channel}")  # fmt: skip
    for step, entered, continued, drop, base, lost, worst_step in steps:
        mark = "bottleneck" if worst_step else ""
        funnel.add_row(step, str(entered), str(continued), _pct(drop), _pct(base), f"{lost:.1f}", mark)
    bottlenecks = Table("device", "channel", "step", "sessions", "drop-off", "7-day drop-off", "lost",
                        title=f"Bottlenecks {day}, by sessions lost against the baseline")  # fmt: skip
    for dev, chan, step, entered, drop, base, lost in worst:
        bottlenecks.add_row(dev, chan, step, str(entered), _pct(drop), _pct(base), f"{lost:.1f}")
    console = Console()
    console.print(funnel)
    console.print(bottlenecks if worst else "No step lost sessions against its baseline.")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def worker(settings: Settings) -> int:
    from streams.app import create_app
    from streams.faust_fixes import Worker
    from streams.kafka import ensure_topics

    try:
        (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        msg = f"cannot create the data directory {settings.data_dir}: {e.strerror}"
        raise ConfigError(msg) from e
    ensure_topics(settings)
    configure(level=settings.log_level, json=settings.log_json, stdlib=True)
    app = create_app(settings)
    Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()
    return 0
