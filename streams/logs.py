"""structlog set-up for the entry points: key-value lines on stderr, or JSON lines for log shippers."""

from __future__ import annotations

import logging
import sys

import structlog


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # Looked up at each call, not bound once: stderr may be replaced (pytest capture, daemonisation).
    return structlog.PrintLogger(sys.stderr)


def configure(*, level: str = "INFO", json: bool = False, stdlib: bool = False) -> None:
    """Route structlog to stderr at ``level``; stdout stays for command output.

    ``stdlib=True`` hands structlog's rendered lines to the standard ``logging`` module instead, for the
    Faust worker, which owns logging (its handlers, levels and stdout redirection) once it starts.
    """
    numeric = logging.getLevelName(level.upper())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[structlog.typing.Processor] = [structlog.processors.add_log_level]
    if not stdlib:
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory() if stdlib else _stderr_logger,
        cache_logger_on_first_use=False,
    )
    if not stdlib:
        logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
