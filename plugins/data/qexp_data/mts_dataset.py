"""``MTSDatasetH``: Qlib's memory-augmented time-series dataset (``qlib/contrib/data/dataset.py``), the
dataset of the TRA model.

The handler's learn data (Qlib uses it for every segment, the test segment too) is read once into one
float32 array sorted by (instrument, datetime), NaN features set to 0 as Qlib does. A sample is the last
``seq_len`` rows of one stock up to a row (zeros in front where the stock has fewer rows), or with
``input_size`` the row's own flat features read as ``input_size`` blocks (Alpha360: ``[60, 6]``). Windows
are gathered with index arrays per batch; nothing is built per sample.

``prepare(segment)`` returns an :class:`MTSSegment` that iterates batches as Qlib's does: dicts with
``data`` ``[B, T, F]``, ``label`` ``[B]``, ``state`` (the memory, see below), ``index`` (row numbers for
:meth:`MTSSegment.restore_index`), ``daily_index`` (day numbers) and ``daily_count`` (stocks per day), as
torch tensors on the CPU (the model moves them to its device). ``batch_size > 0`` gives batches of random
samples; ``batch_size = -k`` gives ``k`` whole days per batch (``n_samples`` stocks drawn per day when set);
``eval()`` switches to one day per batch in date order, ``train()`` back.

The memory holds ``num_states`` numbers per sample (``memory_mode="sample"``) or per day (``"daily"``) that
the model writes with ``assign_data(index, values)`` (TRA: each predictor's recent loss). A sample's
``state`` is the memory of its window's rows without the last ``horizon`` ones, whose labels are not known
yet on that day (``[B, seq_len - horizon, num_states]``); a day's ``state`` is the memory of the
``seq_len`` days that end ``horizon`` days before it (``[days, seq_len, num_states]``). All segments share
one memory, as in Qlib.

Explicit ``col_set``/``data_key`` arguments make ``prepare`` answer as a ``DatasetH`` (frames), which is what
records such as ``SignalRecord`` ask for.
"""
from __future__ import annotations

import copy
import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd

from qexp.ext import ConfigError, require_extra

from . import alpha as handler_module
from .dataset import _UNSET, DatasetH
from .handler import DataHandler, DataHandlerLP, DataNotLoadedError
from .instantiate import build

logger = logging.getLogger("qexp.data")

MEMORY_MODES = ("sample", "daily")


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"MTSDatasetH: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def guess_horizon(handler: Any) -> int | None:
    """How many days the handler's (first) label looks ahead, from its expression (Qlib's
    ``guess_horizon``); None when the loader has no label expression (e.g. a static frame)."""
    fields = getattr(getattr(handler, "data_loader", None), "fields", None)
    if not isinstance(fields, dict) or "label" not in fields:
        return None
    try:
        expr = fields["label"][0][0]
    except (IndexError, KeyError, TypeError):
        return None
    from .expr import extension, parse
    return int(extension(parse(str(expr)))[1])


