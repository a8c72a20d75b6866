"""Keyed hashes of contact details, so that identity compares emails and phones without keeping them.

Ingest may already have replaced emails and phone numbers by a keyed hash (``h1:`` + BLAKE2b hex, see
``PiiHasher`` in :mod:`models.privacy`); such values pass through unchanged. Plain values are normalised
(an email stripped and lower-cased, a phone reduced to its digits) and hashed the same way, so a plain and
a pre-hashed copy of one address agree when both sides use the same key. The pipeline can pass its own
hasher's methods instead (``IdentityResolver(email_key=pii.email, phone_key=pii.phone)``).

>>> keys = KeyedHash(key=b"secret")
>>> keys.email(" Ann@Example.com ") == keys.email("ann@example.com"), keys.email("ann@example.com")[:3]
(True, 'h1:')
>>> keys.email("h1:0123") , keys.phone("+1 (555) 010-2030") == keys.phone("15550102030")
('h1:0123', True)
>>> len(keys.token("94110"))
16
"""

from __future__ import annotations

import hashlib

HASH_PREFIX = "h1:"


class KeyedHash:
    """BLAKE2b keyed MAC of normalised emails and phones (``h1:`` + 32 hex), and short tokens of other fields.

    ``key`` should be the pipeline's secret (up to 64 bytes; longer keys are cut): without it a hash of a
    low-entropy value such as a phone number can be reversed by trying every number.
    """

    __slots__ = ("key",)

    def __init__(self, *, key: bytes = b"") -> None:
        self.key = key

    def _digest(self, value: str, size: int) -> str:
        return hashlib.blake2b(value.encode(), key=self.key[:64], digest_size=size).hexdigest()

    def email(self, value: str) -> str:
        """The keyed hash of an email address (already hashed values are returned as they are)."""
        if value.startswith(HASH_PREFIX):
            return value
        return HASH_PREFIX + self._digest(value.strip().lower(), 16)

    def phone(self, value: str) -> str:
        """The keyed hash of a phone number's digits (already hashed values are returned as they are)."""
        if value.startswith(HASH_PREFIX):
            return value
        digits = "".join(c for c in value if c.isdigit())
        return HASH_PREFIX + self._digest(digits or value.strip(), 16)

    def token(self, value: str) -> str:
        """A 64-bit keyed token for fields compared only for equality (postal code, birth date)."""
        return self._digest(value, 8)
