"""Customer value: RFM segments, BG/NBD x Gamma-Gamma lifetime value, and high-value detection.

Pure models, no transport. Modules:

* :mod:`models.value.summary`: :class:`CustomerSummary`, a person's orders in a few numbers;
* :mod:`models.value.bgnbd` and :mod:`models.value.gamma_gamma`: the population models (parameters, fits
  by maximum likelihood, per-customer forecasts), validated on CDNOW against the published fits;
* :mod:`models.value.rfm`: :class:`RFMScorer`, quintile scores on running quantiles, and the segments;
* :mod:`models.value.clv`: :class:`CustomerValueModel`, which learns from orders one at a time, refits
  now and then and emits :class:`schemas.value.CustomerValue`;
* :mod:`models.value.high_value`: :class:`HighValueDetector`, which turns values into one
  :class:`schemas.value.HighValueAlert` per crossing into the top share.

Per order event: ``model.learn_one(order)``, then ``value = model.predict_one({"person_id": pid})``
(write it to ``customer_value``), then ``alert = detector.process_one(value)`` (publish it if not None).
After a refit (automatic every ``refit_every`` orders; ``model.n_fits`` changes), ``model.values()``
re-scores everyone, and ``detector.rescore(values)`` returns the alerts of people the refit moved up.
An erasure request calls ``forget_one(person_id)`` on both.

Partitioning: summaries are per person, but the fitted parameters, the RFM cut points and the top-share
threshold are statistics of the whole customer base, so one model per partition would make the numbers
depend on how many workers there are. Feed the value agent from a single-partition topic of orders (orders
are a few percent of sessions), or keep the summaries in a person-keyed table and fit in one place,
broadcasting the parameters.

>>> from datetime import datetime, UTC
>>> model, detector = CustomerValueModel(), HighValueDetector(min_customers=1)
>>> model.learn_one({"person_id": "p1", "at": datetime(2026, 11, 1, tzinfo=UTC), "revenue": 60.0})
>>> value = model.predict_one({"person_id": "p1"})
>>> value.segment, detector.process_one(value).person_id
('need_attention', 'p1')
"""

from models.value.clv import CustomerValueModel, OrderEvent, ValueQuery
from models.value.fitting import FitError
from models.value.high_value import HighValueDetector
from models.value.rfm import RFMScore, RFMScorer, segment
from models.value.summary import CustomerSummary

__all__ = [
    "CustomerSummary",
    "CustomerValueModel",
    "FitError",
    "HighValueDetector",
    "OrderEvent",
    "RFMScore",
    "RFMScorer",
    "ValueQuery",
    "segment",
]
