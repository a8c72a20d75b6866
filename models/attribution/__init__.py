"""Multi-touch attribution: touchpoint paths per person, and the credits of nine models on each conversion.

Pure models, no transport. Modules:

* :mod:`models.attribution.base`: :class:`Touch` and the :class:`AttributionModel` contract (a model returns
  per-touch weights; it never sees money);
* :mod:`models.attribution.money`: integer cents and the largest-remainder split that makes every model's
  credits add up to the revenue exactly;
* :mod:`models.attribution.heuristics`: first touch, last touch, last non-direct, linear, time decay,
  position based;
* :mod:`models.attribution.markov`: :class:`MarkovAttribution`, removal effects of an order-k absorbing
  Markov chain learned online from converting and non-converting paths, solved exactly;
* :mod:`models.attribution.shapley`: :class:`ShapleyAttribution`, exact Shapley values of channels in the
  game of observed conversion rates of channel sets;
* :mod:`models.attribution.incremental`: :class:`IncrementalAttribution`, removal effects of channels in an
  online logistic model of conversion per session, with the rest of each conversion credited to the
  pseudo-channel ``baseline`` (revenue the model expects without the path's channels);
* :mod:`models.attribution.paths`: :class:`TouchpointPaths`, the per-person store with the lookback window
  that feeds the learned models and emits :class:`schemas.attribution.AttributionCredit` rows.

Per session: ``paths.add(person_id, Touch(...))``; per order: ``paths.convert(person_id, conversion_id=...,
revenue=..., currency=..., at=...)`` (publish and write the credits); now and then: ``paths.expire(now)``;
on an identity merge: ``paths.merge(src, dst)``; on erasure: ``paths.forget(person_id)``. State:
``pickle`` or ``to_json``/``from_json``.

>>> from datetime import datetime, UTC
>>> paths = TouchpointPaths()
>>> paths.add("p1", Touch(channel="email", campaign="bf", at=datetime(2026, 11, 1, tzinfo=UTC), session_id="s1"))
>>> credits = paths.convert("p1", conversion_id="o1", revenue=19.99, currency="USD",
...                         at=datetime(2026, 11, 1, 0, 5, tzinfo=UTC))
>>> sorted({(c.model, c.channel, c.credit) for c in credits if c.model.endswith("touch")})
[('first_touch', 'email', 19.99), ('last_touch', 'email', 19.99)]
"""

from models.attribution.base import (
    AttributionModel,
    BaselineAttributionModel,
    SessionLearner,
    Touch,
    spread_by_channel,
)
from models.attribution.heuristics import FirstTouch, LastNonDirect, LastTouch, Linear, PositionBased, TimeDecay
from models.attribution.incremental import IncrementalAttribution
from models.attribution.markov import MarkovAttribution
from models.attribution.money import AttributionError, from_cents, split_cents, to_cents
from models.attribution.paths import MODEL_CLASSES, Conversion, TouchpointPaths, default_models
from models.attribution.shapley import ShapleyAttribution

__all__ = [
    "MODEL_CLASSES",
    "AttributionError",
    "AttributionModel",
    "BaselineAttributionModel",
    "Conversion",
    "FirstTouch",
    "IncrementalAttribution",
    "LastNonDirect",
    "LastTouch",
    "Linear",
    "MarkovAttribution",
    "PositionBased",
    "SessionLearner",
    "ShapleyAttribution",
    "TimeDecay",
    "Touch",
    "TouchpointPaths",
    "default_models",
    "from_cents",
    "split_cents",
    "spread_by_channel",
    "to_cents",
]
