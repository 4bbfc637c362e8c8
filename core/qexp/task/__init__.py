"""Qlib's task layer on qexp (``qlib.workflow.task``): generators, the durable task queue, collectors.

    from qexp.task import RollingGen, task_generator, TaskManager, run_task
    tasks = task_generator(task, RollingGen(step=20, rtype=RollingGen.ROLL_SD))

Names, signatures and semantics follow Qlib 0.9.7; the queue runs on a task store chosen by URI
(``sqlite:///PATH`` by default, ``postgresql://...`` for many machines) instead of MongoDB.
"""
from __future__ import annotations

from .collect import Collector, MergeCollector, RecorderCollector
from .gen import MultiHorizonGenBase, RollingGen, TaskGen, handler_mod, task_generator, trunc_segments
from .manage import TaskManager, run_task
from .utils import TimeAdjuster, list_recorders, replace_task_handler_with_cache

__all__ = [
    "task_generator", "TaskGen", "RollingGen", "MultiHorizonGenBase", "handler_mod", "trunc_segments",
    "TimeAdjuster", "list_recorders", "replace_task_handler_with_cache",
    "TaskManager", "run_task",
    "Collector", "MergeCollector", "RecorderCollector",
]
