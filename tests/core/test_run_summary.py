"""`qexp run`'s closing table shows results, not the last point of a training curve or a sampled series."""
from __future__ import annotations

import pytest

from qexp.cli.run_cmd import _is_curve_metric


@pytest.mark.parametrize("key", ["l2.valid", "l2.train", "rmse.train", "RMSE.valid", "l2.valid.sub2", "train_loss",
                                 "valid_score", "loss.valid", "system/cpu_utilization_percentage"])
def test_curves_and_system_series_are_hidden(key: str) -> None:
    assert _is_curve_metric(key)


@pytest.mark.parametrize("key", ["IC", "ICIR", "Rank IC", "Rank ICIR", "1day.excess_return_with_cost.annualized_return",
                                 "1day.pa", "1day.ffr", "mean.excess_return_with_cost.information_ratio"])
def test_results_are_shown(key: str) -> None:
    assert not _is_curve_metric(key)
