"""Datasets: named time segments over a handler (``qlib/data/dataset/__init__.py``).

``DatasetH.prepare("train")`` fetches the train segment from the handler; ``TSDatasetH.prepare`` returns a
:class:`~qexp_data.sampler.TSDataSampler` of ``step_len`` windows. A dataset pickles without its data
(``config(dump_all=False)`` is the default), so ``R.save_objects(dataset=dataset)`` stays small;
``setup_data()`` loads the data again, reusing the fitted processors.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np
import pandas as pd

from qexp.ext import ConfigError

from . import alpha as handler_module
from .frame import CS_ALL, CS_RAW
from .handler import DataHandler, DataHandlerLP
from .instantiate import build
from .sampler import TSDataSampler
from .serial import Serializable


class Dataset(Serializable):
    """Base class: ``prepare(...)`` returns the data a model consumes."""

    def __init__(self, **kwargs: Any):
        super().__init__()
        self.setup_data(**kwargs)

    def config(self, recursive: bool = False, **kwargs: Any) -> None:
        super().config(recursive=recursive, **kwargs)

    def setup_data(self, **kwargs: Any) -> None:
        """Load (or reload) the data."""

    def prepare(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement prepare()")


class _Unset:
    def __repr__(self) -> str:
        return "<default>"


# prepare()'s defaults (col_set="__all", data_key="infer") yield to fetch_kwargs; explicit arguments do not
_UNSET: Any = _Unset()


def _check_segments(segments: Any) -> dict[str, tuple]:
    if not isinstance(segments, dict) or not segments:
        raise ConfigError("segments must be a non-empty dict like {'train': ('2008-01-01', '2014-12-31'), ...}, "
                          f"got {segments!r}")
    out = {}
    for name, seg in segments.items():
        if isinstance(seg, slice):
            seg = (seg.start, seg.stop)
        if not isinstance(seg, (list, tuple)) or len(seg) != 2:
            raise ConfigError(f"segments[{name!r}] must be a (start, end) pair, got {seg!r}")
        out[str(name)] = tuple(seg)
    return out


class DatasetH(Dataset):
    """A dataset over a handler with named segments: ``DatasetH(handler, {"train": (s, e), ...})``.

    ``handler`` is a handler or a config (``{"class": "Alpha158", "module_path": ..., "kwargs": {...}}``);
    ``fetch_kwargs`` are passed to every ``handler.fetch``.
    """

    def __init__(self, handler: Any, segments: dict, fetch_kwargs: dict | None = None, **kwargs: Any):
        self.handler = build(handler, where="dataset.handler", accept_types=DataHandler,
                             default_module=handler_module)
        self.segments = _check_segments(segments)
        self.fetch_kwargs = dict(fetch_kwargs or {})
        super().__init__(**kwargs)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(handler={type(self.handler).__name__}, "
                f"segments={self.segments})")

    # Qlib's signature: DatasetH.config takes handler_kwargs first
    def config(self, handler_kwargs: dict | None = None, recursive: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
        """``handler_kwargs`` go to ``handler.config``; ``segments`` replaces the segments; the rest are the
        pickling settings (``dump_all``, ``exclude``, ``include``)."""
        if handler_kwargs is not None:
            self.handler.config(**handler_kwargs)
        if "segments" in kwargs:
            self.segments = _check_segments(copy.deepcopy(kwargs.pop("segments")))
        super().config(recursive=recursive, **kwargs)

    def setup_data(self, handler_kwargs: dict | None = None, **kwargs: Any) -> None:
        """Load the handler's data with ``handler.setup_data(**handler_kwargs)``.

        Without ``handler_kwargs`` a handler that holds no data (an unpickled dataset) is reloaded, reusing
        its fitted processors; a handler that holds data is left as it is.
        """
        super().setup_data(**kwargs)
        if handler_kwargs is not None:
            self.handler.setup_data(**handler_kwargs)
        elif not _handler_has_data(self.handler):
            if isinstance(self.handler, DataHandlerLP):
                fitted = all(_is_fitted(p) for p in self.handler.get_all_processors())
                init_type = DataHandlerLP.IT_LS if fitted else DataHandlerLP.IT_FIT_SEQ
                self.handler.setup_data(init_type=init_type)
            else:
                self.handler.setup_data()

    def _segment_slice(self, name: str) -> slice:
        if name not in self.segments:
            raise KeyError(f"unknown segment {name!r}; this dataset has segments {list(self.segments)}")
        start, end = self.segments[name]
        return slice(start, end)

    def _prepare_seg(self, slc: slice, **kwargs: Any) -> Any:
        # explicit arguments win over fetch_kwargs (Qlib raises a TypeError on the overlap instead)
        return self.handler.fetch(slc, **{**self.fetch_kwargs, **kwargs})

    def prepare(self, segments: str | list | tuple | slice, col_set: Any = _UNSET,
                data_key: Any = _UNSET, **kwargs: Any) -> Any:
        """The data of one segment (a name or a slice of dates), or a list for a list of names.

        ``col_set``: ``"__all"`` (single-level columns), ``"feature"``, ``"label"`` or a list of groups
        (two-level columns). ``data_key``: ``"infer"`` (default), ``"learn"`` or ``"raw"``.
        """
        takes_data_key = "data_key" in inspect.signature(self.handler.fetch).parameters
        defaults: dict[str, Any] = {"col_set": CS_ALL}
        seg_kwargs = dict(kwargs)
        if col_set is not _UNSET:
            seg_kwargs["col_set"] = col_set
        if takes_data_key:
            defaults["data_key"] = DataHandlerLP.DK_I
            if data_key is not _UNSET:
                seg_kwargs["data_key"] = data_key
        seg_kwargs = {**defaults, **self.fetch_kwargs, **seg_kwargs}
        if isinstance(segments, str):
            return self._prepare_seg(self._segment_slice(segments), **seg_kwargs)
        if isinstance(segments, (list, tuple)) and all(isinstance(s, str) for s in segments):
            slices = [self._segment_slice(s) for s in segments]
            return [self._prepare_seg(slc, **seg_kwargs) for slc in slices]
        if isinstance(segments, slice):
            return self._prepare_seg(segments, **seg_kwargs)
        raise KeyError(f"segments must be a segment name, a list of names or a slice of dates, got {segments!r}; "
                       f"known segments: {list(self.segments)}")


def _handler_has_data(handler: DataHandler) -> bool:
    attr = "_infer" if isinstance(handler, DataHandlerLP) else "_data"
    return attr in handler.__dict__


def _is_fitted(proc: Any) -> bool:
    # fit-window processors record the fitted columns; the others need no fitting
    return "fit_start_time" not in proc.__dict__ or "cols" in proc.__dict__


class TSDatasetH(DatasetH):
    """A DatasetH whose ``prepare`` returns :class:`TSDataSampler` windows of ``step_len`` days.

    Each segment is fetched from ``step_len`` trading days before its start, so the first windows are
    full where history exists. ``prepare(..., fillna_type=..., dtype=..., flt_col=...)`` are passed on.
    """

    DEFAULT_STEP_LEN = 30

    def __init__(self, step_len: int = DEFAULT_STEP_LEN, **kwargs: Any):
        self.step_len = int(step_len)
        super().__init__(**kwargs)

    # Qlib's signature: DatasetH.config takes handler_kwargs first
    def config(self, handler_kwargs: dict | None = None, recursive: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
        if "step_len" in kwargs:
            self.step_len = int(kwargs.pop("step_len"))
        super().config(handler_kwargs=handler_kwargs, recursive=recursive, **kwargs)

    def setup_data(self, handler_kwargs: dict | None = None, **kwargs: Any) -> None:
        super().setup_data(handler_kwargs=handler_kwargs, **kwargs)
        # the trading calendar of the handler's data, to extend segments backwards
        index = self.handler.fetch(col_set=CS_RAW).index
        self.cal = index.get_level_values("datetime").unique().sort_values()

    def _extend_slice(self, slc: slice) -> slice:
        if slc.start is None:
            return slc
        start_idx = int(self.cal.searchsorted(pd.Timestamp(slc.start), side="left"))
        pad_start_idx = max(0, start_idx - self.step_len)
        if len(self.cal) == 0:
            return slc
        return slice(self.cal[min(pad_start_idx, len(self.cal) - 1)], slc.stop)

    def _prepare_seg(self, slc: Any, **kwargs: Any) -> TSDataSampler:
        dtype = kwargs.pop("dtype", np.float32)
        fillna_type = kwargs.pop("fillna_type", "none")
        flt_col = kwargs.pop("flt_col", None)
        if not isinstance(slc, slice):
            slc = slice(*slc)
        ext = self._extend_slice(slc)
        data = super()._prepare_seg(ext, **kwargs)
        flt_data = None
        if flt_col is not None:
            flt_data = super()._prepare_seg(ext, **{**kwargs, "col_set": flt_col})
            if isinstance(flt_data, pd.DataFrame) and flt_data.shape[1] != 1:
                raise ValueError(f"flt_col {flt_col!r} must select exactly one column, got {flt_data.shape[1]}")
        return TSDataSampler(data=data, start=slc.start, end=slc.stop, step_len=self.step_len,
                             fillna_type=fillna_type, dtype=dtype, flt_data=flt_data)
