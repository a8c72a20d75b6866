"""Money for attribution: amounts in integer cents, split by weights with the largest-remainder rule.

Credits must add up to the revenue exactly, so no model ever rounds a share on its own: a model returns
weights, and :func:`split_cents` turns the revenue's integer cents into integer shares. Largest remainder
(Hamilton's method): every share gets the floor of its exact quota ``total * w_i / sum(w)``, and the cents
left over go one each to the largest fractional parts, ties to the earlier index (the earlier touch), so
the result is deterministic. The quotas are computed exactly in integers: each float weight is scaled to a
53-bit integer first, which keeps the float's full precision.

>>> split_cents(100, [1.0, 1.0, 1.0])
[34, 33, 33]
>>> split_cents(to_cents(0.01), [0.2, 0.6, 0.2])
[0, 1, 0]
>>> split_cents(-5, [1.0, 1.0])   # a refund is split like its absolute value
[-3, -2]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from schemas.errors import RevstreamError

_SCALE = 2**53


class AttributionError(RevstreamError, ValueError):
    """A conversion cannot be attributed as given (e.g. a revenue that is not a finite amount).

    >>> to_cents(float("nan"))  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    models.attribution.money.AttributionError: revenue must be a finite amount, got nan
    """


def to_cents(amount: float | int | Decimal) -> int:
    """``amount`` in integer cents, rounded half to even (a float is read as its shortest decimal repr).

    >>> to_cents(19.99), to_cents(0.125), to_cents(Decimal("1e3"))
    (1999, 12, 100000)
    """
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(repr(amount))
    except (InvalidOperation, ValueError):
        value = Decimal("NaN")
    if not value.is_finite():
        msg = f"revenue must be a finite amount, got {amount!r}"
        raise AttributionError(msg)
    return int((value * 100).to_integral_value())


def from_cents(cents: int) -> float:
    """Cents as the float nearest to the decimal amount (what the warehouse's Float64 columns hold)."""
    return float(Decimal(cents) / 100)


def split_cents(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` cents in proportion to non-negative ``weights``; the shares add up to ``total``.

    All-zero weights split evenly. Raises ``ValueError`` for no weights, or a negative or non-finite one.
    """
    if not weights:
        msg = "cannot split an amount over no weights"
        raise ValueError(msg)
    if any(not math.isfinite(w) or w < 0 for w in weights):
        msg = f"weights must be finite and non-negative, got {list(weights)}"
        raise ValueError(msg)
    if total < 0:
        return [-share for share in split_cents(-total, weights)]
    top = max(weights)
    scaled = [round(w / top * _SCALE) for w in weights] if top > 0 else [1] * len(weights)
    denominator = sum(scaled)
    shares = []
    remainders = []
    for i, w in enumerate(scaled):
        share, remainder = divmod(total * w, denominator)
        shares.append(share)
        remainders.append((-remainder, i))
    for _, i in sorted(remainders)[: total - sum(shares)]:
        shares[i] += 1
    return shares
