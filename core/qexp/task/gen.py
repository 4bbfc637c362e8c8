"""Task generators (``qlib/workflow/task/gen.py``): many tasks from one template.

``RollingGen`` gives exactly Qlib 0.9.7's segments on the same calendar (first and last task included,
expanding and sliding, ``trunc_days``, an open test end). Beyond Qlib: ``roll_fit_window=True`` moves the
processors' fit window with the train window (Qlib keeps them fit on the first window, its issue #1620).
"""
from __future__ import annotations

import abc
import copy
from typing import Any, Callable, Iterator

import pandas as pd

from ..exceptions import ConfigError
from .utils import TimeAdjuster, transform_end_date


def task_generator(tasks: dict | list[dict], generators: TaskGen | list[TaskGen]) -> list[dict]:
    """Apply each generator to every task in turn: 3 templates, a generator making 2 and one making 3 give
    3 x 2 x 3 = 18 tasks."""
    if isinstance(tasks, dict):
        tasks = [tasks]
    if isinstance(generators, TaskGen):
        generators = [generators]
    for gen in generators:
        tasks = [new for task in tasks for new in gen.generate(task)]
    return list(tasks)


class TaskGen(metaclass=abc.ABCMeta):
    """Turns one task template into a list of tasks; calling it is :meth:`generate`."""

    @abc.abstractmethod
    def generate(self, task: dict) -> list[dict]:
        """The tasks made from ``task``."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict]:
        return self.generate(*args, **kwargs)


def handler_mod(task: dict, rolling_gen: RollingGen) -> None:
    """Extend the handler's ``end_time`` to the test end when it ends earlier (Qlib's default
    ``ds_extra_mod_func``). Tasks without a handler dict (a shared or pickled handler) are left alone."""
    try:
        kwargs = task["dataset"]["kwargs"]["handler"]["kwargs"]
        test_end = task["dataset"]["kwargs"]["segments"][rolling_gen.test_key][1]
        if rolling_gen.ta.cal_interval(kwargs["end_time"], test_end) < 0:
            kwargs["end_time"] = copy.deepcopy(test_end)
    except (KeyError, TypeError):
        # no handler config, a string handler, or an open end (None): nothing to extend, as in Qlib
        pass


def trunc_segments(ta: TimeAdjuster, segments: dict, days: int, test_key: str = "test") -> None:
    """Clip every non-test segment (in place) to end ``days`` trading days before the test starts."""
    test_start = min(t for t in segments[test_key] if t is not None)
    for key in list(segments):
        if key != test_key:
            segments[key] = ta.truncate(segments[key], test_start, days)


def _segments_of(task: dict, test_key: str) -> dict:
    try:
        segments = task["dataset"]["kwargs"]["segments"]
    except (KeyError, TypeError):
        raise ConfigError("task.dataset.kwargs.segments: missing; a rolling task needs its segments, e.g. "
                          "{train: [2015-01-01, 2018-12-31], valid: [...], test: [2020-01-01, 2020-12-31]}") from None
    if not isinstance(segments, dict) or test_key not in segments:
        raise ConfigError(f"task.dataset.kwargs.segments.{test_key}: missing; RollingGen rolls the "
                          f"'{test_key}' segment (segments has {list(segments) if isinstance(segments, dict) else segments!r})")
    return segments


class RollingGen(TaskGen):
    """Rolling tasks: the first test segment is ``step`` trading days from the template's test start; each
    next task moves every segment ``step`` days later (``ROLL_EX``: the train segment only grows), until the
    test start passes the template's test end (its last trading day when None)."""

    ROLL_EX = TimeAdjuster.SHIFT_EX  # the train start stays, its end moves
    ROLL_SD = TimeAdjuster.SHIFT_SD  # every segment slides

    def __init__(self, step: int = 40, rtype: str = ROLL_EX, ds_extra_mod_func: Callable | None = handler_mod,
                 test_key: str = "test", train_key: str = "train", trunc_days: int | None = None,
                 task_copy_func: Callable = copy.deepcopy, roll_fit_window: bool = False):
        if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
            raise ConfigError(f"RollingGen: step must be a positive whole number of trading days, got {step!r}")
        if rtype not in (self.ROLL_EX, self.ROLL_SD):
            raise ConfigError(f"RollingGen: rtype must be '{self.ROLL_EX}' or '{self.ROLL_SD}', got {rtype!r}")
        if trunc_days is not None and (not isinstance(trunc_days, int) or trunc_days < 0):
            raise ConfigError(f"RollingGen: trunc_days must be a non-negative number of trading days, got {trunc_days!r}")
        self.step = step
        self.rtype = rtype
        self.ds_extra_mod_func = ds_extra_mod_func
        self.test_key = test_key
        self.train_key = train_key
        self.trunc_days = trunc_days
        self.task_copy_func = task_copy_func
        self.roll_fit_window = roll_fit_window
        self.ta = TimeAdjuster(future=True)

    def _update_task_segs(self, task: dict, segs: dict) -> None:
        task["dataset"]["kwargs"]["segments"] = copy.deepcopy(segs)
        if self.ds_extra_mod_func is not None:
            self.ds_extra_mod_func(task, self)
        if self.roll_fit_window:
            self._move_fit_window(task, segs)

    def _move_fit_window(self, task: dict, segs: dict) -> None:
        handler = task["dataset"]["kwargs"].get("handler")
        if not isinstance(handler, dict):
            raise ConfigError("RollingGen(roll_fit_window=True): task.dataset.kwargs.handler must be a handler "
                              f"config (a dict) to move its fit window, got {type(handler).__name__}")
        start, end = segs[self.train_key]
        kwargs = handler.setdefault("kwargs", {})
        kwargs["fit_start_time"], kwargs["fit_end_time"] = start, end

    def gen_following_tasks(self, task: dict, test_end: Any) -> Iterator[dict]:
        """The tasks after ``task`` (itself excluded) up to the one whose test segment holds ``test_end``."""
        test_end = pd.Timestamp(test_end)
        prev = task["dataset"]["kwargs"]["segments"]
        while True:
            segments = {}
            try:
                for key, seg in prev.items():
                    rtype = self.ta.SHIFT_EX if key == self.train_key and self.rtype == self.ROLL_EX \
                        else self.ta.SHIFT_SD
                    segments[key] = self.ta.shift(seg, step=self.step, rtype=rtype)
            except KeyError:  # the start left the calendar: no more windows
                return
            # a start exactly one past the last day comes back as None (Qlib then fails on None > date)
            test_start = segments[self.test_key][0]
            if test_start is None or test_start > test_end:
                return
            prev = segments
            t = self.task_copy_func(task)
            self._update_task_segs(t, segments)
            yield t

    def generate(self, task: dict) -> list[dict]:
        """The rolling tasks of ``task`` (segments at ``task["dataset"]["kwargs"]["segments"]``)."""
        raw = _segments_of(task, self.test_key)
        _check_in_calendar(self.ta, raw, self.test_key)
        t = self.task_copy_func(task)
        segments: dict = copy.deepcopy(self.ta.align_seg(t["dataset"]["kwargs"]["segments"]))  # type: ignore[arg-type]
        test_end = transform_end_date(segments[self.test_key][1])
        start_idx = self.ta.align_idx(segments[self.test_key][0])
        if start_idx is None:
            raise ConfigError(f"task.dataset.kwargs.segments.{self.test_key}: the test segment needs a start date")
        segments[self.test_key] = (self.ta.get(start_idx), self.ta.get(start_idx + self.step - 1))
        if self.trunc_days is not None:
            trunc_segments(self.ta, segments, self.trunc_days, self.test_key)
        self._update_task_segs(t, segments)
        return [t, *self.gen_following_tasks(t, test_end)]


