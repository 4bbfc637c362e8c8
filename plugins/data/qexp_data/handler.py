"""Data handlers: a loader's raw frame plus Qlib's learn/infer processing (``qlib/data/dataset/handler.py``).

``DataHandlerLP`` keeps three frames: raw (``DK_R``), infer (``DK_I`` = infer processors applied) and learn
(``DK_L`` = learn processors applied after the infer ones with ``process_type="append"``, or to the raw data
with ``"independent"``). All are indexed ``(datetime, instrument)`` with ``(group, name)`` columns.
"""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from qexp.ext import ConfigError, QexpError

from . import loader as loader_module, processor as processor_module
from .frame import CS_ALL, CS_RAW, fetch_df_by_col, fetch_df_by_index
from .instantiate import build
from .loader import DataLoader
from .processor import Processor
from .serial import Serializable


def _copy_on_write() -> bool:
    if int(pd.__version__.split(".")[0]) >= 3:
        return True
    return bool(getattr(pd.options.mode, "copy_on_write", False) is True)


# Under pandas' copy-on-write a shallow copy protects the source frame from any in-place change made through
# pandas (and ``df.values`` is read-only), so the processors' defensive deep copy is not needed: it would
# double the peak memory of every processed frame.
_COW = _copy_on_write()


def _input_for(df: pd.DataFrame, procs: list[Processor]) -> pd.DataFrame:
    """``df`` as the input of ``procs``: protected from their in-place changes unless all are readonly."""
    if all(p.readonly() for p in procs):
        return df
    return df.copy(deep=not _COW)


class DataNotLoadedError(QexpError, AttributeError):
    """The handler holds no data of that kind (it was unpickled without data, or ``drop_raw`` removed it).

    An AttributeError, as in Qlib, so ``SignalRecord`` can fall back when the raw data was dropped.
    """


