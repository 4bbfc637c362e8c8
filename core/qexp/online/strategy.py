"""Online strategies (``qlib/workflow/online/strategy.py``): which tasks to train at each routine and which
models to put online."""
from __future__ import annotations

import copy
import logging
from typing import Any, Callable

import pandas as pd

from ..data_api import get_provider
from ..ens.group import RollingGroup
from ..recorder import Recorder
from ..task.collect import Collector, RecorderCollector
from ..task.gen import RollingGen, task_generator
from ..task.utils import TimeAdjuster
from .utils import OnlineTool, OnlineToolR

logger = logging.getLogger("qexp.online")


class OnlineStrategy:
    """Decides the tasks and online models of one experiment (``name_id``) for an :class:`OnlineManager`."""

    def __init__(self, name_id: str):
        self.name_id = name_id
        self.tool: OnlineTool = OnlineTool()

    def prepare_tasks(self, cur_time: Any, **kwargs: Any) -> list[dict]:
        """New tasks to train at ``cur_time``."""
        raise NotImplementedError("Please implement the `prepare_tasks` method.")

    def prepare_online_models(self, trained_models: list, cur_time: Any = None) -> list:
        """Put ``trained_models`` online (all of them); with none, keep the current online models."""
        if not trained_models:
            return self.tool.online_models()
        self.tool.reset_online_tag(trained_models)
        return trained_models

    def first_tasks(self) -> list[dict]:
        """The tasks to train at the start."""
        raise NotImplementedError("Please implement the `first_tasks` method.")

    def get_collector(self) -> Collector:
        """A collector of this strategy's results."""
        raise NotImplementedError("Please implement the `get_collector` method.")


class RollingStrategy(OnlineStrategy):
    """The latest rolling models are online; every ``rolling_gen.step`` trading days new windows are trained.
    The experiment is named ``name_id``."""

    def __init__(self, name_id: str, task_template: dict | list[dict], rolling_gen: RollingGen):
        super().__init__(name_id=name_id)
        self.exp_name = self.name_id
        self.task_template = task_template if isinstance(task_template, list) else [task_template]
        self.rg = rolling_gen
        self.tool = OnlineToolR(self.exp_name)
        self.ta = TimeAdjuster()

    def get_collector(self, process_list: list | None = None, rec_key_func: Callable | None = None,
                      rec_filter_func: Callable | None = None, artifacts_key: Any = None) -> RecorderCollector:
        """Collects ``pred`` keyed by (model class, test segment), merged per model by :class:`RollingGroup`."""

        def rec_key(recorder: Recorder) -> tuple:
            task = recorder.load_object("task")
            return task["model"]["class"], task["dataset"]["kwargs"]["segments"]["test"]

        return RecorderCollector(experiment=self.exp_name,
                                 process_list=[RollingGroup()] if process_list is None else process_list,
                                 rec_key_func=rec_key if rec_key_func is None else rec_key_func,
                                 rec_filter_func=rec_filter_func, artifacts_key=artifacts_key)

    def first_tasks(self) -> list[dict]:
        """The rolling tasks of every template."""
        return task_generator(tasks=self.task_template, generators=self.rg)

    def prepare_tasks(self, cur_time: Any, **kwargs: Any) -> list[dict]:
        """New windows once ``step`` trading days have passed since the latest online test start."""
        latest, max_test = self._list_latest(self.tool.online_models())
        if max_test is None:
            logger.warning("No latest online recorders, no new tasks.")
            return []
        latest_day = get_provider().calendar(end_time=cur_time)[-1] if cur_time is None else pd.Timestamp(cur_time)
        interval = self.ta.cal_interval(latest_day, max_test[0])
        logger.info("%s trading days from the last rolling test start %s to %s; the step is %d", interval,
                    max_test[0], latest_day, self.rg.step)
        if interval < self.rg.step:
            return []
        old_tasks, tasks = [], []
        for rec in latest:
            task = rec.load_object("task")
            old_tasks.append(copy.deepcopy(task))
            test_begin = task["dataset"]["kwargs"]["segments"]["test"][0]
            task["dataset"]["kwargs"]["segments"]["test"] = (test_begin, latest_day)
            tasks.append(task)
        return [t for t in task_generator(tasks, self.rg) if t not in old_tasks]

    def _list_latest(self, rec_list: list[Recorder]) -> tuple[list[Recorder], Any]:
        """The runs with the latest test segment, and that segment."""
        if not rec_list:
            return rec_list, None
        tests = [(rec, rec.load_object("task")["dataset"]["kwargs"]["segments"]["test"]) for rec in rec_list]
        max_test = max((t for _, t in tests), key=_seg_key)
        return [rec for rec, t in tests if t == max_test], max_test


def _seg_key(seg: tuple) -> tuple:
    # an open end (None) sorts after every date
    return tuple((1, pd.Timestamp.max) if x is None else (0, pd.Timestamp(x)) for x in seg)