class _Store:
    """The arrays every segment of one dataset shares: features, labels, windows' bounds, days, memory."""

    def __init__(self, df: pd.DataFrame, num_states: int, memory_mode: str):
        index = df.index
        inst_codes, insts = pd.factorize(index.get_level_values("instrument"), sort=True)
        day_codes, dates = pd.factorize(index.get_level_values("datetime"), sort=True)
        order = np.lexsort((day_codes, inst_codes))  # Qlib's <instrument, datetime> order
        feature = df["feature"]
        label = df["label"]
        if label.shape[1] != 1:
            raise ConfigError(f"MTSDatasetH takes one label column, the handler gives {label.shape[1]}: "
                              f"{', '.join(map(str, label.columns))}")
        self.features = np.ascontiguousarray(feature.to_numpy(dtype=np.float32)[order])
        np.nan_to_num(self.features, copy=False)  # as Qlib: in case the config has no Fillna
        self.labels = np.ascontiguousarray(label.iloc[:, 0].to_numpy(dtype=np.float32)[order])
        inst_codes, day_codes = inst_codes[order], day_codes[order]
        self.index = pd.MultiIndex.from_arrays([insts[inst_codes], dates[day_codes]],
                                               names=["instrument", "datetime"])
        n = len(order)
        new_inst = np.r_[True, inst_codes[1:] != inst_codes[:-1]] if n else np.zeros(0, bool)
        starts = np.flatnonzero(new_inst)
        # the first row of each row's stock: windows do not reach into the previous stock
        self.first_row = np.repeat(starts, np.diff(np.r_[starts, n])).astype(np.int64)
        self.row_day = day_codes.astype(np.int64)
        self.dates = pd.DatetimeIndex(dates)
        self.day_rows = np.argsort(self.row_day, kind="stable")  # by day, then stock
        self.day_start = np.searchsorted(self.row_day[self.day_rows], np.arange(len(dates) + 1)).astype(np.int64)
        size = n if memory_mode == "sample" else len(dates)
        self.memory = np.zeros((size, num_states), dtype=np.float32)

    @property
    def n_days(self) -> int:
        return len(self.dates)