def _check_in_calendar(ta: TimeAdjuster, segments: dict, test_key: str) -> None:
    """A clear error for a segment Qlib would misalign (after the last day) or silently wrap (ending before
    the first day aligns to the last day there)."""
    if not ta._days:
        raise ConfigError("the data provider's calendar is empty; RollingGen needs trading days")
    first, last = ta._days[0], ta._days[-1]
    for key, seg in segments.items():
        where = f"task.dataset.kwargs.segments.{key}"
        if not isinstance(seg, (list, tuple)) or len(seg) != 2:
            raise ConfigError(f"{where}: must be [start, end], got {seg!r}")
        try:
            start = None if seg[0] is None else pd.Timestamp(seg[0])
            end = None if seg[1] is None else pd.Timestamp(seg[1])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: not a date: {exc}") from None
        if start is not None and start > last:
            raise ConfigError(f"{where}: starts {start.date()}, after the last trading day {last.date()} of the "
                              f"calendar{' (nothing to test)' if key == test_key else ''}")
        if end is not None and end < first:
            raise ConfigError(f"{where}: ends {end.date()}, before the first trading day {first.date()} of the "
                              f"calendar")


class MultiHorizonGenBase(TaskGen):
    """One task per prediction horizon; subclasses set the horizon in :meth:`set_horizon`, and the
    non-test segments are truncated by ``horizon + label_leak_n`` days."""

    def __init__(self, horizon: list[int] | None = None, label_leak_n: int = 2):
        self.horizon = list(horizon if horizon is not None else [5])
        self.label_leak_n = label_leak_n
        self.ta = TimeAdjuster()
        self.test_key = "test"

    @abc.abstractmethod
    def set_horizon(self, task: dict, hr: int) -> None:
        """Change ``task`` in place to predict ``hr`` days ahead."""

    def generate(self, task: dict) -> list[dict]:
        out = []
        for hr in self.horizon:
            t = copy.deepcopy(task)
            self.set_horizon(t, hr)
            segments = self.ta.align_seg(_segments_of(t, self.test_key))
            trunc_segments(self.ta, segments, days=hr + self.label_leak_n, test_key=self.test_key)  # type: ignore[arg-type]
            t["dataset"]["kwargs"]["segments"] = segments
            out.append(t)
        return out
