"""Tools of the task layer (``qlib/workflow/task/utils.py``): the trading-calendar ``TimeAdjuster``,
``list_recorders``, date shifting, and handlers shared by many tasks.

``TimeAdjuster`` reads the calendar of the active data provider (``qexp.init(provider_uri=...)``), so its
alignments are the ones Qlib makes on the same calendar.
"""
from __future__ import annotations

import bisect
import copy
import hashlib
import json
import os
import pickle
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ..exceptions import ConfigError


def _calendar(future: bool = False, start_time: Any = None, end_time: Any = None,
              freq: str = "day") -> pd.DatetimeIndex:
    from ..data_api import get_provider
    return pd.DatetimeIndex(get_provider().calendar(start_time=start_time, end_time=end_time, freq=freq,
                                                    future=future))


class TimeAdjuster:
    """Find and move dates on the trading calendar.

    ``future=True`` uses the calendar with future days when the data has one (Qlib's ``day_future.txt``),
    else the plain one. ``calendar=`` gives the days directly (no provider needed).
    """

    SHIFT_SD = "sliding"
    SHIFT_EX = "expanding"

    def __init__(self, future: bool = True, end_time: Any = None, calendar: Sequence | None = None):
        self._future = future
        self._fixed = None if calendar is None else pd.DatetimeIndex(pd.to_datetime(list(calendar))).sort_values()
        self.set_end_time(end_time)

    def set_end_time(self, end_time: Any = None) -> None:
        """Use the calendar up to ``end_time`` (None: its last day)."""
        if self._fixed is not None:
            cals = self._fixed if end_time is None else self._fixed[self._fixed <= pd.Timestamp(end_time)]
        else:
            cals = _calendar(future=self._future, end_time=end_time)
        self.cals: pd.DatetimeIndex = cals
        # bisect on a plain list of Timestamps gives exactly Qlib's positions (it bisects a numpy array)
        self._days: list[pd.Timestamp] = list(cals)

    def get(self, idx: int | None) -> pd.Timestamp | None:
        """The day at ``idx``; None for None or past the end."""
        if idx is None or idx >= len(self._days):
            return None
        return self._days[idx]

    def max(self) -> pd.Timestamp:
        """The last day of the calendar."""
        return self._days[-1]

    def align_idx(self, time_point: Any, tp_type: str = "start") -> int | None:
        """The position of ``time_point``: the first day on or after it (``"start"``), or the last day on or
        before it (``"end"``). None stays None (an open bound)."""
        if time_point is None:
            return None
        tp = pd.Timestamp(time_point)
        if tp_type == "start":
            return bisect.bisect_left(self._days, tp)
        if tp_type == "end":
            return bisect.bisect_right(self._days, tp) - 1
        raise NotImplementedError(f"tp_type must be 'start' or 'end', got {tp_type!r}")

    def cal_interval(self, time_point_A: Any, time_point_B: Any) -> int:
        """Trading days from B to A (A - B)."""
        a, b = self.align_idx(time_point_A), self.align_idx(time_point_B)
        return a - b  # type: ignore[operator]  # None raises TypeError, as in Qlib (handler_mod relies on it)

    def align_time(self, time_point: Any, tp_type: str = "start") -> pd.Timestamp | None:
        """``time_point`` moved onto the calendar (see :meth:`align_idx`)."""
        if time_point is None:
            return None
        return self._days[self.align_idx(time_point, tp_type=tp_type)]  # type: ignore[index]

    def align_seg(self, segment: dict | tuple | list) -> dict | tuple:
        """Each ``(start, end)`` moved onto the calendar: start to the next trading day, end to the previous."""
        if isinstance(segment, dict):
            return {k: self.align_seg(seg) for k, seg in segment.items()}
        if isinstance(segment, (tuple, list)):
            return self.align_time(segment[0], tp_type="start"), self.align_time(segment[1], tp_type="end")
        raise NotImplementedError(f"a segment must be a (start, end) pair or a dict of them, got {segment!r}")

    def truncate(self, segment: tuple, test_start: Any, days: int) -> tuple:
        """``segment`` with both ends at most ``test_start - days`` trading days (to keep labels that look
        ``days`` ahead out of the test period). A segment starting on the calendar's first day is kept (Qlib
        asserts a position above 0 and stops there)."""
        if not isinstance(segment, (tuple, list)):
            raise NotImplementedError(f"a segment must be a (start, end) pair, got {segment!r}")
        test_idx = self.align_idx(test_start)
        if test_idx is None:
            raise ValueError("truncate needs a test start date")
        out = []
        for tp in segment:
            tp_idx = self.align_idx(tp)
            if tp_idx is None:
                raise ValueError(f"cannot truncate the open segment {tuple(segment)}")
            idx = min(tp_idx, test_idx - days)
            if idx < 0:
                raise ConfigError(f"truncating segment {tuple(segment)} by {days} trading days before the test "
                                  f"start {pd.Timestamp(test_start).date()} leaves nothing before the first day "
                                  f"of the calendar; move the segment later or lower trunc_days")
            out.append(self.get(idx))
        return tuple(out)

    def shift(self, seg: tuple, step: int, rtype: str = SHIFT_SD) -> tuple:
        """``seg`` moved ``step`` trading days later: both ends (``"sliding"``) or the end only
        (``"expanding"``). An open end stays open; an end past the calendar becomes None. A start past the
        calendar raises KeyError (the rolling stops there)."""
        if not isinstance(seg, (tuple, list)):
            raise NotImplementedError(f"a segment must be a (start, end) pair, got {seg!r}")
        start_idx, end_idx = self.align_idx(seg[0], tp_type="start"), self.align_idx(seg[1], tp_type="end")
        if rtype == self.SHIFT_SD:
            start_idx = None if start_idx is None else start_idx + step
            end_idx = None if end_idx is None else end_idx + step
        elif rtype == self.SHIFT_EX:
            end_idx = None if end_idx is None else end_idx + step
        else:
            raise NotImplementedError(f"rtype must be '{self.SHIFT_SD}' or '{self.SHIFT_EX}', got {rtype!r}")
        if start_idx is not None and start_idx > len(self._days):
            raise KeyError("The segment is out of valid calendar")
        return self.get(start_idx), self.get(end_idx)


