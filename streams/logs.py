"""structlog set-up for the entry points: key-value lines on stderr, or JSON lines for log shippers."""

from __future__ import annotations

import logging
import sys

import structlog


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # Looked up at each call, not bound once: stderr may be replaced (pytest capture, daemonisation).
    return structlog.PrintLogger(sys.stderr)


def configure(*, level: str = "INFO", json: bool = False) -> None:
    """Route structlog (and stdlib logging) to stderr at ``level``; stdout stays for command output."""
    numeric = logging.getLevelName(level.upper())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
