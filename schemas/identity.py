"""Identity records: the links that tie devices and accounts into persons, person merges and splits, and
probable duplicate accounts.

Slotted dataclasses like :class:`schemas.records.EventRow`: the identity agent builds them from values it
computed itself, so there is nothing to validate. ``to_json``/``from_json`` are their wire form on Kafka
(orjson; times as RFC 3339). Field order is the intended ClickHouse column order. ``evidence`` is a JSON
object saying why (an analyst reads it with ``JSONExtract*``); it never holds a name, email or IP.

* :class:`IdentityLink`, a row of ``identity_links``: one union the resolver made. A device tied to an
  account has ``anonymous_id`` and ``user_id``; two devices tied together have ``anonymous_id`` and
  ``other_anonymous_id``. ``method`` is one of :data:`METHODS`; ``score`` is 1.0 for deterministic links
  and the Fellegi-Sunter posterior match probability otherwise (the match weight is in ``evidence``).
* :class:`PersonChange`, a row of ``person_changes``: nodes moved from ``old_person_id`` to
  ``new_person_id``. ``kind`` is ``merge`` when every remaining node of the old person moved there (the
  old id is gone: fold its state into the new one) and ``split`` when only these nodes left it (a link
  was contradicted or withdrawn; ``reason`` says which).
* ``seq`` on links and changes is the order in which the person-level stage decided them (increasing, also
  across restarts): event times can arrive out of order, so the current person of a node is the one named by
  its record with the highest ``seq`` (the ``persons`` view).
* :class:`ProbableDuplicate`, a row of ``probable_duplicates``: two accounts whose traits (or a shared
  email) say one person, kept apart because two userIds are never merged.

Suggested tables (the warehouse migrations own the real DDL): ``identity_links`` MergeTree ordered by
``(person_id, linked_at)``; ``person_changes`` ordered by ``(changed_at, old_person_id)`` with
``anonymous_ids``/``user_ids`` Array(String); ``probable_duplicates`` ReplacingMergeTree ordered by
``(user_id, other_user_id)``; ``method``/``kind``/``reason`` LowCardinality(String), times
``DateTime64(3, 'UTC')``.

>>> IdentityLink.from_json(EXAMPLE_LINK.to_json()) == EXAMPLE_LINK
True
>>> change = PersonChange.from_json(EXAMPLE_CHANGE.to_json())
>>> change == EXAMPLE_CHANGE, change.anonymous_ids
(True, ('d2',))
>>> ProbableDuplicate.from_json(EXAMPLE_DUPLICATE.to_json()) == EXAMPLE_DUPLICATE
True
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

import orjson

from schemas.records import SCHEMA_VERSION

DETERMINISTIC = "deterministic"
DEVICE_PROBABILISTIC = "device_probabilistic"
TRAIT_PROBABILISTIC = "trait_probabilistic"
METHODS = (DETERMINISTIC, DEVICE_PROBABILISTIC, TRAIT_PROBABILISTIC)


@dataclass(slots=True, kw_only=True)
class IdentityLink:
    """One link between a device and an account or another device (see the module docstring)."""

    anonymous_id: str
    user_id: str
    other_anonymous_id: str
    person_id: str
    method: str
    score: float
    evidence: str
    linked_at: datetime
    seq: int = 0
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> IdentityLink:
        fields = orjson.loads(data)
        fields["linked_at"] = datetime.fromisoformat(fields["linked_at"])
        return cls(**fields)


@dataclass(slots=True, kw_only=True)
class PersonChange:
    """Devices and accounts that moved from one person to another (see the module docstring)."""

    kind: str
    old_person_id: str
    new_person_id: str
    anonymous_ids: tuple[str, ...]
    user_ids: tuple[str, ...]
    reason: str
    evidence: str
    changed_at: datetime
    seq: int = 0
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> PersonChange:
        fields = orjson.loads(data)
        fields["changed_at"] = datetime.fromisoformat(fields["changed_at"])
        fields["anonymous_ids"] = tuple(fields["anonymous_ids"])
        fields["user_ids"] = tuple(fields["user_ids"])
        return cls(**fields)


@dataclass(slots=True, kw_only=True)
class ProbableDuplicate:
    """Two accounts that look like one person; never merged (see the module docstring)."""

    user_id: str
    other_user_id: str
    person_id: str
    other_person_id: str
    method: str
    score: float
    evidence: str
    detected_at: datetime
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> ProbableDuplicate:
        fields = orjson.loads(data)
        fields["detected_at"] = datetime.fromisoformat(fields["detected_at"])
        return cls(**fields)


IDENTITY_LINK_COLUMNS = tuple(f.name for f in fields(IdentityLink))
PERSON_CHANGE_COLUMNS = tuple(f.name for f in fields(PersonChange))
PROBABLE_DUPLICATE_COLUMNS = tuple(f.name for f in fields(ProbableDuplicate))

EXAMPLE_LINK = IdentityLink(
    anonymous_id="d1", user_id="", other_anonymous_id="d2", person_id="a:d1", method=DEVICE_PROBABILISTIC,
    score=0.995, evidence='{"weight":9.1,"fields":{"ip_block":["2",2.1]}}',
    linked_at=datetime(2026, 11, 1, 10, tzinfo=UTC),
)  # fmt: skip
EXAMPLE_CHANGE = PersonChange(
    kind="split", old_person_id="u:usr_1", new_person_id="a:d2", anonymous_ids=("d2",), user_ids=(),
    reason="two user ids", evidence='{"methods":["device_probabilistic"]}',
    changed_at=datetime(2026, 11, 1, 10, tzinfo=UTC),
)  # fmt: skip
EXAMPLE_DUPLICATE = ProbableDuplicate(
    user_id="usr_1", other_user_id="usr_2", person_id="u:usr_1", other_person_id="u:usr_2",
    method=TRAIT_PROBABILISTIC, score=0.998, evidence='{"weight":14.2}',
    detected_at=datetime(2026, 11, 1, 10, tzinfo=UTC),
)  # fmt: skip
