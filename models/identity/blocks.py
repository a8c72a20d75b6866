"""Blocking: which records share a key (an IP address, an email hash, a phonetic name key), capped.

Blocking keeps the cost of linkage near-linear: only records that share a key are ever compared, and a
key shared by more than ``cap`` records yields no pairs at all, because such a key says little (a carrier
NAT address, an office gateway, the surname Smith) and would cost ``cap^2`` comparisons. Members are kept
exactly up to ``limit`` so that a key can shrink back under ``cap`` when a member is forgotten or withdraws
consent; past ``limit`` the key is marked large for good and its members are dropped (the only place where
the order of events can matter: removals from a key that once had more than ``limit`` members).

>>> index = BlockIndex(cap=2, limit=3)
>>> index.add("ip:1", "a"), index.add("ip:1", "a"), index.add("ip:1", "b"), sorted(index.pairable("ip:1"))
(True, False, True, ['a', 'b'])
>>> index.add("ip:1", "c"), index.size("ip:1"), index.pairable("ip:1")
(True, 3, ())
>>> index.remove("ip:1", "c"), sorted(index.pairable("ip:1"))
(True, ['a', 'b'])
>>> index.add("ip:1", "c"), index.add("ip:1", "d"), index.size("ip:1"), index.members("ip:1")
(True, True, 4, ())
"""

from __future__ import annotations

from collections.abc import Iterator


class BlockIndex:
    """Members per blocking key, exact up to ``limit``; keys with more than ``cap`` members pair nothing."""

    __slots__ = ("_large", "_members", "cap", "limit")

    def __init__(self, *, cap: int, limit: int) -> None:
        if limit < cap:
            msg = "limit must be at least cap"
            raise ValueError(msg)
        self.cap = cap
        self.limit = limit
        self._members: dict[str, set[str]] = {}
        self._large: set[str] = set()

    def add(self, key: str, member: str) -> bool:
        """Add ``member`` under ``key``; True when the key's membership changed."""
        if key in self._large:
            return False
        members = self._members.get(key)
        if members is None:
            self._members[key] = {member}
            return True
        if member in members:
            return False
        members.add(member)
        if len(members) > self.limit:
            del self._members[key]
            self._large.add(key)
        return True

    def remove(self, key: str, member: str) -> bool:
        """Remove ``member`` from ``key``; True when the key's membership changed."""
        members = self._members.get(key)
        if members is None or member not in members:
            return False
        members.discard(member)
        if not members:
            del self._members[key]
        return True

    def size(self, key: str) -> int:
        """Members under ``key`` (``limit + 1`` once it is large)."""
        if key in self._large:
            return self.limit + 1
        return len(self._members.get(key, ()))

    def members(self, key: str) -> tuple[str, ...] | set[str]:
        """The members of a key (empty once it is large)."""
        return self._members.get(key, ())

    def pairable(self, key: str) -> tuple[str, ...] | set[str]:
        """The members of a key that is small enough to yield candidate pairs, else nothing."""
        members = self._members.get(key, ())
        return members if len(members) <= self.cap else ()

    def keys(self) -> Iterator[str]:
        """Every key that still has members listed."""
        return iter(self._members)
