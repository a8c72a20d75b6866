"""Customer value on simulated traffic against its ground truth, and the CDNOW parameters against FHL 2005.

    python -m benchmarks.value --json benchmarks/results/value.json
    python -m benchmarks.value --seed 1 2 3 4   # means over seeds, see below

Simulator traffic (``--users`` people, ``--days`` of calibration, then ``--holdout-days`` that are never
rendered as events, ``--seed``) gives the orders of the period and, per person, the purchases and spend of
the holdout. Every order of the period, in time order and keyed by the simulator's true person id (identity
resolution is another issue), goes through ``CustomerValueModel.learn_one`` with its automatic refits, then
``predict_one`` and ``HighValueDetector.process_one``, as the value agent will; at the end of the period the
model refits once more and forecasts every customer's holdout purchases and revenue (``horizon_days`` =
holdout days). BG/NBD (the default) and MBG/NBD (``prior=MBG_PRIOR``) are both run. Reported:

* ``top_decile_precision``: of the predicted top 10% of the calibration cohort (people with an order in
  the period) by holdout revenue, the share that is in the true top 10%; also for the detector's flagged
  set, a baseline ranking by spend so far, and two oracles that know each person's latent purchase rate,
  dropout probability and mean spend: ``oracle_history`` also sees the observed history (the Bayes-optimal
  ranking without peeking: P(alive | last purchase) x expected purchases x mean spend), ``oracle_alive``
  also knows who has already dropped out. They bound what any model of purchase history can reach on this
  realised, Poisson-noisy future. ``top_decile_revenue_captured``: the true holdout revenue of the
  predicted top decile over that of the true top decile. ``latent_top_decile_precision``: against the top
  decile of ``oracle_history`` instead of the realised future (who is high-value rather than who happened
  to buy);
* ``component_precision``: which half of the forecast loses precision against ``oracle_history``. The
  model's expected revenue is expected purchases x expected order value; each half is swapped in turn for
  the oracle's (P(alive | last purchase) x expected purchases, and mean spend): ``oracle_purchases_x_model_spend``
  is what a perfect purchase forecast would reach with the model's spend estimate, and
  ``model_purchases_x_oracle_spend`` what a perfect spend estimate would reach with the model's purchase
  forecast; ``*_only`` rank by one half alone. The half whose swap gains most is where precision is lost.
  ``history_purchases_x_model_spend`` swaps in :func:`history_ceiling`'s purchase forecast instead: how much
  of the purchase half's loss any function of the order history ``(x, t_x, T)`` could win back;
* predicted vs true total holdout purchases and revenue of the cohort;
* the fitted parameters next to the simulator's generative ones (its purchase rate is a session-level
  propensity, so the realised rate is not ``lambda``; see ``models/simulator/customers.py``);
* the CDNOW fits (``tests/data/cdnow_summary.csv``) and their relative errors against the published values;
* ``cdnow_holdout``: the same target on real data. ``tests/data/cdnow_transactions.txt`` is cut at the end of
  FHL's 39-week calibration period (which reproduces the summary above), BG/NBD and Gamma-Gamma are fitted
  on the calibration weeks, and the predicted top decile of weeks 40-78's spend is compared with the true
  one, next to rankings by spend and by repeat purchases so far. On these data the published model reaches
  a precision of 0.51 (66% of the true top decile's revenue), spend so far 0.47: a top decile of the next
  39 weeks' spend is mostly decided by who happens to buy, here as on the simulator;
* time per order (``learn_one`` + ``predict_one`` + ``process_one``), per final refit and per scoring pass.

With several ``--seed`` values, ``simulated`` is the first seed's report and ``across_seeds`` the mean and
per-seed values of the headline figures: on ~2,400 customers the top decile is ~240 people, so one seed's
precision has a binomial standard error of ~0.03 and differs by more than that between seeds.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from benchmarks import figures_json
from models.simulator import SimulationConfig, simulate
from models.value import CustomerValueModel, HighValueDetector
from models.value.bgnbd import BgNbdParams
from models.value.clv import DEFAULT_PRIOR, MBG_PRIOR
from models.value.gamma_gamma import GammaGammaParams
from models.value.summary import DAY_MS

ROOT = Path(__file__).resolve().parent.parent
CDNOW = ROOT / "tests" / "data" / "cdnow_summary.csv"
CDNOW_TRANSACTIONS = ROOT / "tests" / "data" / "cdnow_transactions.txt"
CDNOW_START, CDNOW_CUT, CDNOW_END = date(1997, 1, 1), date(1997, 9, 30), date(1998, 6, 30)
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}
FloatArray = npt.NDArray[np.float64]


def cdnow() -> dict[str, Any]:
    data = np.genfromtxt(CDNOW, delimiter=",", names=True)
    start = time.perf_counter()
    bgnbd = BgNbdParams.fit(data["x"], data["t_x"], data["T"])
    spend = GammaGammaParams.fit(data["x"], data["zbar"])
    seconds = time.perf_counter() - start
    fitted = {"r": bgnbd.r, "alpha": bgnbd.alpha, "a": bgnbd.a, "b": bgnbd.b}
    fitted |= {"p": spend.p, "q": spend.q, "gamma": spend.gamma}
    published = PUBLISHED_BGNBD | PUBLISHED_GAMMA_GAMMA
    return {
        "customers": len(data),
        "fit_seconds": round(seconds, 3),
        "fitted": {k: round(v, 4) for k, v in fitted.items()},
        "published": published,
        "relative_error": {k: round(fitted[k] / v - 1.0, 5) for k, v in published.items()},
    }


@dataclass(frozen=True)
class CdnowSplit:
    """The CDNOW sample cut at the end of FHL's 39-week calibration period: one entry per customer.

    Orders on the same day are one purchase (as in the published summary); time is in weeks.
    """

    x: FloatArray  # repeat purchases in the calibration period
    t_x: FloatArray  # weeks from the first purchase to the last one in the calibration period
    T: FloatArray  # weeks from the first purchase to the cut
    zbar: FloatArray  # mean value of the repeat purchases (0 without any)
    calibration_spend: FloatArray
    holdout_purchases: FloatArray
    holdout_spend: FloatArray


def cdnow_split(path: Path = CDNOW_TRANSACTIONS) -> CdnowSplit:
    """Read the transaction file (customer, sample, yyyymmdd, CDs, USD per line) and cut it at ``CDNOW_CUT``."""
    days: defaultdict[str, defaultdict[date, float]] = defaultdict(lambda: defaultdict(float))
    for line in path.read_text().splitlines():
        customer, _, day, _, usd = line.split()
        days[customer][date(int(day[:4]), int(day[4:6]), int(day[6:]))] += float(usd)
    columns: dict[str, list[float]] = defaultdict(list)
    for purchases in days.values():
        calibration = sorted(d for d in purchases if d <= CDNOW_CUT)
        first, repeats = calibration[0], calibration[1:]
        holdout = [d for d in purchases if d > CDNOW_CUT]
        columns["x"].append(len(repeats))
        columns["t_x"].append((calibration[-1] - first).days / 7)
        columns["T"].append((CDNOW_CUT - first).days / 7)
        columns["zbar"].append(sum(purchases[d] for d in repeats) / len(repeats) if repeats else 0.0)
        columns["calibration_spend"].append(sum(purchases[d] for d in calibration))
        columns["holdout_purchases"].append(len(holdout))
        columns["holdout_spend"].append(sum(purchases[d] for d in holdout))
    return CdnowSplit(**{k: np.array(v) for k, v in columns.items()})


def cdnow_holdout() -> dict[str, Any]:
    """The top-decile target on real data: fit on the 39 calibration weeks, rank, compare with weeks 40-78.

    The real-data counterpart of the simulator figures: how far the model the issue prescribes, and the
    usual baselines, get on the data its published parameters come from.
    """
    split = cdnow_split()
    bgnbd = BgNbdParams.fit(split.x, split.t_x, split.T)
    spend = GammaGammaParams.fit(split.x, split.zbar)
    weeks = (CDNOW_END - CDNOW_CUT).days / 7
    purchases = bgnbd.expected_purchases(weeks, split.x, split.t_x, split.T)
    revenue = purchases * spend.expected_order_value(split.x, split.zbar)
    k = round(0.1 * len(split.x))

    def top(score: FloatArray) -> npt.NDArray[np.intp]:
        return np.argsort(-score, kind="stable")[:k]  # ties: file order, so the figure is deterministic

    true = top(split.holdout_spend)
    rankings = {
        "bgnbd_x_gamma_gamma": revenue,
        "bgnbd_purchases_only": purchases,
        "spend_so_far": split.calibration_spend,
        "repeat_purchases_so_far": split.x,
    }
    return {
        "customers": len(split.x),
        "holdout_weeks": round(weeks, 2),
        "holdout_buyers": int(np.count_nonzero(split.holdout_purchases)),
        "fitted": {"r": bgnbd.r, "alpha": bgnbd.alpha, "a": bgnbd.a, "b": bgnbd.b},
        "holdout_purchases": {
            "true": int(split.holdout_purchases.sum()),
            "predicted": round(float(purchases.sum()), 1),
            "relative_error": round(float(purchases.sum() / split.holdout_purchases.sum() - 1), 4),
        },
        "top_decile": {
            name: {
                "precision": round(len(set(top(score)) & set(true)) / k, 4),
                "revenue_captured": round(
                    float(split.holdout_spend[top(score)].sum() / split.holdout_spend[true].sum()), 4
                ),
            }
            for name, score in rankings.items()
        },
    }


def top_k(scores: dict[str, float], k: int) -> set[str]:
    # Ties broken by person id, so that the figure is deterministic.
    return {pid for pid, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]}


def expected_purchases_alive(person: dict[str, Any], days: float) -> float:
    """Purchases in ``days`` of a live customer with rate lambda and dropout p after each purchase.

    E[min(N(t), Geometric)] = sum_k (1-p)^(k-1) P(N(t) >= k) = (1 - exp(-lambda p t)) / p.
    """
    rate, p = person["purchase_rate"], person["dropout_prob"]
    return float(-math.expm1(-rate * p * days) / p)


def p_alive_given(person: dict[str, Any], silent_days: float) -> float:
    """P(alive | latent lambda and p, no purchase in the ``silent_days`` since the last one)."""
    rate, p = person["purchase_rate"], person["dropout_prob"]
    survived = (1.0 - p) * math.exp(-rate * silent_days)
    return float(survived / (survived + p))


def history_ceiling(history: FloatArray, target: FloatArray, *, folds: int = 5, seed: int = 0) -> FloatArray:
    """Out-of-fold estimate of ``E[target | history]`` by gradient-boosted trees (XGBoost), ``folds``-fold.

    With ``history`` = each customer's ``(x, t_x, T, T - t_x)`` and ``target`` = the oracle's expected
    purchases, this is a flexible, assumption-free purchase forecast trained on the latent truth that no
    deployed model has: what order history can say about future purchases, estimated without BG/NBD's
    assumptions. Cross-fitting keeps each customer's own target out of their forecast.
    """
    fold = np.random.default_rng(seed).integers(0, folds, len(target))
    forecast = np.zeros(len(target))
    params = {"max_depth": 3, "eta": 0.05, "objective": "reg:squarederror", "nthread": 1, "seed": seed}
    for f in range(folds):
        train, test = fold != f, fold == f
        booster = xgb.train(params, xgb.DMatrix(history[train], label=target[train]), num_boost_round=200)
        forecast[test] = booster.predict(xgb.DMatrix(history[test]))
    return forecast


def precision(scores: dict[str, float], truth: set[str], k: int) -> float:
    return round(len(top_k(scores, k) & truth) / k, 4)


def run_model(
    name: str, prior: BgNbdParams, orders: list[dict[str, Any]], truth: dict[str, Any], holdout_days: int
) -> tuple[dict[str, Any], dict[str, tuple[float, float]], set[str]]:
    """Stream the orders through one model and detector; the report, each customer's (expected purchases,
    expected revenue) at the end of the period, and the detector's flagged set."""
    period_end = datetime.fromisoformat(truth["period"]["end"])
    model = CustomerValueModel(horizon_days=float(holdout_days), fx_rates=truth["fx_rates_per_usd"], prior=prior)
    detector = HighValueDetector()
    alerts = 0
    start = time.perf_counter()
    for order in orders:
        model.learn_one(
            {
                "person_id": order["person_id"],
                "at": datetime.fromisoformat(order["session_started_at"]),
                "revenue": order["revenue"],
                "currency": order["currency"],
                "order_id": order["order_id"],
            }
        )
        alerts += detector.process_one(model.predict_one({"person_id": order["person_id"]})) is not None
    stream_seconds = time.perf_counter() - start
    model.advance_to(period_end)
    start = time.perf_counter()
    fitted = model.refit()
    refit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    values = {v.person_id: v for v in model.values()}
    score_seconds = time.perf_counter() - start
    alerts += len(detector.rescore(values.values()))
    customers = truth["customers"]
    true_purchases = sum(customers[pid]["holdout_purchases"] for pid in values)
    predicted_purchases = sum(v.expected_purchases for v in values.values())
    true_revenue = sum(customers[pid]["holdout_revenue_usd"] for pid in values)
    predicted_revenue = sum(v.expected_revenue for v in values.values())
    alive = np.array([customers[pid]["alive_at_end"] for pid in values], dtype=np.float64)
    p_alive = np.array([v.p_alive for v in values.values()])
    p, g = model.params, model.spend_params
    report = {
        "model": name,
        "final_fit": fitted,
        "model_version": model.model_version,
        "skipped_orders": model.skipped,
        "alerts": alerts,
        "flagged_at_end": len(detector.above),
        "holdout_purchases": {
            "true": true_purchases,
            "predicted": round(predicted_purchases, 1),
            "relative_error": round(predicted_purchases / max(true_purchases, 1) - 1.0, 4),
        },
        "holdout_revenue_usd": {
            "true": round(true_revenue, 2),
            "predicted": round(predicted_revenue, 2),
            "relative_error": round(predicted_revenue / max(true_revenue, 1e-9) - 1.0, 4),
        },
        "p_alive": {
            "mean_predicted": round(float(p_alive.mean()), 4),
            "share_truly_alive": round(float(alive.mean()), 4),
            "brier": round(float(np.mean((p_alive - alive) ** 2)), 4),
        },
        "fitted_per_day": {"r": p.r, "alpha": p.alpha, "a": p.a, "b": p.b, "p": g.p, "q": g.q, "gamma": g.gamma},
        "seconds": {
            "stream": round(stream_seconds, 3),
            "per_order_us": round(stream_seconds / max(len(orders), 1) * 1e6, 1),
            "final_refit": round(refit_seconds, 3),
            "score_all": round(score_seconds, 3),
        },
    }
    forecasts = {pid: (v.expected_purchases, v.expected_revenue) for pid, v in values.items()}
    return report, forecasts, set(detector.above)


