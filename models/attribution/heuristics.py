"""Rule-based attribution: first touch, last touch, last non-direct, linear, time decay, position based.

Each is a small class with the :class:`~models.attribution.base.AttributionModel` contract; they learn
nothing (``learn_one`` is a no-op), so their ``model_version`` only changes when a rule changes.

* :class:`FirstTouch` / :class:`LastTouch`: everything to the first / last touch;
* :class:`LastNonDirect`: everything to the last touch whose channel is not direct (GA's default model),
  or to the last touch when every touch is direct;
* :class:`Linear`: every touch alike;
* :class:`TimeDecay`: weight ``2 ** (-age / half_life)``, ``age`` = conversion time - touch time (a touch
  after the conversion, from clock skew, counts as age 0);
* :class:`PositionBased` (U-shaped): ``first``/``last`` (40/40) to the first and last touch and the rest
  evenly to the touches between; one touch gets everything, two touches split ``first : last``.

>>> from datetime import datetime, timedelta, UTC
>>> from models.attribution.base import Touch
>>> t0 = datetime(2026, 11, 1, tzinfo=UTC)
>>> path = [Touch(channel=c, campaign="", at=t0 + timedelta(days=i), session_id=str(i))
...         for i, c in enumerate(["display", "email", "paid_search", "direct"])]
>>> at = t0 + timedelta(days=3)
>>> LastNonDirect().predict_one(path, at=at), [round(w, 3) for w in PositionBased().predict_one(path, at=at)]
([0.0, 0.0, 1.0, 0.0], [0.4, 0.1, 0.1, 0.4])
>>> [round(w, 3) for w in TimeDecay(half_life_days=1.0).predict_one(path, at=at)]
[0.125, 0.25, 0.5, 1.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from models.attribution.base import Touch

RULES_VERSION = 1


class _RuleModel:
    """Shared plumbing of the rule models: nothing to learn, a fixed version, settings as the snapshot."""

    __slots__ = ()
    name = ""

    @property
    def model_version(self) -> str:
        return f"{self.name}.{RULES_VERSION}"

    def learn_one(self, path: Sequence[Touch], *, converted: bool) -> None:
        """Rules learn nothing."""

    def settings(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.name, **self.settings()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


class FirstTouch(_RuleModel):
    """All credit to the first touch of the path."""

    __slots__ = ()
    name = "first_touch"

    def predict_one(self, path: Sequence[Touch], *, at: datetime) -> list[float]:
        return [1.0] + [0.0] * (len(path) - 1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FirstTouch:
        return cls()


class LastTouch(_RuleModel):
    """All credit to the last touch of the path (the converting session)."""

    __slots__ = ()
    name = "last_touch"

    def predict_one(self, path: Sequence[Touch], *, at: datetime) -> list[float]:
        return [0.0] * (len(path) - 1) + [1.0]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LastTouch:
        return cls()


class LastNonDirect(_RuleModel):
    """All credit to the last touch not in ``direct_channels``, else to the last touch."""

    __slots__ = ("direct_channels",)
    name = "last_non_direct"

    def __init__(self, *, direct_channels: Sequence[str] = ("direct",)) -> None:
        self.direct_channels = tuple(direct_channels)

    def predict_one(self, path: Sequence[Touch], *, at: datetime) -> list[float]:
        weights = [0.0] * len(path)
        chosen = next((i for i in reversed(range(len(path))) if path[i].channel not in self.direct_channels), -1)
        weights[chosen] = 1.0
        return weights

    def settings(self) -> dict[str, Any]:
        return {"direct_channels": list(self.direct_channels)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LastNonDirect:
        return cls(direct_channels=data["direct_channels"])


class Linear(_RuleModel):
    """Every touch of the path alike."""

    __slots__ = ()
    name = "linear"

    def predict_one(self, path: Sequence[Touch], *, at: datetime) -> list[float]:
        return [1.0] * len(path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Linear:
        return cls()


class TimeDecay(_RuleModel):
    """Weight halves every ``half_life_days`` before the conversion (GA's time-decay model)."""

    __slots__ = ("half_life_days",)
    name = "time_decay"

    def __init__(self, *, half_life_days: float = 7.0) -> None:
        if not half_life_days > 0:
            msg = f"half_life_days must be positive, got {half_life_days}"
            raise ValueError(msg)
        self.half_life_days = half_life_days

    def predict_one(self, path: Sequence[Touch], *, at: datetime) -> list[float]:
        half_life = timedelta(days=self.half_life_days)
        return [2.0 ** -(max(at - t.at, timedelta(0)) / half_life) for t in path]

    def settings(self) -> dict[str, Any]:
        return {"half_life_days": self.half_life_days}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimeDecay:
        return cls(half_life_days=data["half_life_days"])


class PositionBased(_RuleModel):
    """U-shaped: ``first`` to the first touch, ``last`` to the last, the rest evenly to those between."""

    __slots__ = ("first", "last")
    name = "position_based"

    def __init__(self, *, first: float = 0.4, last: float = 0.4) -> None:
        if not (first >= 0 and last >= 0 and first + last <= 1 and first + last > 0):
            msg = f"first and last must be non-negative with 0 < first + last <= 1, got {first}, {last}"
            raise ValueError(msg)
        self.first = first
        self.last = last

    def predict_one(self, path: Sequence[Touch], *, at: datetime) -> list[float]:
        n = len(path)
        if n == 1:
            return [1.0]
        if n == 2:
            return [self.first, self.last]
        middle = (1.0 - self.first - self.last) / (n - 2)
        return [self.first] + [middle] * (n - 2) + [self.last]

    def settings(self) -> dict[str, Any]:
        return {"first": self.first, "last": self.last}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PositionBased:
        return cls(first=data["first"], last=data["last"])