def transform_end_date(end_date: Any = None, freq: str = "day") -> pd.Timestamp:
    """``end_date`` as a Timestamp, or the last trading day when it is None, ``-1`` or past the calendar."""
    last = _calendar(freq=freq)[-1]
    if end_date is None or str(end_date) == "-1" or pd.Timestamp(end_date) > last:
        return last
    return pd.Timestamp(end_date)


def get_date_by_shift(trading_date: Any, shift: int, future: bool = False, clip_shift: bool = True,
                      freq: str = "day", align: str | None = None) -> pd.Timestamp:
    """The trading day ``shift`` days after ``trading_date`` (before, when negative).

    ``align=None`` requires a trading day; ``"left"`` / ``"right"`` take the day on or before / after it.
    A shift past either end is clipped (``clip_shift``) or an IndexError.
    """
    cal = list(_calendar(future=future, freq=freq))
    day = pd.Timestamp(trading_date)
    if align is None:
        idx = bisect.bisect_left(cal, day)
        if idx >= len(cal) or cal[idx] != day:
            raise ValueError(f"{day} is not a trading day")
    elif align == "left":
        idx = bisect.bisect_right(cal, day) - 1
    elif align == "right":
        idx = bisect.bisect_left(cal, day)
    else:
        raise ValueError(f"align must be None, 'left' or 'right', got {align!r}")
    target = idx + shift
    if target < 0 or target >= len(cal):
        if not clip_shift:
            raise IndexError(f"shifting {day.date()} by {shift} trading days leaves the calendar")
        target = min(max(target, 0), len(cal) - 1)
    return cal[target]


def list_recorders(experiment: Any, rec_filter_func: Callable | None = None) -> dict:
    """``{run id: recorder}`` of an experiment (a name or an Experiment) that pass ``rec_filter_func``."""
    from ..api import R
    if isinstance(experiment, str):
        experiment = R.get_exp(experiment_name=experiment)
    recs = experiment.list_recorders()
    return {rid: rec for rid, rec in recs.items() if rec_filter_func is None or rec_filter_func(rec)}


