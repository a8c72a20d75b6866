"""What every attribution model shares: the :class:`Touch`, the model contract, and spreading channel weights.

A model never sees money. ``predict_one(path, at=...)`` returns one non-negative weight per touch (not
necessarily normalised; all zero means "split evenly"), and :class:`~models.attribution.paths.TouchpointPaths`
turns weights into cents with :func:`~models.attribution.money.split_cents`. That keeps the rounding rule
in one place and makes conservation to the cent a property of the store, not of eight models.

>>> from datetime import datetime, UTC
>>> t = Touch(channel="email", campaign="bf", at=datetime(2026, 11, 1, tzinfo=UTC), session_id="s1")
>>> Touch.from_dict(t.to_dict()) == t, t.to_dict()["at"]
(True, '2026-11-01T00:00:00+00:00')
>>> spread_by_channel([t, t, t.with_channel("display")], {"email": 0.5, "display": 0.5})
[0.25, 0.25, 0.5]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeGuard, runtime_checkable


@dataclass(frozen=True, slots=True, kw_only=True)
class Touch:
    """One marketing touch of a person: the channel and campaign of a session, when it started, its id.

    ``at`` is UTC: a naive time is taken as UTC, as everywhere in the pipeline, and an aware one converted.
    ``campaign`` is ``""`` when the session carried none.
    """

    channel: str
    campaign: str
    at: datetime
    session_id: str

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset():
            object.__setattr__(
                self, "at", self.at.replace(tzinfo=UTC) if self.at.tzinfo is None else self.at.astimezone(UTC)
            )

    def with_channel(self, channel: str) -> Touch:
        return Touch(channel=channel, campaign=self.campaign, at=self.at, session_id=self.session_id)

    def to_dict(self) -> dict[str, str]:
        return {
            "channel": self.channel,
            "campaign": self.campaign,
            "at": self.at.isoformat(),
            "session_id": self.session_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Touch:
        return cls(
            channel=data["channel"],
            campaign=data["campaign"],
            at=datetime.fromisoformat(data["at"]),
            session_id=data["session_id"],
        )


class LazilySolved:
    """A learned model that credits a path by per-channel weights solved from its counts, lazily: when
    ``refit_every`` paths were learned since the last solve, or a path has a channel not solved yet (Markov
    removal effects, Shapley values). Subclasses keep the counters and implement ``channel_weights`` and
    ``refit`` (which resets ``learned_since_solve``)."""

    refit_every: int
    conversions_learned: int
    learned_since_solve: int

    def channel_weights(self) -> Mapping[str, float]:
        raise NotImplementedError

    def refit(self) -> None:
        raise NotImplementedError

    def predict_one(self, path: Sequence[Touch], *, at: datetime) -> list[float]:
        """Per-touch weights: the channel's weight shared by its touches (linear before learning)."""
        solved = self.channel_weights()
        if self.conversions_learned and (
            self.learned_since_solve >= self.refit_every or any(t.channel not in solved for t in path)
        ):
            self.refit()
            solved = self.channel_weights()
        weights = spread_by_channel(path, solved)
        return weights if sum(weights) > 0 else [1.0] * len(path)


class AttributionModel(Protocol):
    """The contract of an attribution model (checked for every model by ``tests/models/test_attribution.py``).

    ``name`` is the value of the ``model`` column. ``learn_one`` sees each path once when it ends:
    ``converted=True`` when it ended in a conversion, ``False`` when it expired without one (rule-based models
    ignore it). ``predict_one`` returns one weight per touch of a non-empty path, non-negative, before and
    after learning, without mutating the path. ``model_version`` changes when what the model predicts
    changes. ``to_dict`` is a JSON-able snapshot of settings and learned state; each class has a matching
    ``from_dict``.
    """

    @property
    def name(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    def learn_one(self, path: Sequence[Touch], *, converted: bool) -> None: ...

    def predict_one(self, path: Sequence[Touch], *, at: datetime) -> list[float]: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class BaselineAttributionModel(AttributionModel, Protocol):
    """A model that may credit part of a conversion to no touch at all, but to a pseudo-channel.

    ``predict_with_baseline`` returns the per-touch weights and one more weight, on the same scale, for
    ``baseline_channel`` (revenue the model expects without any of the path's channels, e.g.
    :class:`~models.attribution.incremental.IncrementalAttribution`).
    :class:`~models.attribution.paths.TouchpointPaths` splits the revenue over the touches and the baseline
    together, so they still add up to it exactly. ``predict_one`` is the touch weights alone.
    """

    @property
    def baseline_channel(self) -> str: ...

    def predict_with_baseline(self, path: Sequence[Touch], *, at: datetime) -> tuple[list[float], float]: ...


@runtime_checkable
class SessionLearner(Protocol):
    """A model that learns from every session as soon as its outcome is known, not from ended paths.

    ``learn_trial(history, converted=...)``: the last touch of ``history`` is a session that converted or,
    as a later touch or the end of its path shows, did not; the touches before it are what the person did
    before within the lookback. :class:`~models.attribution.paths.TouchpointPaths` calls it instead of
    ``learn_one`` for such a model, because ended paths are a biased sample of sessions: a path that does
    not convert only ends after ``lookback_days`` without a touch, so the sessions of people who keep
    coming back without buying would never be learned.
    """

    def learn_trial(self, history: Sequence[Touch], *, converted: bool) -> None: ...


_CONFORMS: dict[tuple[type, type], bool] = {}


def _conforms(model: object, protocol: type) -> bool:
    """``isinstance(model, protocol)``, remembered per class: a runtime protocol check costs several
    microseconds, and the paths ask it for every model on every touch and conversion."""
    key = (type(model), protocol)
    known = _CONFORMS.get(key)
    if known is None:
        known = _CONFORMS[key] = isinstance(model, protocol)
    return known


def learns_sessions(model: object) -> TypeGuard[SessionLearner]:
    """Whether ``model`` is a :class:`SessionLearner` (decided by its class)."""
    return _conforms(model, SessionLearner)


def has_baseline(model: object) -> TypeGuard[BaselineAttributionModel]:
    """Whether ``model`` is a :class:`BaselineAttributionModel` (decided by its class)."""
    return _conforms(model, BaselineAttributionModel)


def spread_by_channel(path: Sequence[Touch], channel_weights: Mapping[str, float]) -> list[float]:
    """Per-touch weights from per-channel weights: a channel's weight is shared evenly by its touches.

    Channels missing from ``channel_weights`` weigh 0. This is how the data-driven models, which learn a
    weight per channel, keep ``touch_index`` and ``campaign`` in their credits.
    """
    counts = Counter(t.channel for t in path)
    return [max(channel_weights.get(t.channel, 0.0), 0.0) / counts[t.channel] for t in path]
