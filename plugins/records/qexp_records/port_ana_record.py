"""``PortAnaRecord``: backtest the saved predictions and analyse the portfolio (Qlib's record of that name)."""
from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from qexp import ConfigError, QexpError

from .backtest.engine import backtest, upgrade_backtest_config
from .backtest.exchange import region_defaults
from .backtest.signal import to_score_series
from .evaluate import indicator_analysis, normalize_freq, risk_analysis
from .record_temp import ACRecordTemp, SignalRecord

logger = logging.getLogger("qexp.records")

__all__ = ["PortAnaRecord", "default_port_analysis_config", "BENCHMARK_TAG"]

_DEFAULT_EXECUTOR = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                     "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}}


def default_port_analysis_config(region: str | None = None) -> dict[str, Any]:
    """Qlib's default PortAnaRecord config: TopkDropout(50, 5) on ``<PRED>``, 1e8 cash, CSI300 benchmark,
    9.5% limits, close prices, 5/15 bp costs with a minimum of 5.

    For region ``us`` the limit is off and the benchmark is ``^gspc`` (Qlib's US examples), since US stocks
    have no daily price limit and there is no SH000300 there; region ``tw`` trades 1,000-share lots within 10%
    limits (Qlib's REG_TW) and has no default benchmark (returns are absolute unless the config names one). ``limit_threshold`` and ``deal_price`` given
    to ``qexp.init`` replace the region's (``trade_unit`` too, through the exchange).
    """
    if region is None:
        from qexp.ext import get_region
        region = get_region()
    defaults = region_defaults(region)
    return {
        "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                     "kwargs": {"signal": "<PRED>", "topk": 50, "n_drop": 5}},
        "backtest": {"start_time": None, "end_time": None, "account": 100000000,
                     "benchmark": {"us": "^gspc", "tw": None}.get(region, "SH000300"),
                     "exchange_kwargs": {"limit_threshold": defaults["limit_threshold"],
                                         "deal_price": defaults["deal_price"],
                                         "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5}},
    }


BENCHMARK_TAG = "portfolio_analysis.benchmark"
"""Tag PortAnaRecord sets: the benchmark it used, or ``none`` (then the excess-return metrics are absolute)."""


def _benchmark_text(bench: Any) -> str:
    if bench is None:
        return "none"
    if isinstance(bench, str):
        return bench
    if isinstance(bench, (list, tuple)):
        return ", ".join(map(str, bench))
    return f"a {type(bench).__name__} of returns"


def _freq_list(value: Any, default: list[str], what: str, available: list[str]) -> list[str]:
    if value is None:
        return list(default)
    items = [value] if isinstance(value, str) else list(value)
    out = [normalize_freq(v) for v in items]
    unknown = [f for f in out if f not in available]
    if unknown:
        raise ConfigError(f"PortAnaRecord {what} {unknown} has no portfolio report; the executor reports "
                          f"{available}")
    return out


def _current_form(config: Any) -> tuple[dict, list[str]]:
    """``config`` checked and in the current form, with notices of what Qlib's pre-0.8 form changed: exchange
    settings at the top of ``backtest`` move to ``exchange_kwargs``, ``verbose`` goes, and a
    TopkDropoutStrategy without a signal (that form gave the backtest the predictions) trades on ``<PRED>``."""
    if config is None:
        return default_port_analysis_config(), []
    if not isinstance(config, dict) or "strategy" not in config:
        raise ConfigError("PortAnaRecord config needs a 'strategy' entry, e.g. {'strategy': {'class': "
                          "'TopkDropoutStrategy', 'module_path': 'qlib.contrib.strategy', 'kwargs': "
                          "{'signal': '<PRED>', 'topk': 50, 'n_drop': 5}}, 'backtest': {...}}")
    unknown = sorted(set(config) - {"strategy", "executor", "backtest"})
    if unknown:
        raise ConfigError(f"PortAnaRecord config has unknown key(s) {unknown}; use strategy, executor, backtest")
    out = dict(config)
    backtest_config, notices = upgrade_backtest_config(dict(config.get("backtest") or {}),
                                                       "PortAnaRecord config backtest")
    out["backtest"] = backtest_config
    strategy = config["strategy"]
    if (isinstance(strategy, dict) and str(strategy.get("class", "")).rpartition(".")[2] == "TopkDropoutStrategy"
            and "signal" not in (strategy.get("kwargs") or {})):
        out["strategy"] = {**strategy, "kwargs": {**(strategy.get("kwargs") or {}), "signal": "<PRED>"}}
        notices.append("PortAnaRecord config strategy has no signal (Qlib's pre-0.8 form, where the backtest got "
                       "the predictions): it trades on <PRED>")
    return out, notices


class PortAnaRecord(ACRecordTemp):
    """Backtest ``pred.pkl`` with the strategy, executor and exchange of ``config`` (Qlib's shape, with
    ``"<PRED>"`` standing for the predictions) and save the report, positions, risk and indicator analyses.

    Metrics: ``1day.excess_return_{without,with}_cost.{mean,std,annualized_return,information_ratio,
    max_drawdown}`` and ``1day.{ffr,pa,pos}``. A picture ``report_1day.png`` is saved unless ``plot=False``.
    """

    artifact_path = "portfolio_analysis"
    depend_cls = SignalRecord
    depend_artifacts = ("pred.pkl",)   # the backtest needs no label

    def __init__(self, recorder: Any = None, config: dict | None = None, risk_analysis_freq: Any = None,
                 indicator_analysis_freq: Any = None, indicator_analysis_method: str | None = None,
                 skip_existing: bool = False, plot: bool = True):
        # no **kwargs (unlike Qlib's signature): a misspelt argument is a TypeError naming it, and task_train's
        # model/dataset try_kwargs are filtered out instead of swallowed
        super().__init__(recorder=recorder, skip_existing=skip_existing)
        from qexp.ext import deepcopy_basic_type
        config = default_port_analysis_config() if config is None else deepcopy_basic_type(config)
        config, notices = _current_form(config)
        for notice in notices:
            logger.info("%s", notice)
        self.strategy_config = config["strategy"]
        self.executor_config = config.get("executor", deepcopy_basic_type(_DEFAULT_EXECUTOR))
        self.backtest_config = dict(config.get("backtest") or {})
        self.all_freq = self._report_freqs()
        self.risk_analysis_freq = _freq_list(risk_analysis_freq, self.all_freq[:1], "risk_analysis_freq",
                                             self.all_freq)
        self.indicator_analysis_freq = _freq_list(indicator_analysis_freq, self.all_freq[:1],
                                                  "indicator_analysis_freq", self.all_freq)
        self.indicator_analysis_method = indicator_analysis_method
        self.plot = plot

    @classmethod
    def dry_run_problems(cls, kwargs: dict) -> list[str]:
        """For ``qexp run --dry-run``: what in ``config`` would stop the record (an unknown backtest key)."""
        try:
            _current_form(kwargs.get("config"))
        except ConfigError as exc:
            return [str(exc)]
        return []

    @classmethod
    def dry_run_warnings(cls, kwargs: dict) -> list[str]:
        """For ``qexp run --dry-run``: how Qlib's older config form is read."""
        try:
            return _current_form(kwargs.get("config"))[1]
        except ConfigError:
            return []  # reported by dry_run_problems

    def _report_freqs(self) -> list[str]:
        ec = self.executor_config
        if isinstance(ec, dict):
            kw = ec.get("kwargs") or {}
            freq, metrics = kw.get("time_per_step", "day"), kw.get("generate_portfolio_metrics", False)
        else:
            freq, metrics = getattr(ec, "time_per_step", "day"), getattr(ec, "generate_portfolio_metrics", False)
        if not metrics:
            raise ConfigError("PortAnaRecord needs an executor with generate_portfolio_metrics=True (there is no "
                              "report to analyse otherwise)")
        return [normalize_freq(freq)]

    def _generate(self, **kwargs: Any) -> dict[str, Any]:
        from qexp.ext import deepcopy_basic_type, fill_placeholder
        pred = self.load("pred.pkl")
        try:
            scores = to_score_series(pred, "pred.pkl")
        except QexpError as exc:
            raise QexpError(f"PortAnaRecord cannot backtest recorder {self.recorder.id}: {exc}") from None
        if scores.empty:
            raise QexpError(f"PortAnaRecord: pred.pkl of recorder {self.recorder.id} has no rows to backtest")
        # fill a fresh copy each time, so generate() can run again on new predictions
        strategy = fill_placeholder(deepcopy_basic_type(self.strategy_config), {"<PRED>": pred})
        executor = fill_placeholder(deepcopy_basic_type(self.executor_config), {"<PRED>": pred})
        bt = dict(self.backtest_config)
        dates = pd.DatetimeIndex(scores.index.get_level_values("datetime"))
        if bt.get("start_time") is None:
            bt["start_time"] = dates.min()
        if bt.get("end_time") is None:
            bt["end_time"] = self._shift_back_one_day(dates.max(), bt.get("quote"))
        portfolio, indicators = backtest(strategy=strategy, executor=executor, **bt)
        # without a benchmark the "excess" return is the absolute return: the report and picture say so
        has_benchmark = bt.get("benchmark", "SH000300") is not None
        self.recorder.set_tags(**{BENCHMARK_TAG: _benchmark_text(bt.get("benchmark", "SH000300"))})

        artifacts: dict[str, Any] = {}
        for freq, (report, positions) in portfolio.items():
            artifacts[f"report_normal_{freq}.pkl"] = report
            artifacts[f"positions_normal_{freq}.pkl"] = positions
            if self.plot:
                from .plots import report_figure_png
                self.recorder.log_bytes(report_figure_png(report, f"Portfolio ({freq})", benchmark=has_benchmark),
                                        self.get_path(f"report_{freq}.png"))
        for freq, (ind, orders) in indicators.items():
            artifacts[f"indicators_normal_{freq}.pkl"] = ind
            artifacts[f"orders_normal_{freq}.pkl"] = orders
        for freq in self.risk_analysis_freq:
            report, _ = portfolio[freq]
            analysis = {
                "excess_return_without_cost": risk_analysis(report["return"] - report["bench"], freq=freq),
                "excess_return_with_cost": risk_analysis(report["return"] - report["bench"] - report["cost"],
                                                         freq=freq),
            }
            analysis_df = pd.concat(analysis)
            metrics = {f"{freq}.{kind}.{name}": float(v) for (kind, name), v in analysis_df["risk"].items()}
            self.recorder.log_metrics(**metrics)
            artifacts[f"port_analysis_{freq}.pkl"] = analysis_df
            logger.info("PortAnaRecord %s risk analysis:\n%s", freq, analysis_df["risk"].unstack())
        for freq in self.indicator_analysis_freq:
            ind, _ = indicators[freq]
            method = self.indicator_analysis_method or "mean"
            ana = indicator_analysis(ind, method=method)
            self.recorder.log_metrics(**{f"{freq}.{k}": float(v) for k, v in ana["value"].items()})
            artifacts[f"indicator_analysis_{freq}.pkl"] = ana
        return artifacts

    @staticmethod
    def _shift_back_one_day(last: pd.Timestamp, quote: Any) -> pd.Timestamp:
        """The trading day before ``last`` (Qlib ends the default backtest one day before the last prediction)."""
        from .backtest.market import make_source
        cal = make_source(quote).calendar()
        pos = int(cal.searchsorted(last, side="left"))
        if pos == 0:
            raise QexpError(f"the predictions end on {last.date()}, before the data calendar starts "
                            f"({cal[0].date()}); there is nothing to backtest")
        logger.warning("PortAnaRecord: end_time is not set; using %s, the trading day before the last prediction "
                       "date %s", cal[pos - 1].date(), last.date())
        return cal[pos - 1]

    def list(self) -> list[str]:
        out = []
        for freq in getattr(self, "all_freq", ["1day"]):
            out += [f"report_normal_{freq}.pkl", f"positions_normal_{freq}.pkl"]
        for freq in getattr(self, "risk_analysis_freq", ["1day"]):
            out.append(f"port_analysis_{freq}.pkl")
        for freq in getattr(self, "indicator_analysis_freq", ["1day"]):
            out.append(f"indicator_analysis_{freq}.pkl")
        return out