class MTSDatasetH(DatasetH):
    """Qlib's ``MTSDatasetH``: daily batches of ``seq_len``-day sequences with a per-sample (or per-day)
    memory the model reads and writes (see the module docstring).

    ``horizon=0`` is read from the handler's label expression (``Ref($close, -2)/Ref($close, -1) - 1``: 2).
    ``pin_memory`` pins the batches' host memory when CUDA is present (faster copies to the GPU).
    """

    def __init__(self, handler: Any, segments: dict, seq_len: int = 60, horizon: int = 0, num_states: int = 0,
                 memory_mode: str = "sample", batch_size: int = -1, n_samples: int | None = None,
                 shuffle: bool = True, drop_last: bool = False, input_size: int | None = None,
                 pin_memory: bool = False, **kwargs: Any):
        handler = build(handler, where="dataset.handler", accept_types=DataHandler, default_module=handler_module)
        self.seq_len = _int("seq_len", seq_len, 1)
        self.num_states = _int("num_states", num_states, 0)
        horizon = _int("horizon", horizon, 0)
        if horizon == 0:
            horizon = guess_horizon(handler) or 0
        if self.num_states > 0 and horizon <= 0:
            raise ConfigError(f"MTSDatasetH: num_states={num_states} needs horizon > 0 (how many days the label "
                              f"looks ahead, e.g. horizon: 2 for Ref($close, -2)/Ref($close, -1) - 1), so that "
                              f"the memory of days whose labels are not known yet is not read")
        if horizon >= self.seq_len and self.num_states > 0:
            raise ConfigError(f"MTSDatasetH: horizon={horizon} leaves no memory to read in windows of "
                              f"seq_len={seq_len}; use seq_len > horizon")
        self.horizon = horizon
        if memory_mode not in MEMORY_MODES:
            raise ConfigError(f"MTSDatasetH: unknown memory_mode {memory_mode!r}; use 'sample' or 'daily'")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size == 0:
            raise ConfigError(f"MTSDatasetH: batch_size must be a non-zero integer (> 0: samples per batch, -k: "
                              f"k days per batch), got {batch_size!r}")
        if memory_mode == "daily" and batch_size > 0:
            raise ConfigError("MTSDatasetH: memory_mode 'daily' needs daily batches: set batch_size to -1 "
                              "(or -k for k days per batch)")
        if n_samples is not None:
            n_samples = _int("n_samples", n_samples, 1)
            if batch_size > 0:
                warnings.warn("MTSDatasetH: n_samples is used with daily batches only (batch_size < 0); "
                              "ignoring it", stacklevel=2)
        if input_size is not None:
            input_size = _int("input_size", input_size, 1)
        self.memory_mode = memory_mode
        self.batch_size = int(batch_size)
        self.n_samples = n_samples
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.input_size = input_size
        self.pin_memory = bool(pin_memory)
        self.params = (self.batch_size, self.n_samples, self.drop_last, self.shuffle)  # for train()/eval()
        super().__init__(handler, segments, **kwargs)

    # ---- data ------------------------------------------------------------------------------------------
    def setup_data(self, handler_kwargs: dict | None = None, **kwargs: Any) -> None:
        """Load the handler's data (as DatasetH) and build the arrays every segment reads."""
        super().setup_data(handler_kwargs=handler_kwargs, **kwargs)
        self._store = self._build_store()

    def _build_store(self) -> _Store:
        h = self.handler
        if isinstance(h, DataHandlerLP):
            df = h.fetch(col_set=["feature", "label"], data_key=DataHandlerLP.DK_L)
        else:
            df = h.fetch(col_set=["feature", "label"])
        if not isinstance(df.index, pd.MultiIndex) or set(df.index.names) != {"datetime", "instrument"}:
            raise ConfigError(f"MTSDatasetH: the handler's data must be indexed (datetime, instrument), got "
                              f"{list(df.index.names)}")
        store = _Store(df, self.num_states, self.memory_mode)
        n_feat = store.features.shape[1]
        if self.input_size is not None and n_feat % self.input_size:
            raise ConfigError(f"MTSDatasetH: input_size={self.input_size} does not divide the {n_feat} feature "
                              f"columns; input_size reads each row as input_size blocks of equal length "
                              f"(Alpha360: 6), or leave it unset for windows of seq_len rows")
        logger.info("MTSDatasetH: %d rows x %d features, %d days, memory %s x %d", len(store.labels), n_feat,
                    store.n_days, store.memory.shape[0], self.num_states)
        return store

    def _data(self) -> _Store:
        store = self.__dict__.get("_store")
        if store is None:
            raise DataNotLoadedError("MTSDatasetH holds no data (it was saved without it); call "
                                     "dataset.setup_data() to load it again")
        return store

    # ---- segments --------------------------------------------------------------------------------------
    def prepare(self, segments: Any, col_set: Any = _UNSET, data_key: Any = _UNSET, **kwargs: Any) -> Any:
        """:class:`MTSSegment` batches of a segment name, a list of names (a list back) or a slice of dates.

        With ``col_set``/``data_key`` (or other fetch arguments) it answers as a DatasetH: frames.
        """
        if col_set is not _UNSET or data_key is not _UNSET or kwargs:
            return super().prepare(segments, col_set=col_set, data_key=data_key, **kwargs)
        if isinstance(segments, str):
            return self._segment(self._segment_slice(segments))
        if isinstance(segments, (list, tuple)) and all(isinstance(s, str) for s in segments):
            slices = [self._segment_slice(s) for s in segments]
            return [self._segment(s) for s in slices]
        if isinstance(segments, slice):
            return self._segment(segments)
        if isinstance(segments, (list, tuple)) and len(segments) == 2:
            return self._segment(slice(*segments))
        raise KeyError(f"segments must be a segment name, a list of names or a slice of dates, got {segments!r}; "
                       f"known segments: {list(self.segments)}")

    def _segment(self, slc: slice) -> MTSSegment:
        store = self._data()
        first = 0 if slc.start is None else int(store.dates.searchsorted(pd.Timestamp(slc.start), side="left"))
        last = (store.n_days if slc.stop is None
                else int(store.dates.searchsorted(pd.Timestamp(slc.stop), side="right"))) - 1
        return MTSSegment(self, store, first, last)

    # Qlib's segments are copies of the dataset: these also work on the dataset itself
    def train(self) -> None:
        """Training mode for segments prepared from now on: the configured batches."""
        self.batch_size, self.n_samples, self.drop_last, self.shuffle = self.params

    def eval(self) -> None:
        """Evaluation mode for segments prepared from now on: one day per batch, in date order."""
        self.batch_size, self.n_samples, self.drop_last, self.shuffle = -1, None, False, False

    def assign_data(self, index: Any, vals: Any) -> None:
        _assign(self._data(), self.num_states, index, vals)

    def clear_memory(self) -> None:
        _check_states(self.num_states, "clear")
        self._data().memory[:] = 0

    def restore_index(self, index: Any) -> pd.MultiIndex:
        return self._data().index[np.asarray(index, dtype=np.int64)]

    def restore_daily_index(self, daily_index: Any) -> pd.Index:
        return pd.Index(self._data().dates[np.asarray(daily_index, dtype=np.int64)])


