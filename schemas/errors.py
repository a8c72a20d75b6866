"""The one exception root of revstream; the hierarchy is drawn in :mod:`schemas`."""

from __future__ import annotations


class RevstreamError(Exception):
    """Root of every error revstream raises on purpose."""


class EventError(RevstreamError, ValueError):
    """An inbound event or batch is invalid.

    ``stage`` names where it failed (``size``, ``parse``, ``validate``, ``dedupe``) so the failed stream
    can be grouped by cause.

    >>> str(EventError("not JSON", stage="parse"))
    'not JSON'
    """

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


class SinkError(RevstreamError):
    """A write to the warehouse failed after the sink's own retries.

    ``retry_after`` is set (seconds) when the failure is temporary overload: the caller should back off
    and retry the same batch rather than give up.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(RevstreamError):
    """A setting, path, flag or DSN is unusable; the message is one line for the user."""


class ErasureError(RevstreamError):
    """An erasure could not be completed (or not proven complete within the configured bound)."""
