"""Root conftest: quiet structlog on stderr for doctests and tests alike."""

from streams.logs import configure

configure(level="WARNING")
