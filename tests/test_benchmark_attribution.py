"""The attribution benchmark's intervals: pairs the posterior is sure of are checked against the truth."""

from __future__ import annotations

from datetime import datetime

from benchmarks.attribution import share_intervals
from models.attribution import IncrementalAttribution, Touch, TouchpointPaths
from tests.models.test_attribution_incremental import T0, touch
from tests.models.test_attribution_incremental import simulate as sessions

CHANNELS = ("email", "display", "paid_search")


def trained() -> tuple[IncrementalAttribution, list[tuple[tuple[Touch, ...], int, datetime]]]:
    model = IncrementalAttribution(refit_every=1)
    sessions(TouchpointPaths(models=[model]), seed=6, persons=1500, lift={"email": 1.2, "paid_search": 0.4})
    model.refit()
    converting: list[tuple[tuple[Touch, ...], int, datetime]] = [
        ((touch(c, 0, "a"),), 5000, T0) for c in CHANNELS for _ in range(50)
    ]  # 50 orders a channel
    return model, converting


def test_a_pair_the_posterior_is_sure_of_in_the_wrong_order_is_reported() -> None:
    model, converting = trained()
    right = share_intervals(
        model, converting, {"email": 3.0, "display": 0.0, "paid_search": 1.0}, CHANNELS, draws=100, seed=0
    )
    assert right["resolved_misordered"] == []
    assert right["pairs_resolved_95"] >= 2  # email above both: a lift of 1.2 against 0.4 and 0
    low, high = right["interval_90_pct"]["email"]
    assert 0 < low < high < 100
    wrong = share_intervals(
        model, converting, {"email": 0.0, "display": 3.0, "paid_search": 1.0}, CHANNELS, draws=100, seed=0
    )
    assert {w["pair"] for w in wrong["resolved_misordered"]} >= {"email > display"}
    assert wrong["truth_inside_90"] < right["truth_inside_90"]
