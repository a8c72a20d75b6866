"""Privacy records: erasure requests (inbound, on the ``privacy`` topic), the erasure log, consent refusals.

An erasure request names one id (a ``userId`` or an ``anonymousId``); the ids linked to it are found in
the warehouse when it is carried out. The log never stores an erased id itself, only its keyed hash
(``subject``), which is also what suppresses the id when old topics are replayed.

>>> request = ErasureRequest(subject_id="u42", request_id="r1", requested_at="2026-11-01T10:00:00Z")
>>> ErasureRequest.model_validate_json(request.model_dump_json()) == request
True
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Annotated

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.records import SCHEMA_VERSION, Refused


class ErasureRequest(BaseModel):
    """Erase everything about ``subject_id`` (GDPR Art. 17 / CCPA deletion)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject_id: Annotated[str, Field(min_length=1, max_length=256)]
    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    requested_at: datetime


@dataclass(slots=True, kw_only=True)
class ErasureLogRow:
    """What one erasure removed from one table; ``subjects`` are the hashes of every linked id."""

    request_id: str
    subject: str
    subjects: list[str]
    table: str
    rows_removed: int
    requested_at: datetime
    erased_at: datetime
    schema_version: int = SCHEMA_VERSION


@dataclass(slots=True, kw_only=True)
class ConsentRefusalRow:
    """A refused input: its day, purpose and ``source`` (no id, no content), ``refused`` = 1. A SummingMergeTree
    adds rows up per day, purpose and source; rows from before the source was kept have ``source = ''``."""

    day: date
    purpose: str
    refused: int
    source: str = ""
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of(cls, refused: Refused) -> ConsentRefusalRow:
        return cls(day=refused.event_at.date(), purpose=refused.purpose, refused=1, source=refused.source)


ERASE_MARKER = b'{"erase_key"'


@dataclass(slots=True, kw_only=True)
class EraseMarker:
    """Sent by the privacy agent into a stage's own input topic, so the stage forgets in order with events.

    Its JSON starts with :data:`ERASE_MARKER`, which no event row does, so a stage tells the two apart
    without parsing.

    >>> m = EraseMarker(key="a1", ids=["a1", "u1"], subjects=["h1:..."])
    >>> m.to_json().startswith(ERASE_MARKER), EraseMarker.from_json(m.to_json()) == m
    (True, True)
    """

    key: str
    ids: list[str]
    subjects: list[str]

    def to_json(self) -> bytes:
        return orjson.dumps({"erase_key": self.key, "ids": self.ids, "subjects": self.subjects})

    @classmethod
    def from_json(cls, data: bytes) -> EraseMarker:
        obj = orjson.loads(data)
        return cls(key=obj["erase_key"], ids=obj["ids"], subjects=obj["subjects"])


ERASURE_LOG_COLUMNS = tuple(f.name for f in fields(ErasureLogRow))
CONSENT_REFUSAL_COLUMNS = tuple(f.name for f in fields(ConsentRefusalRow))