def simulated(users: int, days: int, holdout_days: int, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    truth = simulate(SimulationConfig(users=users, days=days, holdout_days=holdout_days, seed=seed)).truth()
    simulate_seconds = time.perf_counter() - start
    orders = sorted(truth["orders"], key=lambda o: (o["session_started_at"], o["order_id"]))
    customers, persons = truth["customers"], truth["persons"]
    end_ms = datetime.fromisoformat(truth["period"]["end"]).timestamp() * 1000
    first_ms: dict[str, float] = {}
    last_ms: dict[str, float] = {}
    n_orders: dict[str, int] = {}
    for order in orders:
        pid, at_ms = order["person_id"], datetime.fromisoformat(order["session_started_at"]).timestamp() * 1000
        first_ms.setdefault(pid, at_ms)
        last_ms[pid] = at_ms
        n_orders[pid] = n_orders.get(pid, 0) + 1
    cohort = sorted(last_ms)
    k = max(1, math.ceil(0.1 * len(cohort)))
    realised = {pid: customers[pid]["holdout_revenue_usd"] for pid in cohort}
    true_top = top_k(realised, k)
    oracle_purchases = {
        pid: p_alive_given(persons[pid], (end_ms - last_ms[pid]) / DAY_MS)
        * expected_purchases_alive(persons[pid], holdout_days)
        for pid in cohort
    }
    rankings: dict[str, dict[str, float]] = {
        "spend_so_far": {pid: customers[pid]["revenue_usd"] for pid in cohort},
        "oracle_history": {pid: oracle_purchases[pid] * persons[pid]["mean_spend"] for pid in cohort},
        "oracle_alive": {
            pid: customers[pid]["alive_at_end"]
            * expected_purchases_alive(persons[pid], holdout_days)
            * persons[pid]["mean_spend"]
            for pid in cohort
        },
    }
    latent_top = top_k(rankings["oracle_history"], k)
    history = np.array(
        [
            (n_orders[pid] - 1, last_ms[pid] - first_ms[pid], end_ms - first_ms[pid], end_ms - last_ms[pid])
            for pid in cohort
        ],
        dtype=np.float64,
    ) / np.array([1.0, DAY_MS, DAY_MS, DAY_MS])
    ceiling = history_ceiling(history, np.array([oracle_purchases[pid] for pid in cohort]), seed=seed)
    history_purchases = dict(zip(cohort, ceiling.tolist(), strict=True))
    models: dict[str, Any] = {}
    for name, prior in (("bgnbd", DEFAULT_PRIOR), ("mbgnbd", MBG_PRIOR)):
        report, forecasts, flagged = run_model(name, prior, orders, truth, holdout_days)
        scores = {pid: forecasts[pid][1] for pid in cohort}
        purchases = {pid: forecasts[pid][0] for pid in cohort}
        spend = {pid: forecasts[pid][1] / forecasts[pid][0] if forecasts[pid][0] > 0 else 0.0 for pid in cohort}
        report["component_precision"] = {
            "oracle_purchases_x_model_spend": precision(
                {pid: oracle_purchases[pid] * spend[pid] for pid in cohort}, true_top, k
            ),
            "history_purchases_x_model_spend": precision(
                {pid: history_purchases[pid] * spend[pid] for pid in cohort}, true_top, k
            ),
            "model_purchases_x_oracle_spend": precision(
                {pid: purchases[pid] * persons[pid]["mean_spend"] for pid in cohort}, true_top, k
            ),
            "oracle_purchases_only": precision(oracle_purchases, true_top, k),
            "model_purchases_only": precision(purchases, true_top, k),
            "oracle_spend_only": precision({pid: persons[pid]["mean_spend"] for pid in cohort}, true_top, k),
            "model_spend_only": precision(spend, true_top, k),
        }
        flagged &= set(cohort)
        report["top_decile_precision"] = precision(scores, true_top, k)
        report["detector_flagged_precision"] = round(len(flagged & true_top) / max(len(flagged), 1), 4)
        report["latent_top_decile_precision"] = precision(scores, latent_top, k)
        report["top_decile_revenue_captured"] = round(
            sum(realised[p] for p in top_k(scores, k)) / sum(realised[p] for p in true_top), 4
        )
        models[name] = report
    cfg = truth["config"]
    return {
        "config": {"users": users, "days": days, "holdout_days": holdout_days, "seed": seed},
        "orders": len(orders),
        "cohort_customers": len(cohort),
        "cohort_repeat_customers": sum(1 for pid in cohort if customers[pid]["purchases"] > 1),
        "cohort_with_holdout_purchase": sum(1 for pid in cohort if customers[pid]["holdout_purchases"] > 0),
        "top_decile_size": k,
        "baselines": {
            name: {
                "top_decile_precision": precision(scores, true_top, k),
                "latent_top_decile_precision": precision(scores, latent_top, k),
                "top_decile_revenue_captured": round(
                    sum(realised[p] for p in top_k(scores, k)) / sum(realised[p] for p in true_top), 4
                ),
            }
            for name, scores in rankings.items()
        },
        "models": models,
        "generative_per_day": {
            "r": cfg["purchase_rate_shape"],
            "alpha": cfg["purchase_rate_rate"],
            "a": cfg["dropout_a"],
            "b": cfg["dropout_b"],
            "p": cfg["spend_shape"],
            "q": cfg["spend_q"],
            "gamma": cfg["spend_gamma"],
        },
        "simulate_seconds": round(simulate_seconds, 2),
    }


def across_seeds(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and per-seed values of the headline figures of several :func:`simulated` runs."""
    paths: list[tuple[str, ...]] = [("baselines", name, "top_decile_precision") for name in runs[0]["baselines"]]
    paths += [("baselines", name, "latent_top_decile_precision") for name in runs[0]["baselines"]]
    for name, report in runs[0]["models"].items():
        paths += [("models", name, key) for key in ("top_decile_precision", "detector_flagged_precision")]
        paths += [("models", name, "latent_top_decile_precision")]
        paths += [("models", name, "component_precision", key) for key in report["component_precision"]]
        paths += [("models", name, "holdout_purchases", "relative_error")]
        paths += [("models", name, "holdout_revenue_usd", "relative_error")]
        paths += [("models", name, "seconds", "per_order_us")]
    summary = {}
    for path in paths:
        values = []
        for run in runs:
            node: Any = run
            for key in path:
                node = node[key]
            values.append(node)
        summary[".".join(path)] = {"mean": round(float(np.mean(values)), 4), "per_seed": values}
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=12000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--holdout-days", type=int, default=365)
    parser.add_argument("--seed", type=int, nargs="+", default=[1], help="one or more seeds")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.value", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "cdnow": cdnow(),
        "cdnow_holdout": cdnow_holdout(),
    }
    runs = [simulated(args.users, args.days, args.holdout_days, seed) for seed in args.seed]
    result["simulated"] = runs[0]
    if len(runs) > 1:
        result["across_seeds"] = across_seeds(runs)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    print(figures_json(result, args.json), end="")
    return result


if __name__ == "__main__":
    main()