# ---- handlers shared by many tasks ----------------------------------------------------------------
# A rolling run trains many tasks over one handler: its features are computed once, held here, and every
# task's dataset reads its own segments from the same object. Other processes load it once from the pickle.
# A handler is held only while its job needs it: the driver releases what it shared when the job ends
# (Rolling.run), and a worker drops a handler it loaded as soon as its pickle changes (the data was built
# again: it reloads) or disappears (the driver is done with it; a watcher thread notices within seconds, so a
# long-lived Dask worker does not keep it).
@dataclass
class _Held:
    handler: Any
    path: str | None = None             # the pickle it was loaded from (None: shared by this process)
    stamp: tuple[int, int] | None = None  # that pickle's (mtime_ns, size) when loaded


_shared: dict[str, _Held] = {}
_shared_lock = threading.Lock()
_watcher: threading.Thread | None = None
WATCH_S = 2.0
"""How often a process that loaded shared handlers from pickles checks that the pickles are still there."""


def handler_key(handler_config: Any, *extra: Any) -> str:
    """A short content hash of a handler config (and anything else that changes its data)."""
    text = json.dumps([handler_config, *extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def share_handler(handler: Any, key: str, path: str | os.PathLike | None = None, dump: bool = False,
                  overwrite: bool = False) -> dict:
    """Hold ``handler`` in this process under ``key`` and return the task config that reads it back
    (``{"class": "shared_handler", "module_path": "qexp.task.utils", ...}``); :func:`release_shared_handler`
    lets it go.

    With ``dump`` the handler and its data are also pickled to ``path`` (atomically; an existing pickle is
    kept unless ``overwrite``), for executors whose workers are other processes."""
    with _shared_lock:
        _shared[key] = _Held(handler)
    if dump:
        if path is None:
            raise ValueError("share_handler(dump=True) needs a path")
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if overwrite or not p.exists():
            tmp = p.with_name(f"{p.name}.tmp{os.getpid()}")
            if callable(getattr(handler, "to_pickle", None)):
                _dump_raw(handler, tmp)
            else:
                with open(tmp, "wb") as f:
                    pickle.dump(handler, f, protocol=4)
            os.replace(tmp, p)
    kwargs: dict[str, Any] = {"key": key}
    if path is not None:
        kwargs["path"] = str(path)
    return {"class": "shared_handler", "module_path": "qexp.task.utils", "kwargs": kwargs}


def _dump_raw(handler: Any, path: Path) -> None:
    """Pickle a handler with its data; a handler that keeps its raw frame and can process it again is pickled
    without the derived (infer/learn) frames, which the loader rebuilds with the fitted processors."""
    derived = ["_infer", "_learn"] if "_data" in handler.__dict__ and callable(getattr(handler, "process_data", None)) \
        else None
    missing = object()
    before = {k: handler.__dict__.get(k, missing) for k in ("_dump_all", "_exclude")}
    try:
        handler.to_pickle(path, dump_all=True, exclude=derived)
    finally:  # the pickling settings go back to what they were
        for k, v in before.items():
            if v is missing:
                handler.__dict__.pop(k, None)
            else:
                handler.__dict__[k] = v


def shared_handler(key: str, path: str | None = None, fit_start_time: Any = None, fit_end_time: Any = None) -> Any:
    """The handler shared under ``key`` (loaded once per process from ``path`` when it is not here yet, and
    again when that pickle was rewritten since).

    ``fit_start_time``/``fit_end_time`` give a copy that shares the raw data and refits the processors on that
    window (``RollingGen(roll_fit_window=True)``)."""
    with _shared_lock:
        held = _shared.get(key)
        if held is not None and held.path is not None and _stamp(held.path) != held.stamp:
            held = None  # the pickle was rewritten (the data changed) or removed: not this one any more
        if held is None:
            if path is None or not os.path.exists(path):
                _shared.pop(key, None)
                raise ConfigError(f"shared handler {key!r} is not held by this process and its pickle "
                                  f"{path!r} does not exist; build it with share_handler(..., dump=True)")
            held = _load(path)
            _shared[key] = held
            _watch()
    if fit_start_time is None and fit_end_time is None:
        return held.handler
    return _refit(held.handler, fit_start_time, fit_end_time)


def _load(path: str) -> _Held:
    stamp = _stamp(path)
    # the pickle was written by share_handler on this machine (the driver of this job)
    with open(path, "rb") as f:
        handler = pickle.load(f)
    if "_data" in handler.__dict__ and "_infer" not in handler.__dict__ \
            and callable(getattr(handler, "process_data", None)):
        handler.process_data()  # the derived frames, from the raw data with the fitted processors
    return _Held(handler, path, stamp)


def _watch() -> None:
    """Start the thread that drops handlers whose pickle went away (called with ``_shared_lock`` held)."""
    global _watcher
    if _watcher is None or not _watcher.is_alive():
        _watcher = threading.Thread(target=_watch_loop, name="qexp-shared-handlers", daemon=True)
        _watcher.start()


def _watch_loop() -> None:
    global _watcher
    while True:
        time.sleep(WATCH_S)
        with _shared_lock:
            drop_stale_handlers()
            if not any(h.path is not None for h in _shared.values()):
                _watcher = None
                return


def drop_stale_handlers() -> list[str]:
    """Forget the handlers this process loaded from a pickle that is gone or was rewritten; return their keys
    (the caller holds ``_shared_lock``, or calls it where no other thread shares handlers)."""
    gone = [k for k, h in _shared.items() if h.path is not None and _stamp(h.path) != h.stamp]
    for k in gone:
        del _shared[k]
    return gone


def release_shared_handler(key: str) -> bool:
    """Stop holding the handler shared under ``key`` in this process (its memory is freed once no dataset
    uses it); return whether one was held."""
    with _shared_lock:
        return _shared.pop(key, None) is not None


def _refit(handler: Any, fit_start_time: Any, fit_end_time: Any) -> Any:
    process = getattr(handler, "process_data", None)
    if not callable(process) or "_data" not in handler.__dict__:
        raise ConfigError(f"{type(handler).__name__} cannot refit its processors on a moved window: it keeps no "
                          f"raw data (drop_raw) or has no learnable processors")
    new = copy.copy(handler)
    new.__dict__ = dict(handler.__dict__)
    for attr in ("shared_processors", "infer_processors", "learn_processors"):
        if attr in new.__dict__:
            new.__dict__[attr] = copy.deepcopy(new.__dict__[attr])
    new.config(processor_kwargs={"fit_start_time": None if fit_start_time is None else pd.Timestamp(fit_start_time),
                                 "fit_end_time": None if fit_end_time is None else pd.Timestamp(fit_end_time)})
    new.process_data(with_fit=True)
    return new


def forget_shared_handlers() -> None:
    """Drop every shared handler held by this process (frees their memory)."""
    with _shared_lock:
        _shared.clear()


def held_handler_keys() -> list[str]:
    """The keys of the handlers this process holds."""
    with _shared_lock:
        return sorted(_shared)


def replace_task_handler_with_cache(task: dict, cache_dir: str | os.PathLike = ".") -> dict:
    """A copy of ``task`` whose handler is built once, pickled under ``cache_dir`` and shared.

    Qlib writes ``file://<class>.<hash>.pkl``; qexp writes the same pickle and puts a ``shared_handler``
    config in the task, so tasks in this process share the object and other processes load it once."""
    from ..config import init_instance_by_config
    task = copy.deepcopy(task)
    handler = task["dataset"]["kwargs"]["handler"]
    if isinstance(handler, dict):
        key = handler_key(handler)
        path = Path(cache_dir) / f"{handler.get('class', 'handler')}.{key[:10]}.pkl"
        held = _shared.get(key)
        obj = held.handler if held is not None else None
        if obj is None:
            obj = init_instance_by_config(handler, where="task.dataset.kwargs.handler")
        task["dataset"]["kwargs"]["handler"] = share_handler(obj, key, path, dump=True)
    return task
