"""``MultiPassPortAnaRecord``: several backtests of the same predictions from different random starting
portfolios, and the mean and spread of their results (Qlib's record of that name).

Each pass shuffles the scores of the first prediction day the backtest trades on, among that day's
instruments, so the first portfolio is a random one; the strategy then follows the real scores. Spread
across passes shows how much a result owes to the starting portfolio.

Written, as Qlib names them: the artifact ``portfolio_analysis/multi_pass_port_analysis_<freq>.pkl`` (index
``(excess_return_without_cost|excess_return_with_cost, annualized_return|information_ratio)``, columns
``mean``, ``std`` (ddof 1), ``mean_std`` = mean / std) and the metrics
``mean|std|mean_std.excess_return_{without,with}_cost.{annualized_return,information_ratio}``. Each pass's
PortAnaRecord metrics (``1day.excess_return_with_cost.annualized_return``, ...) are logged too, with
``step`` = pass number (Qlib logs them at one step, so only the last pass's remain); per-pass reports and
pictures are not kept, as in Qlib.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from qexp import ConfigError

from .port_ana_record import PortAnaRecord

logger = logging.getLogger("qexp.records")

__all__ = ["MultiPassPortAnaRecord"]

KEPT_METRICS = ["annualized_return", "information_ratio"]


class MultiPassPortAnaRecord(PortAnaRecord):
    """Run PortAnaRecord's backtest ``pass_num`` times and record the mean and std of its risk analysis.

    Args:
        pass_num: the number of backtests.
        shuffle_init_score: shuffle the first backtest day's scores in each pass (without it every pass is
            the same backtest and the std is 0).
        seed: seeds the shuffles (an int makes the passes reproducible); None draws from numpy's global
            generator, as Qlib does.
        config, risk_analysis_freq, indicator_analysis_freq, indicator_analysis_method, skip_existing: as
            PortAnaRecord. The strategy config must be a dict whose kwargs have a ``signal``.
    """

    def __init__(self, recorder: Any = None, pass_num: int = 10, shuffle_init_score: bool = True,
                 seed: int | None = None, config: dict | None = None, risk_analysis_freq: Any = None,
                 indicator_analysis_freq: Any = None, indicator_analysis_method: str | None = None,
                 skip_existing: bool = False):
        if isinstance(pass_num, bool) or not isinstance(pass_num, (int, np.integer)) or pass_num < 1:
            raise ConfigError(f"MultiPassPortAnaRecord: pass_num must be an integer >= 1, got {pass_num!r}")
        super().__init__(recorder=recorder, config=config, risk_analysis_freq=risk_analysis_freq,
                         indicator_analysis_freq=indicator_analysis_freq,
                         indicator_analysis_method=indicator_analysis_method, skip_existing=skip_existing,
                         plot=False)
        if not isinstance(self.strategy_config, dict) or "signal" not in (self.strategy_config.get("kwargs") or {}):
            raise ConfigError("MultiPassPortAnaRecord needs the strategy as a config dict whose kwargs have a signal "
                              "(e.g. signal: <PRED>), so each pass can replace it with shuffled scores")
        self.pass_num = int(pass_num)
        self.shuffle_init_score = bool(shuffle_init_score)
        self.seed = seed
        from qexp.ext import deepcopy_basic_type
        self.original_strategy = deepcopy_basic_type(self.strategy_config)

    def random_init(self, rng: np.random.Generator) -> None:
        """Use pred.pkl with the first backtest day's scores shuffled as this pass's strategy signal."""
        from qexp.ext import deepcopy_basic_type
        pred = self.load("pred.pkl")
        pred = pred.copy() if isinstance(pred, (pd.DataFrame, pd.Series)) else pred
        dates = pd.DatetimeIndex(pred.index.get_level_values("datetime"))
        start = self.backtest_config.get("start_time")
        first = dates[dates >= pd.Timestamp(start)].min() if start is not None else dates.min()
        rows = np.flatnonzero(dates == first)
        values = pred.to_numpy(copy=True)
        values[rows] = values[rng.permutation(rows)]  # whole rows: every score column moves together
        shuffled = (pd.DataFrame(values, index=pred.index, columns=pred.columns) if isinstance(pred, pd.DataFrame)
                    else pd.Series(values, index=pred.index, name=pred.name))
        self.strategy_config = deepcopy_basic_type(self.original_strategy)
        self.strategy_config["kwargs"]["signal"] = shuffled

    def _generate(self, **kwargs: Any) -> dict[str, Any]:
        seed = self.seed if self.seed is not None else int(np.random.randint(0, 2**31 - 1))
        rng = np.random.default_rng(seed)
        per_freq: dict[str, list[pd.DataFrame]] = {f: [] for f in self.risk_analysis_freq}
        real = self.recorder
        from qexp.ext import bar
        for i in bar(range(self.pass_num), desc="backtest passes"):
            if self.shuffle_init_score:
                self.random_init(rng)
            self._recorder = _PassRecorder(real, step=i)
            try:
                artifacts = super()._generate(**kwargs)
            finally:
                self._recorder = real
            for freq in self.risk_analysis_freq:
                per_freq[freq].append(artifacts[f"port_analysis_{freq}.pkl"]["risk"])
            logger.info("MultiPassPortAnaRecord: pass %d/%d done", i + 1, self.pass_num)
        self.strategy_config = self.original_strategy
        out: dict[str, Any] = {}
        for freq, runs in per_freq.items():
            table = pd.concat(runs, axis=1)
            summary = pd.DataFrame({"mean": table.mean(axis=1), "std": table.std(axis=1, ddof=1)})
            summary["mean_std"] = summary["mean"] / summary["std"]
            summary = summary.loc[(slice(None), KEPT_METRICS), :]
            out[f"multi_pass_port_analysis_{freq}.pkl"] = summary
            metrics = {f"{stat}.{kind}.{name}": float(v)
                       for stat in ("mean", "std", "mean_std") for (kind, name), v in summary[stat].items()}
            self.recorder.log_metrics(**metrics)
            logger.info("MultiPassPortAnaRecord %s over %d passes (seed %s):\n%s", freq, self.pass_num, seed, summary)
        return out

    def list(self) -> list[str]:
        return [f"multi_pass_port_analysis_{freq}.pkl" for freq in getattr(self, "risk_analysis_freq", ["1day"])]


class _PassRecorder:
    """The run's recorder for one pass: metrics get the pass number as their step, pictures are skipped."""

    def __init__(self, recorder: Any, step: int):
        self._rec = recorder
        self._step = step

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        self._rec.log_metrics(step=self._step, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rec, name)
