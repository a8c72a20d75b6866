"""Scoring: windowed features per device, purchase propensity online, the XGBoost challenger.

Pure models, no transport. Modules:

* :mod:`models.scoring.features`: :class:`DeviceFeatures`, the per-device state whose ``update(row)``
  returns the feature snapshot every scoring model reads (keys: :data:`NUMERIC_FEATURES` and one-hot
  ``channel=<channel>``/``device=<device_type>``);
* :mod:`models.scoring.propensity`: :class:`PropensityModel`, online logistic regression on the snapshot
  (River's scaler and AdaGrad regression, computed on NumPy vectors);
* :mod:`models.scoring.propensity_learner`: :class:`PropensityLearner`, the delayed-label stage: scores
  events, labels sessions on order or after 30 minutes of inactivity in event time, learns from pre-order
  snapshots, evaluates, emits :class:`schemas.scores.SessionRecord` rows;
* :mod:`models.scoring.prequential`: :class:`PrequentialEvaluator` (ROC AUC, log loss, calibration per
  model over rolling windows -> :class:`schemas.scores.ModelMetric` rows);
* :mod:`models.scoring.challenger`: :func:`train_challenger` / :class:`Challenger` (XGBoost, batch
  scoring) and :class:`Champion` (selection on recent log loss, deterministic A/B split).

Per event, in a device-keyed stage (the worker scores a poll batch; the challenger is optional)::

    snapshots = [devices[r.device_key].update(r) for r in rows]       # reassign the table entries
    xgb = challenger.predict_batch(snapshots) if challenger else [None] * len(rows)
    for row, snap, p in zip(rows, snapshots, xgb):
        published = learner.observe(row, snap, bot=is_bot, challenger=p,
                                    challenger_version=challenger.model_version)
        # published -> schemas.scores.Score (scored_at and latency_ms are the caller's wall clock)
    for done in learner.expire(max_event_time):  # done.record -> ClickHouse ``sessions``
        ...
    learner.drain_metrics()                       # -> ClickHouse ``model_metrics``

>>> from dataclasses import replace
>>> from schemas.records import EXAMPLE_ROW
>>> device, learner = DeviceFeatures(), PropensityLearner()
>>> row = replace(EXAMPLE_ROW, type="page", event="Home", order_id="", revenue=None)
>>> published = learner.observe(row, device.update(row))
>>> published.model, 0.0 < published.score < 1.0
('propensity_online', True)
"""

from models.scoring.challenger import CHALLENGER, ONLINE, ArmOutcome, Challenger, Champion, train_challenger
from models.scoring.features import NUMERIC_FEATURES, DeviceFeatures
from models.scoring.prequential import CalibrationBin, PrequentialEvaluator, calibration, roc_auc
from models.scoring.propensity import PropensityModel, design
from models.scoring.propensity_learner import FinishedSession, PropensityLearner, Published

__all__ = [
    "CHALLENGER",
    "NUMERIC_FEATURES",
    "ONLINE",
    "ArmOutcome",
    "CalibrationBin",
    "Challenger",
    "Champion",
    "DeviceFeatures",
    "FinishedSession",
    "PrequentialEvaluator",
    "PropensityLearner",
    "PropensityModel",
    "Published",
    "calibration",
    "design",
    "roc_auc",
    "train_challenger",
]
