from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_market(tmp_path_factory):
    """A small synthetic market (60 stocks, 2016-2019), generated once for the workflow tests."""
    from qexp_data.synth import SynthParams, write_synth
    dst = tmp_path_factory.mktemp("market") / "synth"
    write_synth(dst, SynthParams(instruments=60, start="2016-01-01", end="2019-12-31", seed=7))
    return dst


# the example configs' dates moved onto the small market, and the model made quick
SMALL = [
    "data_handler_config.start_time=2016-01-01", "data_handler_config.end_time=2019-12-31",
    "data_handler_config.fit_start_time=2016-01-01", "data_handler_config.fit_end_time=2017-12-31",
    "task.dataset.kwargs.handler.kwargs.start_time=2016-01-01",
    "task.dataset.kwargs.handler.kwargs.end_time=2019-12-31",
    "task.dataset.kwargs.handler.kwargs.fit_start_time=2016-01-01",
    "task.dataset.kwargs.handler.kwargs.fit_end_time=2017-12-31",
    "task.dataset.kwargs.segments.train=[2016-01-01, 2017-12-31]",
    "task.dataset.kwargs.segments.valid=[2018-01-01, 2018-12-31]",
    "task.dataset.kwargs.segments.test=[2019-01-01, 2019-12-31]",
    "task.record.2.kwargs.config.backtest.start_time=2019-01-01",
    "task.record.2.kwargs.config.backtest.end_time=2019-12-31",
    "task.record.2.kwargs.config.strategy.kwargs.topk=10",
    "task.record.2.kwargs.config.strategy.kwargs.n_drop=2",
]
