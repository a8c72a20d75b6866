"""Touchpoint paths per person, and the credits of every attribution model when a person converts.

:class:`TouchpointPaths` is a read-only mapping ``person_id -> tuple[Touch, ...]`` (time order) that owns the
attribution models. The attribution agent calls:

* ``add(person_id, touch)`` for each new session (idempotent: a touch whose ``session_id`` is already in the
  path is ignored; touches arriving out of order are put in time order);
* ``convert(person_id, conversion_id, revenue, currency, at)`` on an order: the touches of the last
  ``lookback_days`` up to ``at`` form the converting path; the learned models learn it as converting, then
  every model credits it (see :mod:`schemas.attribution`); the path is consumed (touches after ``at``, which
  arrived early, stay for the next conversion). Conversion ids are remembered per person with the consumed
  path until the lookback has passed, so a redelivered order returns credits for the same touches and
  teaches nothing twice;
* ``expire(now)`` now and then (e.g. hourly, with the stream's event time): a path whose last touch is more
  than ``lookback_days`` before ``now`` ended without a conversion, and the learned models learn it as
  non-converting (oldest last touch first; a heap of last touches finds them without scanning every path);
* ``merge(src, dst)`` when identity resolution links two persons, ``forget(person_id)`` on erasure.

Models that learn sessions rather than ended paths (:class:`~models.attribution.base.SessionLearner`, the
incremental model) learn each touch once, as soon as its outcome is known: as converting in ``convert``, as
not converting when a later touch is added to its path or when ``expire`` ends the path. (A touch arriving
out of order, before the path's last touch, is only history for later touches.) Models with a baseline
(:class:`~models.attribution.base.BaselineAttributionModel`) also credit their pseudo-channel, in one more
row with ``touch_index`` = the path's length; touches and baseline together add up to the revenue.

Window semantics, independent of how often ``expire`` runs: ``add`` drops touches more than
``lookback_days`` before the newest one, and at most ``max_touches`` (the latest) are kept, which bounds a
bot's path. A conversion is credited to the touches in ``[at - lookback, at]``; a conversion without any is
credited to ``direct_channel``, and nothing learns from it. Learned models learn from the
converting path first and then credit it, as a batch fit over all paths would include it.

Erasure: ``forget`` removes the person's touches and remembered conversions. What the Markov and Shapley
models learned are counts of channel transitions and channel sets summed over everyone, and the incremental
model's are regression coefficients per channel, with no person id or time; they are not personal data and
stay.

Partitioning: paths are per person (key the agent by ``person_id``), but the learned models are statistics
of all persons, so one store per partition would make credits depend on the number of workers. Either feed
the attribution agent from a single-partition topic of sessions and orders, or keep paths in a person-keyed
table and the learned models in one place (their state is :meth:`TouchpointPaths.to_json` / the models'
``to_dict``).

>>> from datetime import datetime, timedelta, UTC
>>> t0 = datetime(2026, 11, 1, tzinfo=UTC)
>>> paths = TouchpointPaths()
>>> for day, channel in [(0, "display"), (2, "email"), (3, "direct")]:
...     paths.add("p1", Touch(channel=channel, campaign="", at=t0 + timedelta(days=day), session_id=f"s{day}"))
>>> credits = paths.convert("p1", conversion_id="o1", revenue=100.0, currency="USD", at=t0 + timedelta(days=3))
>>> [(c.channel, c.credit) for c in credits if c.model == "position_based"]
[('display', 40.0), ('email', 20.0), ('direct', 40.0)]
>>> [(c.channel, c.credit) for c in credits if c.model == "linear"]
[('display', 33.34), ('email', 33.33), ('direct', 33.33)]
>>> "p1" in paths, TouchpointPaths.from_json(paths.to_json()).to_json() == paths.to_json()
(False, True)
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from models.attribution.base import AttributionModel, Touch, has_baseline, learns_sessions
from models.attribution.heuristics import FirstTouch, LastNonDirect, LastTouch, Linear, PositionBased, TimeDecay
from models.attribution.incremental import IncrementalAttribution
from models.attribution.markov import MarkovAttribution
from models.attribution.money import from_cents, split_cents, to_cents
from models.attribution.shapley import ShapleyAttribution
from schemas.attribution import AttributionCredit

MODEL_CLASSES: dict[str, Any] = {
    cls.name: cls
    for cls in (
        FirstTouch,
        LastTouch,
        LastNonDirect,
        Linear,
        TimeDecay,
        PositionBased,
        ShapleyAttribution,
        IncrementalAttribution,
    )
}
MODEL_CLASSES["markov"] = MarkovAttribution


def default_models() -> list[AttributionModel]:
    """One of each model with its default settings (Markov of order 1), in the order credits are emitted."""
    return [
        FirstTouch(),
        LastTouch(),
        LastNonDirect(),
        Linear(),
        TimeDecay(),
        PositionBased(),
        MarkovAttribution(),
        ShapleyAttribution(),
        IncrementalAttribution(),
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversion:
    """A conversion already credited: its id, time and the path it consumed (to answer a redelivery)."""

    conversion_id: str
    at: datetime
    path: tuple[Touch, ...]


def _order(touch: Touch) -> tuple[datetime, str]:
    return touch.at, touch.session_id


def _due_heap(paths: Mapping[str, Sequence[Touch]]) -> list[tuple[datetime, str]]:
    due = [(path[-1].at, pid) for pid, path in paths.items() if path]
    heapq.heapify(due)
    return due


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class TouchpointPaths(Mapping[str, tuple[Touch, ...]]):
    """Per-person touchpoint paths with a lookback window; credits every model on conversion."""

    def __init__(
        self,
        *,
        lookback_days: float = 30.0,
        max_touches: int = 100,
        direct_channel: str = "direct",
        models: Sequence[AttributionModel] | None = None,
    ) -> None:
        if not lookback_days > 0 or max_touches < 1:
            msg = f"lookback_days must be positive and max_touches at least 1, got {lookback_days}, {max_touches}"
            raise ValueError(msg)
        self.lookback_days = lookback_days
        self.max_touches = max_touches
        self.direct_channel = direct_channel
        self.models = models
        # learned state; the store owns the models it is given (they learn in place)
        self.attributors: list[AttributionModel] = list(models) if models is not None else default_models()
        names = [m.name for m in self.attributors]
        if len(set(names)) != len(names):
            msg = f"every model needs its own name (the model column), got {names}"
            raise ValueError(msg)
        self.paths: dict[str, list[Touch]] = {}
        self.conversions: dict[str, list[Conversion]] = {}
        # (last touch, person) for every path, plus stale entries of paths that have grown or gone since: a
        # min-heap, so that ``expire`` pops the ended paths instead of scanning them all (derived state, not
        # pickled)
        self._due: list[tuple[datetime, str]] = []

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_due"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._due = _due_heap(self.paths)

    @property
    def lookback(self) -> timedelta:
        return timedelta(days=self.lookback_days)

    def __getitem__(self, person_id: str) -> tuple[Touch, ...]:
        return tuple(self.paths[person_id])

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def add(self, person_id: str, touch: Touch) -> None:
        """Append ``touch`` to the person's path in time order (a session already in the path is ignored).

        An empty ``session_id`` is never recognised as already there. When the touch comes after every touch
        of the path, the path's previous last touch is a session that did not convert (a conversion would
        have consumed it), and the models that learn sessions (:class:`~models.attribution.base.SessionLearner`)
        learn it now.
        """
        self._insert(person_id, touch, learn=True)

    def _insert(self, person_id: str, touch: Touch, *, learn: bool) -> None:
        path = self.paths.setdefault(person_id, [])
        if touch.session_id and any(t.session_id == touch.session_id for t in path):
            return
        if learn and path and _order(touch) >= _order(path[-1]):
            self._learn_trial(path, converted=False)
        bisect.insort(path, touch, key=_order)
        if path[-1] is touch:
            heapq.heappush(self._due, (touch.at, person_id))
        cutoff = path[-1].at - self.lookback
        start = max(bisect.bisect_left(path, cutoff, key=lambda t: t.at), len(path) - self.max_touches)
        del path[:start]

    def _learn_trial(self, history: Sequence[Touch], *, converted: bool) -> None:
        for model in self.attributors:
            if learns_sessions(model):
                model.learn_trial(history, converted=converted)

    def convert(
        self, person_id: str, *, conversion_id: str, revenue: float | Decimal, currency: str, at: datetime
    ) -> list[AttributionCredit]:
        """Credit the conversion with every model, learn its path as converting, and consume the path.

        Each model's credits sum to ``revenue`` rounded to the cent. A ``conversion_id`` already converted
        for this person (a redelivery) returns the credits of the same touches without learning again; an
        empty id is never recognised. Raises
        :class:`~models.attribution.money.AttributionError` for a revenue that is not a finite amount.
        """
        cents = to_cents(revenue)
        at = _utc(at)
        for done in self.conversions.get(person_id, ()) if conversion_id else ():
            if done.conversion_id == conversion_id:
                return self._credits(
                    person_id, done.path, conversion_id=conversion_id, cents=cents, currency=currency, at=done.at
                )
        path = self.paths.get(person_id, [])
        lo = bisect.bisect_left(path, at - self.lookback, key=lambda t: t.at)
        hi = bisect.bisect_right(path, at, key=lambda t: t.at)
        converting = tuple(path[lo:hi])
        if converting:
            for model in self.attributors:
                if learns_sessions(model):
                    model.learn_trial(converting, converted=True)
                else:
                    model.learn_one(converting, converted=True)
        if path:
            del path[:hi]
            if not path:
                del self.paths[person_id]
        self.conversions.setdefault(person_id, []).append(
            Conversion(conversion_id=conversion_id, at=at, path=converting)
        )
        return self._credits(person_id, converting, conversion_id=conversion_id, cents=cents, currency=currency, at=at)

    def expire(self, now: datetime) -> int:
        """End the paths whose last touch is more than the lookback before ``now``; learn them as non-converting.

        Also forgets remembered conversions older than the lookback. Returns the number of paths ended.
        """
        cutoff = _utc(now) - self.lookback
        due, ended = self._due, 0
        while due and due[0][0] < cutoff:
            _, pid = heapq.heappop(due)
            current = self.paths.get(pid)
            if not current or current[-1].at >= cutoff:
                continue  # a stale entry: the path has gone, or grown since
            path = tuple(self.paths.pop(pid))
            ended += 1
            for model in self.attributors:
                if learns_sessions(model):
                    model.learn_trial(path, converted=False)
                else:
                    model.learn_one(path, converted=False)
        for pid, done in list(self.conversions.items()):
            recent = [c for c in done if c.at >= cutoff]
            if recent:
                self.conversions[pid] = recent
            else:
                del self.conversions[pid]
        return ended

    def merge(self, src_person: str, dst_person: str) -> None:
        """Move ``src_person``'s touches and conversions to ``dst_person`` (identity resolution merged them)."""
        if src_person == dst_person:
            return
        for touch in self.paths.pop(src_person, []):
            # src's sessions were learned under src; its still open last one is only learned if it stays last
            self._insert(dst_person, touch, learn=False)
        done = self.conversions.pop(src_person, [])
        if done:
            merged = {c.conversion_id: c for c in (*done, *self.conversions.get(dst_person, ()))}
            self.conversions[dst_person] = sorted(merged.values(), key=lambda c: (c.at, c.conversion_id))

    def forget(self, person_id: str) -> bool:
        """Erase the person's touches and remembered conversions; whether there was anything to erase."""
        had_path = self.paths.pop(person_id, None) is not None
        had_conversions = self.conversions.pop(person_id, None) is not None
        return had_path or had_conversions

    def _credits(
        self, person_id: str, path: tuple[Touch, ...], *, conversion_id: str, cents: int, currency: str, at: datetime
    ) -> list[AttributionCredit]:
        touched = bool(path)
        if not touched:
            path = (Touch(channel=self.direct_channel, campaign="", at=at, session_id=""),)
        revenue = from_cents(cents)
        credits: list[AttributionCredit] = []
        for model in self.attributors:
            baseline = 0.0
            if touched and has_baseline(model):
                weights, baseline = model.predict_with_baseline(path, at=at)
            else:
                weights = model.predict_one(path, at=at)
            shares = split_cents(cents, [*weights, baseline]) if baseline > 0 else [*split_cents(cents, weights), 0]
            version = model.model_version
            everyone = not any(w > 0 for w in weights) and not baseline > 0
            credits.extend(
                AttributionCredit(
                    conversion_id=conversion_id,
                    person_id=person_id,
                    model=model.name,
                    channel=touch.channel,
                    campaign=touch.campaign,
                    touch_index=i,
                    credit=from_cents(share),
                    revenue=revenue,
                    currency=currency,
                    event_at=at,
                    model_version=version,
                )
                for i, (touch, weight, share) in enumerate(zip(path, weights, shares, strict=False))
                if weight > 0 or everyone
            )
            if baseline > 0 and has_baseline(model):
                credits.append(
                    AttributionCredit(
                        conversion_id=conversion_id,
                        person_id=person_id,
                        model=model.name,
                        channel=model.baseline_channel,
                        campaign="",
                        touch_index=len(path),
                        credit=from_cents(shares[-1]),
                        revenue=revenue,
                        currency=currency,
                        event_at=at,
                        model_version=version,
                    )
                )
        return credits

    def to_json(self) -> bytes:
        """Settings, learned models, paths and remembered conversions as JSON (times as RFC 3339)."""
        return orjson.dumps(
            {
                "lookback_days": self.lookback_days,
                "max_touches": self.max_touches,
                "direct_channel": self.direct_channel,
                "models": [m.to_dict() for m in self.attributors],
                "paths": {pid: [t.to_dict() for t in path] for pid, path in self.paths.items()},
                "conversions": {
                    pid: [
                        {
                            "conversion_id": c.conversion_id,
                            "at": c.at.isoformat(),
                            "path": [t.to_dict() for t in c.path],
                        }
                        for c in done
                    ]
                    for pid, done in self.conversions.items()
                },
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> TouchpointPaths:
        state = orjson.loads(data)
        models = [MODEL_CLASSES[m["model"]].from_dict(m) for m in state["models"]]
        store = cls(
            lookback_days=state["lookback_days"],
            max_touches=state["max_touches"],
            direct_channel=state["direct_channel"],
            models=models,
        )
        store.paths = {pid: [Touch.from_dict(t) for t in path] for pid, path in state["paths"].items()}
        store._due = _due_heap(store.paths)
        store.conversions = {
            pid: [
                Conversion(
                    conversion_id=c["conversion_id"],
                    at=datetime.fromisoformat(c["at"]),
                    path=tuple(Touch.from_dict(t) for t in c["path"]),
                )
                for c in done
            ]
            for pid, done in state["conversions"].items()
        }
        return store

    def __repr__(self) -> str:
        names = ", ".join(m.name for m in self.attributors)
        return f"TouchpointPaths(lookback_days={self.lookback_days}, persons={len(self.paths)}, models=[{names}])"
