"""The ``revstream`` command line.

Every failure a user can cause (a wrong flag, path, DSN or setting) is one line on stderr and a non-zero
exit code, never a traceback. Progress bars go to stderr; results go to stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

from schemas.errors import ConfigError, RevstreamError
from streams.logs import configure
from streams.settings import Settings, load_settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"expected a whole number, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"expected a number >= 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"expected a number between 0 and 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0.0 <= value <= 1.0:
        msg = f"expected a number between 0 and 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        msg = f"expected a date as YYYY-MM-DD, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _money(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"expected an amount, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 <= value < 1e12:
        msg = f"expected an amount between 0 and 1e12, got {value:g}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _channel_amount(text: str) -> tuple[str, float]:
    channel, sep, amount = text.partition("=")
    if not sep or not channel:
        msg = f"expected CHANNEL=AMOUNT, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return channel, _money(amount)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"expected a port number, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 <= value <= 65535:
        msg = f"expected a port between 0 and 65535, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--dsn", help="ClickHouse DSN (chdb:///path or http://host:8123/db); "
                        "default $REVSTREAM_CLICKHOUSE_DSN or chdb://./revstream-data/warehouse")  # fmt: skip
    common.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default INFO)")

    parser = _Parser(
        prog="revstream",
        description="Real-time revenue intelligence: Segment events in, Kafka through Faust, ClickHouse out.",
        epilog="Settings come from REVSTREAM_* environment variables (see README); flags override them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    demo = sub.add_parser("demo", parents=[common], help="simulate traffic and run it through the embedded pipeline",
                          description="Generate traffic with the simulator, run it through the embedded pipeline "
                          "into chDB and print a summary. Needs no server.")  # fmt: skip
    demo.add_argument("--users", type=_positive_int, default=2000, help="simulated people (default 2000)")
    demo.add_argument("--days", type=_positive_int, default=14, help="simulated days (default 14)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument("--malformed-rate", type=_rate, default=0.01, help="share of broken events (default 0.01)")

    replay = sub.add_parser("replay", parents=[common], help="run an NDJSON file of Segment events (or -) embedded",
                            description="Run NDJSON Segment events from FILE (or - for stdin) through the embedded "
                            "pipeline into ClickHouse. Replays are idempotent.")  # fmt: skip
    replay.add_argument("file", help="NDJSON file, one Segment event a line, or - for stdin")

    simulate = sub.add_parser("simulate", parents=[common], help="write simulated Segment traffic and its truth",
                              description="Write realistic, deterministic Segment-spec traffic as NDJSON (or to "
                              "Kafka) plus a ground-truth JSON file and marketing spend records.")  # fmt: skip
    simulate.add_argument("--users", type=_positive_int, default=1000, help="people (default 1000)")
    simulate.add_argument("--days", type=_positive_int, default=30, help="days of traffic (default 30)")
    simulate.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    simulate.add_argument("--out", type=Path, default=Path("events.ndjson"), help="events file (default events.ndjson)")
    simulate.add_argument("--truth", type=Path, default=Path("truth.json"), help="ground truth (default truth.json)")
    simulate.add_argument(
        "--spend", type=Path, default=Path("spend.ndjson"), help="spend records (default spend.ndjson)"
    )
    simulate.add_argument("--malformed-rate", type=_rate, default=0.0, help="share of broken events (default 0)")
    simulate.add_argument(
        "--to-kafka", action="store_true", help="produce events to the events.raw topic instead of --out"
    )

    sql = sub.add_parser("sql", parents=[common], help="query the warehouse",
                         description="Query the warehouse that the demo and the worker write.")  # fmt: skip
    sql.add_argument("query", help='e.g. "SELECT channel, count() FROM events GROUP BY channel"')
    sql.add_argument(
        "--format", choices=("table", "tsv", "json"), default="table", help="output format (default table)"
    )

    worker = sub.add_parser("worker", parents=[common], help="run the Faust worker (Kafka mode)",
                            description="Start a Faust worker: consumes events.raw and writes to ClickHouse. "
                            "Brokers from REVSTREAM_BROKERS (default 127.0.0.1:19092).")  # fmt: skip
    worker.add_argument("--collector", action="store_true",
                        help="also serve the HTTP collector on $REVSTREAM_COLLECTOR_PORT (default 8088)")  # fmt: skip
    collect = sub.add_parser("collect", parents=[common], help="run the HTTP collector (Segment HTTP API)",
                             description="Serve the Segment HTTP Tracking API (/v1/track, /v1/batch ...) and the "
                             "browser tracker (/tracker.js); produce accepted events to events.raw. Write keys "
                             "from REVSTREAM_WRITE_KEYS (comma separated; empty accepts any key).")  # fmt: skip
    collect.add_argument("--host", default=None, help="address to listen on (default $REVSTREAM_COLLECTOR_HOST "
                         "or 127.0.0.1)")  # fmt: skip
    collect.add_argument("--port", type=_port, default=None, help="port (default $REVSTREAM_COLLECTOR_PORT or 8088)")
    erase = sub.add_parser("erase", parents=[common], help="erase a person everywhere (GDPR/CCPA)",
                           description="Delete every row about a userId or anonymousId (and the ids linked to it) "
                           "from every warehouse table and failed events, physically, and refuse its future and "
                           "replayed events. With --kafka the request goes to the privacy topic and the workers "
                           "also drop their in-memory and table state.")  # fmt: skip
    erase.add_argument("subject_id", help="the userId or anonymousId to erase")
    erase.add_argument("--kafka", action="store_true", help="send the request to the running workers")
    train = sub.add_parser("train", parents=[common], help="fit the XGBoost propensity challenger",
                           description="Fit an XGBoost purchase-propensity model on the labelled human sessions "
                           "in the warehouse's sessions table and write it to $REVSTREAM_DATA_DIR/challenger.ubj. "
                           "Running workers (and later embedded runs) load it and score with it in shadow next to "
                           "the online model; REVSTREAM_CHALLENGER_SHARE of sessions get its score (an A/B test), "
                           "and it becomes the champion when its recent log loss is better.")  # fmt: skip
    train.add_argument("--days", type=_positive_int, default=90, help="sessions of the last N days (default 90)")
    train.add_argument("--min-sessions", type=_positive_int, default=500, help="refuse with fewer (default 500)")
    train.add_argument("--rounds", type=_positive_int, default=300, help="boosting rounds (default 300)")
    _add_marketing_commands(sub, common)
    sub.add_parser("migrate", parents=[common], help="create or upgrade the warehouse tables")
    sub.add_parser("topics", parents=[common], help="create the Kafka topics with the configured partitions")
    return parser


def _add_marketing_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """spend, budget and journeys: what marketers run against the warehouse."""
    spend = sub.add_parser("spend", parents=[common], help="load marketing spend (NDJSON) into the warehouse",
                           description="Load marketing spend records (one JSON object a line: date, channel, "
                           "campaign, cost, currency, impressions, clicks) into marketing_spend. Invalid lines "
                           "are reported by number and skipped; loading the same file again writes nothing "
                           "twice.")  # fmt: skip
    spend.add_argument("file", help="NDJSON file, e.g. the spend.ndjson that revstream simulate writes")
    spend.add_argument("--kafka", action="store_true", help="produce the lines to the workers' spend topic instead; "
                       "they validate and store them, and invalid ones land in failed_events")  # fmt: skip
    budget = sub.add_parser("budget", parents=[common], help="recommend tomorrow's marketing budget per channel",
                            description="Fit a diminishing-returns curve per channel from daily spend and "
                            "attributed revenue (channel_daily), then split --total to maximise predicted revenue "
                            "within every limit. Prints the plan and writes budget_recommendations.")  # fmt: skip
    budget.add_argument("--total", type=_money, required=True, help="tomorrow's total budget")
    budget.add_argument("--model", default="shapley", help="attribution model whose revenue counts (default shapley)")
    budget.add_argument("--days", type=_positive_int, default=28, help="days of history to fit on (default 28)")
    budget.add_argument("--max-change", type=_rate, default=0.2, help="largest daily change per channel, as a "
                        "fraction of its current spend (default 0.2)")  # fmt: skip
    budget.add_argument("--min", action="append", type=_channel_amount, default=[], metavar="CHANNEL=AMOUNT",
                        help="a channel's minimum spend (repeatable)")  # fmt: skip
    budget.add_argument("--max", action="append", type=_channel_amount, default=[], metavar="CHANNEL=AMOUNT",
                        help="a channel's maximum spend (repeatable)")  # fmt: skip
    budget.add_argument("--set", action="append", type=_channel_amount, default=[], metavar="CHANNEL=AMOUNT",
                        help="a manual override the allocator keeps exactly (repeatable)")  # fmt: skip
    budget.add_argument("--currency", default="USD", help="currency of the amounts (default USD)")
    budget.add_argument("--publish", action="store_true", help="also send the plan to the budget topic (one "
                        "JSON record per channel, keyed by channel) for ad platforms")  # fmt: skip
    journeys = sub.add_parser("journeys", parents=[common], help="print a day's funnel and its bottlenecks",
                              description="From the journey views: each funnel step's sessions, drop-off and "
                              "drop-off over the previous 7 days, for one device type and channel ('all' rolls "
                              "either up), then the day's bottleneck of every segment: the step that lost the most "
                              "sessions against its own baseline.")  # fmt: skip
    journeys.add_argument("--day", type=_day, help="the day, YYYY-MM-DD (default: the latest day with events)")
    journeys.add_argument("--device", default="all", help="device type, e.g. mobile (default all)")
    journeys.add_argument("--channel", default="all", help="channel, e.g. paid_search (default all)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(clickhouse_dsn=args.dsn, log_level=args.log_level)
        configure(level=settings.log_level, json=settings.log_json)
        return COMMANDS[args.command](args, settings)
    except RevstreamError as e:
        print(f"revstream: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("revstream: interrupted", file=sys.stderr)
        return 130


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import demo

    return demo(settings, users=args.users, days=args.days, seed=args.seed, malformed_rate=args.malformed_rate)


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import replay

    if args.file != "-":
        path = Path(args.file)
        if not path.exists():
            msg = f"no such file: {args.file}"
            raise ConfigError(msg)
        if not path.is_file():
            msg = f"not a file: {args.file}"
            raise ConfigError(msg)
    return replay(settings, args.file)


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import simulate

    for flag, path in (("--out", args.out), ("--truth", args.truth), ("--spend", args.spend)):
        if not path.parent.is_dir():
            msg = f"{flag}: directory does not exist: {path.parent}"
            raise ConfigError(msg)
    return simulate(
        settings,
        users=args.users,
        days=args.days,
        seed=args.seed,
        malformed_rate=args.malformed_rate,
        out=None if args.to_kafka else args.out,
        truth=args.truth,
        spend=args.spend,
    )


def _cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import sql

    return sql(settings, args.query, fmt=args.format)


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import worker

    if args.collector:
        settings = settings.model_copy(update={"worker_collector": True})
    return worker(settings)


def _cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    from streams.collector import collect

    host = settings.collector_host if args.host is None else args.host
    port = settings.collector_port if args.port is None else args.port
    return collect(settings, host=host, port=port)


def _cmd_erase(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import erase

    if not args.subject_id.strip():
        msg = "the id to erase is empty"
        raise ConfigError(msg)
    return erase(settings, args.subject_id, via_kafka=args.kafka)


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import train

    return train(settings, days=args.days, min_sessions=args.min_sessions, rounds=args.rounds)


def _cmd_spend(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import load_spend

    path = Path(args.file)
    if not path.is_file():
        msg = f"no such file: {args.file}"
        raise ConfigError(msg)
    return load_spend(settings, args.file, via_kafka=args.kafka)


def _cmd_budget(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import budget

    return budget(
        settings,
        total=args.total,
        model=args.model,
        days=args.days,
        max_change=args.max_change,
        mins=dict(args.min),
        maxs=dict(args.max),
        overrides=dict(args.set),
        currency=args.currency,
        publish=args.publish,
    )


def _cmd_journeys(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import journeys

    return journeys(settings, day=args.day, device=args.device, channel=args.channel)


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.commands import migrate

    return migrate(settings)


def _cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka import ensure_topics

    for name in ensure_topics(settings):
        print(name)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "demo": _cmd_demo,
    "replay": _cmd_replay,
    "simulate": _cmd_simulate,
    "sql": _cmd_sql,
    "worker": _cmd_worker,
    "collect": _cmd_collect,
    "erase": _cmd_erase,
    "train": _cmd_train,
    "spend": _cmd_spend,
    "budget": _cmd_budget,
    "journeys": _cmd_journeys,
    "migrate": _cmd_migrate,
    "topics": _cmd_topics,
}

if __name__ == "__main__":
    sys.exit(main())
