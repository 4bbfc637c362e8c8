"""``OnlineManager`` (``qlib/workflow/online/manager.py``): run online strategies routine by routine, keep the
history of which models were online when, prepare trading signals, and simulate it all over past days.

With a delayed trainer, a simulation only records tasks day by day and fits everything at the end
(``delay_prepare``), so the fits can run in parallel on the trainer's executor.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import pandas as pd

from ..data_api import get_provider
from ..ens.ensemble import AverageEnsemble
from ..progress import bar
from ..task.collect import MergeCollector, Pickled
from ..task.subproc import portable, unportable
from ..trainer import Trainer, TrainerR
from .strategy import OnlineStrategy

logger = logging.getLogger("qexp.online")


class OnlineManager(Pickled):
    """Manages the online models of one or more :class:`OnlineStrategy` (``begin_time``: the last trading
    day by default; ``trainer``: a :class:`TrainerR` by default)."""

    STATUS_SIMULATING = "simulating"
    STATUS_ONLINE = "online"

    def __init__(self, strategies: OnlineStrategy | list[OnlineStrategy], trainer: Trainer | None = None,
                 begin_time: Any = None, freq: str = "day"):
        self.strategies = strategies if isinstance(strategies, list) else [strategies]
        self.freq = freq
        if begin_time is None:
            begin_time = get_provider().calendar(freq=self.freq).max()
        self.begin_time = pd.Timestamp(begin_time)
        self.cur_time = self.begin_time
        # {time: {strategy: online models}}: which models served at each routine
        self.history: dict[pd.Timestamp, dict[OnlineStrategy, list]] = {}
        self.trainer = trainer if trainer is not None else TrainerR()
        self.signals: pd.Series | pd.DataFrame | None = None
        self.status = self.STATUS_ONLINE

    def __getstate__(self) -> dict:
        # the runs in the history travel as references (Recorders do not pickle)
        state = dict(self.__dict__)
        state["history"] = {t: {s: portable(list(models)) for s, models in sm.items()} for t, sm in self.history.items()}
        return state

    def __setstate__(self, state: dict) -> None:
        state["history"] = {t: {s: unportable(models) for s, models in sm.items()}
                            for t, sm in state.get("history", {}).items()}
        self.__dict__.update(state)

    def _postpone_action(self) -> bool:
        """Whether ``end_train`` and ``prepare_signals`` wait for the end (simulating with a delayed trainer)."""
        return self.status == self.STATUS_SIMULATING and self.trainer.is_delay()

    def first_train(self, strategies: list[OnlineStrategy] | None = None, model_kwargs: dict | None = None) -> None:
        """Train every strategy's first tasks and put its chosen models online."""
        strategies = self.strategies if strategies is None else strategies
        models_list = []
        for strategy in strategies:
            logger.info("Strategy `%s` begins first training...", strategy.name_id)
            models = self.trainer.train(strategy.first_tasks(), experiment_name=strategy.name_id)
            models_list.append(models)
            logger.info("Finished training %d models.", len(models))
            online = strategy.prepare_online_models(models, **(model_kwargs or {}))
            self.history.setdefault(self.cur_time, {})[strategy] = online
        if not self._postpone_action():
            for strategy, models in zip(strategies, models_list):
                self.trainer.end_train(models, experiment_name=strategy.name_id)

    def routine(self, cur_time: Any = None, task_kwargs: dict | None = None, model_kwargs: dict | None = None,
                signal_kwargs: dict | None = None) -> None:
        """One routine at ``cur_time`` (the last trading day by default): prepare and train new tasks, choose
        the online models, update their predictions (online only), then prepare signals."""
        if cur_time is None:
            cur_time = get_provider().calendar(freq=self.freq).max()
        self.cur_time = pd.Timestamp(cur_time)
        models_list = []
        for strategy in self.strategies:
            logger.info("Strategy `%s` begins routine...", strategy.name_id)
            tasks = strategy.prepare_tasks(self.cur_time, **(task_kwargs or {}))
            models = self.trainer.train(tasks, experiment_name=strategy.name_id)
            models_list.append(models)
            logger.info("Finished training %d models.", len(models))
            online = strategy.prepare_online_models(models, **(model_kwargs or {}))
            self.history.setdefault(self.cur_time, {})[strategy] = online
            # the online models may have changed above, so their predictions are updated last
            if self.status == self.STATUS_ONLINE:
                strategy.tool.update_online_pred()
        if not self._postpone_action():
            for strategy, models in zip(self.strategies, models_list):
                self.trainer.end_train(models, experiment_name=strategy.name_id)
            self.prepare_signals(**(signal_kwargs or {}))

    def get_collector(self, **kwargs: Any) -> MergeCollector:
        """A collector merging every strategy's collector (keys ``(name_id, key)``)."""
        return MergeCollector({s.name_id: s.get_collector(**kwargs) for s in self.strategies}, process_list=[])

    def add_strategy(self, strategies: OnlineStrategy | list[OnlineStrategy]) -> None:
        """Add strategies (their first tasks are trained now)."""
        strategies = strategies if isinstance(strategies, list) else [strategies]
        self.first_train(strategies)
        self.strategies.extend(strategies)

    def prepare_signals(self, prepare_func: Callable | None = None, over_write: bool = False) -> Any:
        """Signals from the collected results (``AverageEnsemble()`` by default); new ones are appended after
        the last date of the old ones unless ``over_write``. Returns the new signals."""
        prepare_func = AverageEnsemble() if prepare_func is None else prepare_func
        signals = prepare_func(self.get_collector()())
        old = self.signals
        if old is not None and not over_write:
            old_max = old.index.get_level_values("datetime").max()
            new = signals.loc[old_max:]
            signals = pd.concat([old, new], axis=0)
        else:
            new = signals
        logger.info("Finished preparing new %d signals.", len(new))
        self.signals = signals
        return new

    def get_signals(self) -> pd.Series | pd.DataFrame | None:
        """The prepared signals."""
        return self.signals

    def simulate(self, end_time: Any = None, frequency: str = "day", task_kwargs: dict | None = None,
                 model_kwargs: dict | None = None, signal_kwargs: dict | None = None) -> Any:
        """Run a routine on every trading day from the current time to ``end_time`` (first training
        included) and return the signals."""
        self.status = self.STATUS_SIMULATING
        try:
            cal = get_provider().calendar(start_time=self.cur_time, end_time=end_time, freq=frequency)
            self.first_train()
            for cur_time in bar(cal, desc="simulate", unit="day"):
                logger.debug("Simulating at %s......", cur_time)
                self.routine(cur_time, task_kwargs=task_kwargs, model_kwargs=model_kwargs,
                             signal_kwargs=signal_kwargs)
            if self._postpone_action():
                self.delay_prepare(model_kwargs=model_kwargs, signal_kwargs=signal_kwargs)
            logger.info("Finished preparing signals")
        finally:
            self.status = self.STATUS_ONLINE
        return self.get_signals()

    def delay_prepare(self, model_kwargs: dict | None = None, signal_kwargs: dict | None = None) -> None:
        """Fit the models recorded during a delayed simulation, in history order, putting each routine's models
        online and preparing the signals as it goes."""
        last_models: dict[OnlineStrategy, set] = {}
        signals_time = get_provider().calendar()[0]
        need_prepare = False
        for cur_time, strategy_models in self.history.items():
            self.cur_time = cur_time
            for strategy, models in strategy_models.items():
                if last_models.setdefault(strategy, set()) != set(models):
                    models = self.trainer.end_train(models, experiment_name=strategy.name_id, **(model_kwargs or {}))
                    strategy.tool.reset_online_tag(models)
                    need_prepare = True
                last_models[strategy] = set(models)
            if need_prepare:
                self.prepare_signals(**(signal_kwargs or {}))
                if signals_time > cur_time:
                    logger.warning("The signals are already prepared up to %s, but the current time is only %s: "
                                   "online models that predict further than they should can contaminate them.",
                                   signals_time, cur_time)
                need_prepare = False
                signals_time = self.signals.index.get_level_values("datetime").max()  # type: ignore[union-attr]
