"""What the benchmark-config tests (``test_benchmark_yamls_*``) share: ``qexp run`` in this process, the
``--uri``/``--set`` arguments of a run on the tiny synthetic market, and the one finished run it leaves.

Their fixtures (``tiny_market``, ``shared_cache``) are in conftest.py."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from click.testing import CliRunner

import qexp
from qexp import R
from qexp.cli.main import get_cli

HEADLINE = ("IC", "Rank IC", "1day.excess_return_with_cost.annualized_return")
"""Metrics every benchmark run on the tiny market logs, each finite."""


def run_cli(*args: str) -> Any:
    """``qexp run ARGS`` in this process (exceptions propagate)."""
    return CliRunner().invoke(get_cli(), ["run", *args], catch_exceptions=False)


def market_args(store: Path, market: Path, sets: Iterable[str] = ()) -> list[str]:
    """``--uri STORE``, the tiny market as the provider, and ``--set`` for each of ``sets``."""
    args = ["--uri", str(store), "--set", f"qlib_init.provider_uri={market}"]
    for s in sets:
        args += ["--set", s]
    return args


def finished_run(store: Path) -> Any:
    """The recorder of the store's only run, which finished."""
    qexp.init(uri=str(store))
    runs = R.search_records()
    assert runs["status"].tolist() == ["FINISHED"]
    return R.get_recorder(recorder_id=runs["run_id"].iloc[0])


def assert_headline_metrics(metrics: dict[str, float]) -> None:
    for key in HEADLINE:
        assert math.isfinite(metrics[key]), key
