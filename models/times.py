"""Epoch milliseconds: the integer time the models keep in their state (one definition for all of them).

A naive datetime is taken as UTC, as everywhere in the pipeline. ``MS`` is a module constant because
building ``timedelta(milliseconds=1)`` on every call was most of the cost of a conversion (0.9 us against
0.25 us), and the ingest, feature and churn stages convert several times per event.

>>> epoch_ms(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)), epoch_ms(datetime(1970, 1, 1, 0, 0, 1))
(1000, 1000)
>>> from_epoch_ms(epoch_ms(datetime(2026, 1, 1, tzinfo=UTC))).isoformat()
'2026-01-01T00:00:00+00:00'
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def epoch_ms(at: datetime) -> int:
    """Milliseconds since the epoch, rounded down."""
    return ((at if at.tzinfo is not None else at.replace(tzinfo=UTC)) - EPOCH) // MS


def from_epoch_ms(ms: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return EPOCH + timedelta(milliseconds=ms)