class DataHandler(Serializable):
    """Loads data with ``data_loader`` for ``instruments`` in ``[start_time, end_time]`` and serves
    :meth:`fetch`. ``data_loader`` is a loader, or a config dict / name resolved by the registry."""

    CS_ALL = CS_ALL
    CS_RAW = CS_RAW

    @classmethod
    def dry_run_problems(cls, kwargs: dict) -> list[str]:
        """``--dry-run``: a ``freq`` the provider cannot serve (the run would stop after the config checks)."""
        from .store import freq_problems
        return freq_problems(kwargs["freq"]) if "freq" in kwargs else []

    def __init__(self, instruments: Any = None, start_time: Any = None, end_time: Any = None,
                 data_loader: Any = None, init_data: bool = True, fetch_orig: bool = True):
        if data_loader is None:
            raise ConfigError(f"{type(self).__name__}: data_loader is required (a DataLoader or a config like "
                              "{'class': 'QlibDataLoader', 'kwargs': {'config': {...}}})")
        self.data_loader = build(data_loader, where="data_loader", accept_types=DataLoader,
                                 default_module=loader_module)
        self.instruments = instruments
        self.start_time = start_time
        self.end_time = end_time
        self.fetch_orig = fetch_orig
        if init_data:
            self.setup_data()
        super().__init__()

    def config(self, recursive: bool = False, **kwargs: Any) -> None:
        """Change ``instruments``/``start_time``/``end_time`` (for the next :meth:`setup_data`) or the
        pickling settings."""
        for attr in ("instruments", "start_time", "end_time"):
            if attr in kwargs:
                setattr(self, attr, kwargs.pop(attr))
        super().config(recursive=recursive, **kwargs)

    def setup_data(self, enable_cache: bool = False) -> None:
        """(Re)load the raw data from the loader (``enable_cache`` is accepted for Qlib compatibility; the
        dataset cache is steered by the loader's ``cache`` setting and ``QEXP_DATASET_CACHE``)."""
        df = self.data_loader.load(self.instruments, self.start_time, self.end_time)
        self._data = df if df.index.is_monotonic_increasing else df.sort_index()

    def _storage(self) -> pd.DataFrame:
        if "_data" not in self.__dict__:
            raise DataNotLoadedError(f"{type(self).__name__} holds no data (it was saved without it); call "
                                     "setup_data() to load it again")
        return self._data

    def fetch(self, selector: Any = slice(None, None), level: str | int | None = "datetime",
              col_set: Any = CS_ALL, squeeze: bool = False,
              proc_func: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Any:
        """Rows matching ``selector`` on ``level`` (a slice is inclusive) and the columns of ``col_set``."""
        return self._fetch_data(self._storage(), selector, level, col_set, squeeze, proc_func)

    def _fetch_data(self, data: pd.DataFrame, selector: Any, level: str | int | None, col_set: Any,
                    squeeze: bool, proc_func: Callable | None) -> Any:
        if proc_func is not None:
            df = proc_func(fetch_df_by_index(data, selector, level).copy())
            df = fetch_df_by_col(df, col_set)
        else:
            df = fetch_df_by_col(data, col_set)
            df = fetch_df_by_index(df, selector, level)
        if squeeze:
            df = df.squeeze()
            if isinstance(selector, (str, pd.Timestamp)) and isinstance(df, (pd.DataFrame, pd.Series)) \
                    and isinstance(df.index, pd.MultiIndex) and level is not None:
                df = df.reset_index(level=level, drop=True)
        return df

    def get_cols(self, col_set: Any = CS_ALL) -> list:
        """The column names ``fetch(col_set=col_set)`` would return."""
        return list(fetch_df_by_col(self._storage().head(0), col_set).columns)

    def get_range_selector(self, cur_date: Any, periods: int) -> slice:
        """The slice of the ``periods`` trading days ending at ``cur_date``."""
        cal = self._storage().index.get_level_values("datetime").unique().sort_values()
        pos = cal.searchsorted(pd.Timestamp(cur_date), side="right") - 1
        if pos < 0:
            raise ValueError(f"{cur_date} is before the first date of the data ({cal[0].date()})")
        return slice(cal[max(0, pos - periods + 1)], cal[pos])


class DataHandlerLP(DataHandler):
    """A handler with learnable processors: raw, infer and learn data.

    ``infer_processors``/``learn_processors``/``shared_processors`` are processors or configs
    (``{"class": "RobustZScoreNorm", "kwargs": {...}}``). ``process_type`` is ``"append"`` (learn processors
    run on the infer data) or ``"independent"`` (on the raw data). ``drop_raw`` frees the raw frame after
    processing. ``cache`` (None = ``QEXP_DATASET_CACHE``) is passed to a loader given as a config.
    """

    DK_R = "raw"
    DK_I = "infer"
    DK_L = "learn"
    ATTR_MAP = {DK_R: "_data", DK_I: "_infer", DK_L: "_learn"}

    PTYPE_I = "independent"
    PTYPE_A = "append"

    IT_FIT_SEQ = "fit_seq"  # fit each processor on the output of the previous one, then transform
    IT_FIT_IND = "fit_ind"  # fit every processor on the raw data, then transform
    IT_LS = "load_state"  # transform with the already fitted processors

    def __init__(self, instruments: Any = None, start_time: Any = None, end_time: Any = None,
                 data_loader: Any = None, infer_processors: list | None = None,
                 learn_processors: list | None = None, shared_processors: list | None = None,
                 process_type: str = PTYPE_A, drop_raw: bool = False, cache: bool | None = None,
                 **kwargs: Any):
        if process_type not in (self.PTYPE_A, self.PTYPE_I):
            raise ConfigError(f"process_type must be '{self.PTYPE_A}' or '{self.PTYPE_I}', got {process_type!r}")
        self.infer_processors = self._build_processors(infer_processors, "infer_processors")
        self.learn_processors = self._build_processors(learn_processors, "learn_processors")
        self.shared_processors = self._build_processors(shared_processors, "shared_processors")
        for pname in ("infer_processors", "shared_processors"):
            for proc in getattr(self, pname):
                if not proc.is_for_infer():
                    raise ConfigError(f"{type(proc).__name__} drops rows by label and cannot be used in "
                                      f"{pname}; move it to learn_processors")
        self.process_type = process_type
        self.drop_raw = drop_raw
        if cache is not None and isinstance(data_loader, dict):
            data_loader = {**data_loader, "kwargs": {**(data_loader.get("kwargs") or {}), "cache": cache}}
        super().__init__(instruments, start_time, end_time, data_loader, **kwargs)

    @staticmethod
    def _build_processors(procs: list | None, where: str) -> list[Processor]:
        out = []
        for i, proc in enumerate(procs or []):
            out.append(build(proc, where=f"{where}[{i}]", accept_types=Processor,
                             default_module=processor_module))
        return out

    def get_all_processors(self) -> list[Processor]:
        return self.shared_processors + self.infer_processors + self.learn_processors

    # Qlib's signature: DataHandlerLP.config takes processor_kwargs first
    def config(self, processor_kwargs: dict | None = None, recursive: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
        """As :meth:`DataHandler.config`; ``processor_kwargs`` (e.g. new fit times) go to every processor."""
        super().config(recursive=recursive, **kwargs)
        if processor_kwargs is not None:
            for proc in self.get_all_processors():
                proc.config(**processor_kwargs)

    def fit(self) -> None:
        """Fit every processor on the raw data (``IT_FIT_IND``)."""
        for proc in self.get_all_processors():
            proc.fit(self._data)

    def fit_process_data(self) -> None:
        """Fit each processor on its input and transform (``IT_FIT_SEQ``)."""
        self.process_data(with_fit=True)

    @staticmethod
    def _run_proc_l(df: pd.DataFrame, procs: list[Processor], with_fit: bool) -> pd.DataFrame:
        for proc in procs:
            if with_fit:
                proc.fit(df)
            df = proc(df)
        return df

    @staticmethod
    def _is_proc_readonly(procs: list[Processor]) -> bool:
        return all(p.readonly() for p in procs)

    def process_data(self, with_fit: bool = False) -> None:
        """Build the infer and learn data from the raw data (fitting the processors when ``with_fit``)."""
        shared = _input_for(self._storage(), self.shared_processors)
        shared = self._run_proc_l(shared, self.shared_processors, with_fit)

        infer = self._run_proc_l(_input_for(shared, self.infer_processors), self.infer_processors, with_fit)
        self._infer = infer

        learn = shared if self.process_type == self.PTYPE_I else infer
        self._learn = self._run_proc_l(_input_for(learn, self.learn_processors), self.learn_processors, with_fit)

        if self.drop_raw:
            del self._data

    # Qlib's signature: DataHandlerLP.setup_data takes init_type
    def setup_data(self, init_type: str = IT_FIT_SEQ, **kwargs: Any) -> None:  # type: ignore[override]
        """Load the raw data and process it: ``init_type`` is ``"fit_seq"`` (default), ``"fit_ind"`` or
        ``"load_state"`` (reuse the fitted processors, e.g. after unpickling)."""
        if init_type not in (self.IT_FIT_SEQ, self.IT_FIT_IND, self.IT_LS):
            raise ConfigError(f"init_type must be one of {[self.IT_FIT_SEQ, self.IT_FIT_IND, self.IT_LS]}, "
                              f"got {init_type!r}")
        super().setup_data(**kwargs)
        if init_type == self.IT_FIT_IND:
            self.fit()
            self.process_data()
        elif init_type == self.IT_LS:
            self.process_data()
        else:
            self.fit_process_data()

    def has_data(self) -> bool:
        """True when the infer data is loaded."""
        return "_infer" in self.__dict__

    def _get_df_by_key(self, data_key: str = DK_I) -> pd.DataFrame:
        if data_key not in self.ATTR_MAP:
            raise KeyError(f"data_key must be one of {list(self.ATTR_MAP)}, got {data_key!r}")
        attr = self.ATTR_MAP[data_key]
        if attr not in self.__dict__:
            if data_key == self.DK_R and self.drop_raw:
                raise DataNotLoadedError("the raw data was dropped (drop_raw=True); build the handler with "
                                         "drop_raw=False to fetch data_key='raw'")
            raise DataNotLoadedError(f"{type(self).__name__} holds no {data_key} data (it was saved without "
                                     "data); call dataset.setup_data() or handler.setup_data("
                                     "init_type='load_state') to load it again")
        return self.__dict__[attr]

    def _storage(self) -> pd.DataFrame:
        return self._get_df_by_key(self.DK_R)

    # Qlib's signature: DataHandlerLP.fetch takes data_key before squeeze
    def fetch(self, selector: Any = slice(None, None), level: str | int | None = "datetime",  # type: ignore[override]
              col_set: Any = CS_ALL, data_key: str = DK_I, squeeze: bool = False,
              proc_func: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Any:
        """Rows matching ``selector`` (inclusive slice on ``level``), columns of ``col_set``
        (``"__all"``, ``"feature"``, ``"label"`` or a list of groups) from the ``data_key`` frame."""
        return self._fetch_data(self._get_df_by_key(data_key), selector, level, col_set, squeeze, proc_func)

    def get_cols(self, col_set: Any = CS_ALL, data_key: str = DK_I) -> list:
        return list(fetch_df_by_col(self._get_df_by_key(data_key).head(0), col_set).columns)

    @classmethod
    def from_df(cls, df: pd.DataFrame) -> DataHandlerLP:
        """A handler serving ``df`` as is (raw = infer = learn)."""
        from .loader import StaticDataLoader
        return cls(data_loader=StaticDataLoader(df))

    @classmethod
    def cast(cls, handler: DataHandlerLP) -> DataHandlerLP:
        """A plain DataHandlerLP sharing ``handler``'s data and processors (drops subclass behaviour)."""
        new = cls.__new__(cls)
        new.__dict__.update(handler.__dict__)
        return new