def _check_states(num_states: int, what: str) -> None:
    if num_states == 0:
        raise ValueError(f"MTSDatasetH: cannot {what} the memory with num_states=0; set num_states (TRA: the "
                         f"number of predictors) in the dataset")


def _assign(store: _Store, num_states: int, index: Any, vals: Any) -> None:
    _check_states(num_states, "assign")
    if hasattr(vals, "detach"):
        vals = vals.detach().cpu().numpy()
    store.memory[np.asarray(index, dtype=np.int64)] = vals


class MTSSegment:
    """One segment of an :class:`MTSDatasetH` (days ``first..last`` of its calendar): iterates batches and
    reads/writes the shared memory. ``train()``/``eval()`` switch between the configured batches and one day
    per batch in date order. ``rng`` (a ``numpy.random.Generator``, default None = numpy's global RNG, as
    Qlib) drives shuffling and per-day sampling."""

    def __init__(self, dataset: MTSDatasetH, store: _Store, first: int, last: int):
        self.seq_len, self.horizon, self.num_states = dataset.seq_len, dataset.horizon, dataset.num_states
        self.memory_mode, self.input_size, self.pin_memory = dataset.memory_mode, dataset.input_size, dataset.pin_memory
        self.batch_size, self.n_samples = dataset.batch_size, dataset.n_samples
        self.drop_last, self.shuffle = dataset.drop_last, dataset.shuffle
        self.params = dataset.params
        self.first, self.last = int(first), max(int(first) - 1, int(last))
        self.rng: np.random.Generator | None = None
        self._store = store

    def __repr__(self) -> str:
        dates = self._store.dates
        span = f"{dates[self.first]:%Y-%m-%d}..{dates[self.last]:%Y-%m-%d}" if self.n_days else "empty"
        return f"MTSSegment({span}, {self.n_days} days, {self.n_rows} rows)"

    # ---- shape -----------------------------------------------------------------------------------------
    @property
    def n_days(self) -> int:
        return self.last - self.first + 1

    @property
    def rows(self) -> np.ndarray:
        """The segment's row numbers, by day then stock."""
        s = self._store
        return s.day_rows[s.day_start[self.first]:s.day_start[self.last + 1]]

    @property
    def n_rows(self) -> int:
        s = self._store
        return int(s.day_start[self.last + 1] - s.day_start[self.first])

    @property
    def days(self) -> np.ndarray:
        return np.arange(self.first, self.last + 1, dtype=np.int64)

    @property
    def n_features(self) -> int:
        """Features per step of a sample."""
        return self.input_size or int(self._store.features.shape[1])

    @property
    def n_steps(self) -> int:
        """Steps per sample: ``seq_len``, or the blocks' length with ``input_size``."""
        return int(self._store.features.shape[1]) // self.input_size if self.input_size else self.seq_len

    def with_history(self) -> MTSSegment:
        """This segment extended back by the days whose memory its first batches read (the ``seq_len - 1``
        earlier rows of each stock, or the ``seq_len + horizon`` earlier days of a daily memory); predicting
        over it fills that memory with the model's own losses first, so predictions do not depend on what an
        earlier pass left there."""
        s = self._store
        if self.n_days == 0 or self.num_states == 0:
            return self
        if self.memory_mode == "daily":
            first = max(0, self.first - self.seq_len - self.horizon)
        else:
            rows = self.rows
            earliest = np.maximum(rows - (self.seq_len - 1), s.first_row[rows])
            first = int(s.row_day[earliest].min())
        seg = copy.copy(self)
        seg.first = min(first, self.first)
        return seg

    # ---- modes -----------------------------------------------------------------------------------------
    def train(self) -> None:
        """The configured batches (random samples, or ``k`` days per batch)."""
        self.batch_size, self.n_samples, self.drop_last, self.shuffle = self.params

    def eval(self) -> None:
        """One day per batch, in date order, every stock."""
        self.batch_size, self.n_samples, self.drop_last, self.shuffle = -1, None, False, False

    # ---- memory ----------------------------------------------------------------------------------------
    def assign_data(self, index: Any, vals: Any) -> None:
        """Write ``vals`` ([n, num_states]) to the memory of rows (sample mode) or days (daily) ``index``."""
        _assign(self._store, self.num_states, index, vals)

    def clear_memory(self) -> None:
        """Zero the whole memory (all segments share it, as in Qlib)."""
        _check_states(self.num_states, "clear")
        self._store.memory[:] = 0

    def restore_index(self, index: Any) -> pd.MultiIndex:
        """``(instrument, datetime)`` of the row numbers in ``index`` (a batch's ``index``)."""
        return self._store.index[np.asarray(index, dtype=np.int64)]

    def restore_daily_index(self, daily_index: Any) -> pd.Index:
        """The dates of the day numbers in ``daily_index``."""
        return pd.Index(self._store.dates[np.asarray(daily_index, dtype=np.int64)])

    # ---- batches ---------------------------------------------------------------------------------------
    def _units(self) -> tuple[np.ndarray, int]:
        if self.batch_size < 0:
            return self.days, -self.batch_size
        return self.rows, self.batch_size

    def __len__(self) -> int:
        units, size = self._units()
        if self.drop_last:
            return len(units) // size
        return (len(units) + size - 1) // size

    def __iter__(self) -> Any:
        torch = require_extra("torch", "torch", "MTSDatasetH batches")
        units, size = self._units()
        order = np.arange(len(units))
        rng: Any = self.rng if self.rng is not None else np.random
        if self.shuffle:
            rng.shuffle(order)
        for i in range(0, len(order), size):
            if self.drop_last and i + size > len(order):
                break
            chosen = units[order[i:i + size]]
            yield self._batch(torch, chosen, rng)

    def _batch(self, torch: Any, chosen: np.ndarray, rng: Any) -> dict[str, Any]:
        s = self._store
        daily = self.batch_size < 0
        if daily:
            parts, counts = [], []
            for d in chosen:
                rows = s.day_rows[s.day_start[d]:s.day_start[d + 1]]
                if self.n_samples and 0 < self.n_samples < len(rows):
                    rows = rng.choice(rows, self.n_samples, replace=False)
                parts.append(rows)
                counts.append(len(rows))
            rows = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            days, count = chosen.astype(np.int64), np.asarray(counts, dtype=np.int64)
        else:
            rows, days, count = chosen, np.zeros(0, np.int64), np.zeros(0, np.int64)
        rows = rows.astype(np.int64, copy=False)
        steps = np.arange(1 - self.seq_len, 1)
        window = rows[:, None] + steps                       # [B, T] rows of each sample's window
        pad = window < s.first_row[rows][:, None]            # before the stock's first row: zeros
        window = np.where(pad, rows[:, None], window)
        if self.input_size:
            data = s.features[rows].reshape(len(rows), self.input_size, -1).transpose(0, 2, 1)
            data = np.ascontiguousarray(data)
        else:
            data = s.features[window]
            data[pad] = 0.0
        if self.memory_mode == "sample":
            state = s.memory[window]
            state[pad] = 0.0
            state = state[:, :self.seq_len - self.horizon]
        else:
            back = days[:, None] - self.horizon - self.seq_len + np.arange(self.seq_len)
            state = s.memory[np.maximum(back, 0)]
            state[back < 0] = 0.0
        out = {"data": torch.from_numpy(data), "label": torch.from_numpy(s.labels[rows]),
               "state": torch.from_numpy(np.ascontiguousarray(state)), "index": rows, "daily_index": days,
               "daily_count": count}
        if self.pin_memory and torch.cuda.is_available():
            for key in ("data", "label", "state"):
                out[key] = out[key].pin_memory()
        return out
