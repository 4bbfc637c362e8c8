"""Data loaders: they turn a config of expressions (or a stored frame) into the handler's raw frame.

The frame is indexed ``(datetime, instrument)``, sorted, with columns ``(group, name)``, e.g.
``("feature", "KMID")`` and ``("label", "LABEL0")``. ``QlibDataLoader`` reads through the active provider
(``qexp.data_api.get_provider()``) and keeps its result in the on-disk dataset cache (:mod:`.cache`).
"""
from __future__ import annotations

import inspect
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from qexp.ext import ConfigError

from . import cache as dataset_cache
from .frame import to_timestamp
from .progress import feature_progress, progress_enabled
from .serial import Serializable

Fields = tuple[list[str], list[str]]


class DataLoader(Serializable):
    """Base class: ``load(instruments, start_time, end_time) -> DataFrame``."""

    # Qlib's DataLoader.load(instruments, start, end) shadows Serializable.load(path), as it does in Qlib
    def load(self, instruments: Any = None, start_time: Any = None, end_time: Any = None) -> pd.DataFrame:  # type: ignore[override]
        raise NotImplementedError(f"{type(self).__name__} must implement load()")


def parse_fields(fields_info: Any, where: str = "config") -> Fields:
    """``[expr, ...]`` (names = exprs) or ``(exprs, names)`` -> ``(exprs, names)``."""
    if not isinstance(fields_info, (list, tuple)):
        raise ConfigError(f"{where}: expected a list of expressions or an (expressions, names) pair, got "
                          f"{type(fields_info).__name__}")
    if len(fields_info) == 0:
        raise ConfigError(f"{where}: the list of fields is empty")
    if isinstance(fields_info[0], str):
        exprs = names = [str(x) for x in fields_info]
    elif isinstance(fields_info[0], (list, tuple)):
        if len(fields_info) != 2:
            raise ConfigError(f"{where}: expected (expressions, names), got {len(fields_info)} items")
        exprs, names = [str(x) for x in fields_info[0]], [str(x) for x in fields_info[1]]
        if len(exprs) != len(names):
            raise ConfigError(f"{where}: {len(exprs)} expressions but {len(names)} names")
    else:
        raise ConfigError(f"{where}: unsupported field entry {fields_info[0]!r}")
    return list(exprs), list(names)


class DLWParser(DataLoader):
    """A loader configured with expressions: ``{"feature": (exprs, names), "label": ...}`` or a plain list."""

    def __init__(self, config: dict | list | tuple):
        self.is_group = isinstance(config, dict)
        if isinstance(config, dict):
            self.fields: Any = {grp: parse_fields(info, f"config[{grp!r}]") for grp, info in config.items()}
        else:
            self.fields = parse_fields(config)

    def groups(self) -> dict[str | None, Fields]:
        """``{group: (exprs, names)}``; the group is None for an ungrouped config."""
        return dict(self.fields) if self.is_group else {None: self.fields}

    def load_group_df(self, instruments: Any, exprs: list[str], names: list[str], start_time: Any = None,
                      end_time: Any = None, gp_name: str | None = None) -> pd.DataFrame:
        raise NotImplementedError

    # Qlib's DataLoader.load(instruments, start, end) shadows Serializable.load(path), as it does in Qlib
    def load(self, instruments: Any = None, start_time: Any = None, end_time: Any = None) -> pd.DataFrame:  # type: ignore[override]
        if self.is_group:
            return pd.concat({grp: self.load_group_df(instruments, exprs, names, start_time, end_time, grp)
                              for grp, (exprs, names) in self.fields.items()}, axis=1)
        exprs, names = self.fields
        return self.load_group_df(instruments, exprs, names, start_time, end_time)


class QlibDataLoader(DLWParser):
    """Loads expressions through the active data provider.

    ``instruments`` is a market name (``"csi300"``, ``"all"``: rows are limited to the membership spans) or a
    list of codes. ``filter_pipe`` (Qlib's ``NameDFilter``/``ExpressionDFilter`` dicts) is applied by the
    provider when it accepts Qlib's ``{"market", "filter_pipe"}`` instruments config, else ``NameDFilter``
    is applied here and other filters are ignored with a warning. ``inst_processors`` are callables (or
    configs) ``proc(df, instrument=code) -> df`` applied per instrument. ``cache=None`` follows ``QEXP_DATASET_CACHE`` (on unless ``0``/``false``/``off``).
    """

    @classmethod
    def dry_run_problems(cls, kwargs: dict) -> list[str]:
        """``--dry-run``: a ``freq`` the provider cannot serve."""
        from .store import freq_problems
        return freq_problems(kwargs["freq"]) if "freq" in kwargs else []

    def __init__(self, config: dict | list | tuple, filter_pipe: list | None = None, swap_level: bool = True,
                 freq: str | dict = "day", inst_processors: list | dict | None = None,
                 cache: bool | None = None):
        self.filter_pipe = filter_pipe
        self.swap_level = swap_level
        self.freq = freq
        self.inst_processors = inst_processors if inst_processors is not None else []
        if not isinstance(self.inst_processors, (list, dict)):
            raise ConfigError("inst_processors must be a list (or a {freq: list} dict) of processors")
        self.cache = cache
        super().__init__(config)

    # ---- public ---------------------------------------------------------------------------------
    # Qlib's DataLoader.load(instruments, start, end) shadows Serializable.load(path), as it does in Qlib
    def load(self, instruments: Any = None, start_time: Any = None, end_time: Any = None) -> pd.DataFrame:  # type: ignore[override]
        if instruments is None:
            warnings.warn("QlibDataLoader: `instruments` is not set; loading all instruments", stacklevel=2)
            instruments = "all"
        from qexp.ext import get_provider
        provider = get_provider()
        key = None
        if dataset_cache.enabled(self.cache):
            key = dataset_cache.entry_key(provider, self.cache_config(instruments, start_time, end_time),
                                          instruments=instruments, start_time=start_time, end_time=end_time)
            if key is not None:
                hit = dataset_cache.load(key)
                if hit is not None:
                    return hit
        if key is None:
            return self._compute(provider, instruments, start_time, end_time)
        return dataset_cache.get_or_create(key, lambda: self._compute(provider, instruments, start_time,
                                                                      end_time))

    def load_group_df(self, instruments: Any, exprs: list[str], names: list[str], start_time: Any = None,
                      end_time: Any = None, gp_name: str | None = None) -> pd.DataFrame:
        """One group's frame (Qlib's hook; :meth:`load` reads all groups in one provider call instead)."""
        from qexp.ext import get_provider
        df = self._features(get_provider(), instruments, exprs, start_time, end_time, self._freq(gp_name))
        df.columns = pd.Index(names)
        return df

    def all_exprs(self) -> list[str]:
        """Every expression of the config, in column order."""
        return [e for exprs, _ in self.groups().values() for e in exprs]

    def cache_config(self, instruments: Any, start_time: Any, end_time: Any) -> dict:
        """What the loaded frame depends on besides the data itself (the cache key's config part)."""
        return {
            "loader": f"{type(self).__module__}.{type(self).__qualname__}",
            "fields": {str(g): [list(e), list(n)] for g, (e, n) in self.groups().items()},
            "instruments": instruments if isinstance(instruments, str) else list(instruments),
            "start_time": None if start_time is None else str(pd.Timestamp(start_time)),
            "end_time": None if end_time is None else str(pd.Timestamp(end_time)),
            "freq": self.freq,
            "filter_pipe": self.filter_pipe,
            "inst_processors": _describe(self.inst_processors),
            "swap_level": self.swap_level,
        }

    # ---- computation ----------------------------------------------------------------------------
    def _freq(self, group: str | None) -> str:
        if isinstance(self.freq, dict):
            if group not in self.freq:
                raise ConfigError(f"freq is a per-group dict {self.freq} but has no entry for group {group!r}")
            return self.freq[group]
        return self.freq

    def _compute(self, provider: Any, instruments: Any, start_time: Any, end_time: Any) -> pd.DataFrame:
        groups = self.groups()
        by_freq: dict[str, list[str | None]] = {}
        for grp in groups:
            by_freq.setdefault(self._freq(grp), []).append(grp)
        parts = []
        for freq, grps in by_freq.items():
            exprs = [e for g in grps for e in groups[g][0]]
            df = self._features(provider, instruments, exprs, start_time, end_time, freq)
            if self.is_group:
                df.columns = pd.MultiIndex.from_tuples([(g, n) for g in grps for n in groups[g][1]])
            else:
                df.columns = pd.Index(groups[None][1])
            parts.append(df)
        df = parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)
        if self.is_group and len(parts) > 1:
            # keep the config's group order
            df = df.loc[:, [(g, n) for g, (_, names) in groups.items() for n in names]]
        if not self.swap_level:
            df = df.swaplevel().sort_index()
        return df

    def _features(self, provider: Any, instruments: Any, exprs: list[str], start_time: Any, end_time: Any,
                  freq: str) -> pd.DataFrame:
        """``exprs`` (duplicates allowed) for ``instruments``: index (datetime, instrument), one column each."""
        codes, spans = self._resolve_instruments(provider, instruments, start_time, end_time)
        unique = list(dict.fromkeys(exprs))
        df = _provider_features(provider, codes, unique, start_time, end_time, freq)
        if len(unique) != len(exprs):
            pos = {e: i for i, e in enumerate(unique)}
            df = df.iloc[:, [pos[e] for e in exprs]]
        if spans is not None:
            df = _mask_spans(df, spans)
        df = self._apply_inst_processors(df, freq)
        if not _is_sorted(df.index):
            df = df.sort_index()
        return df

    def _resolve_instruments(self, provider: Any, instruments: Any, start_time: Any,
                             end_time: Any) -> tuple[Any, dict | None]:
        """The ``instruments`` argument for the provider, plus spans to mask by when a filter picked codes."""
        if isinstance(instruments, dict) and "market" in instruments:
            # Qlib's D.instruments(...) config form
            pipe = list(instruments.get("filter_pipe") or []) + list(self.filter_pipe or [])
            return self._filtered(provider, str(instruments["market"]), pipe, start_time, end_time)
        if isinstance(instruments, str):
            if not self.filter_pipe:
                return instruments, None
            return self._filtered(provider, instruments, list(self.filter_pipe), start_time, end_time)
        if self.filter_pipe:
            warnings.warn("QlibDataLoader: filter_pipe is ignored when instruments is a list of codes",
                          stacklevel=3)
        return list(instruments), None

    @staticmethod
    def _filtered(provider: Any, market: str, pipe: list, start_time: Any, end_time: Any) -> tuple[list, dict]:
        """Codes and membership spans of ``market`` after ``pipe``, by the provider when it takes Qlib's
        ``{"market", "filter_pipe"}`` config (all of Qlib's filters), else NameDFilter applied here."""
        if not pipe:
            spans = provider.list_instruments(market, start_time, end_time, as_list=False)
            return sorted(spans), spans
        try:
            spans = provider.list_instruments({"market": market, "filter_pipe": pipe}, start_time, end_time,
                                              as_list=False)
        except (TypeError, KeyError, AttributeError, ValueError):
            spans = provider.list_instruments(market, start_time, end_time, as_list=False)
            spans = _apply_filter_pipe(spans, pipe)
        return sorted(spans), spans

    def _apply_inst_processors(self, df: pd.DataFrame, freq: str) -> pd.DataFrame:
        procs = self.inst_processors.get(freq, []) if isinstance(self.inst_processors, dict) \
            else self.inst_processors
        if not procs:
            return df
        from .instantiate import build
        callables = [build(p, where="inst_processors") for p in procs]
        out = []
        for inst, part in df.groupby(level="instrument", sort=False):
            frame = part.droplevel("instrument")
            for proc in callables:
                frame = proc(frame, instrument=inst)
            out.append(pd.concat({inst: frame}, names=["instrument"]).swaplevel())
        return pd.concat(out).sort_index()


class StaticDataLoader(DataLoader):
    """Serves a stored frame: a DataFrame, a pickle / parquet path, or ``{group: frame-or-path}``.

    The frame must be indexed ``(datetime, instrument)``; ``load`` filters instruments (a code, a list of
    codes, ``"all"``, or a market name resolved through the provider) and the inclusive time range.
    """

    include_attr = ["_config"]

    def __init__(self, config: dict | str | os.PathLike | pd.DataFrame, join: str = "outer"):
        # "_config" because Serializable.config is a method
        self._config = config
        self.join = join
        self._data: pd.DataFrame | None = None

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_data", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._data = None

    # Qlib's DataLoader.load(instruments, start, end) shadows Serializable.load(path), as it does in Qlib
    def load(self, instruments: Any = None, start_time: Any = None, end_time: Any = None) -> pd.DataFrame:  # type: ignore[override]
        df = self._raw()
        if instruments is not None and not (isinstance(instruments, str) and instruments == "all"):
            codes = self._codes(df, instruments, start_time, end_time)
            df = df[df.index.get_level_values("instrument").isin(codes)]
        if start_time is None and end_time is None:
            return df
        from .frame import fetch_df_by_index
        return fetch_df_by_index(df, slice(to_timestamp(start_time), to_timestamp(end_time)), "datetime")

    def _codes(self, df: pd.DataFrame, instruments: Any, start_time: Any, end_time: Any) -> list:
        if not isinstance(instruments, str):
            return list(instruments)
        if instruments in set(df.index.get_level_values("instrument")):
            return [instruments]
        from qexp.ext import get_provider, has_provider
        if not has_provider():
            raise ConfigError(f"StaticDataLoader: instruments={instruments!r} is neither a code in the data "
                              f"nor 'all'; pass a list of codes, or set a provider to resolve market names")
        return list(get_provider().list_instruments(instruments, start_time, end_time, as_list=True))

    def _raw(self) -> pd.DataFrame:
        if self._data is None:
            cfg = self._config
            if isinstance(cfg, dict):
                data = pd.concat({grp: _read_frame(src) for grp, src in cfg.items()}, axis=1, join=self.join)
            else:
                data = _read_frame(cfg)
            if list(data.index.names) != ["datetime", "instrument"]:
                if list(data.index.names) == ["instrument", "datetime"]:
                    data = data.swaplevel()
                else:
                    raise ConfigError("StaticDataLoader: the frame must be indexed (datetime, instrument); "
                                      f"its index levels are {list(data.index.names)}")
            self._data = data if _is_sorted(data.index) else data.sort_index()
        return self._data


def _read_frame(src: Any) -> pd.DataFrame:
    if isinstance(src, pd.DataFrame):
        return src
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise ConfigError(f"StaticDataLoader: {str(path)!r} does not exist")
        if path.suffix == ".parquet":
            return pd.read_parquet(path, engine="pyarrow")
        with path.open("rb") as f:
            return pickle.load(f)
    raise ConfigError(f"StaticDataLoader: expected a DataFrame or a file path, got {type(src).__name__}")


# When the bar needs steps and the provider cannot report progress itself, the fields are requested in about
# PROGRESS_STEPS calls of at least PROGRESS_CHUNK fields: each call repeats the raw-field loads, so few steps.
PROGRESS_CHUNK = 16
PROGRESS_STEPS = 5


def _provider_features(provider: Any, codes: Any, exprs: list[str], start_time: Any, end_time: Any,
                       freq: str) -> pd.DataFrame:
    """``provider.features`` for distinct ``exprs``, with a progress bar on a terminal.

    A provider whose ``features`` takes a ``progress`` callback reports per field; otherwise the fields are
    requested in chunks (only when the bar is shown: one call shares the most work inside the provider).
    """
    if not progress_enabled() or len(exprs) <= 1:
        return _columns_in_order(provider.features(codes, exprs, start_time, end_time, freq=freq), exprs)
    with feature_progress(len(exprs), desc=f"features ({len(exprs)} fields)") as update:
        if "progress" in inspect.signature(provider.features).parameters:
            df = provider.features(codes, exprs, start_time, end_time, freq=freq, progress=update)
            return _columns_in_order(df, exprs)
        parts = []
        size = max(PROGRESS_CHUNK, -(-len(exprs) // PROGRESS_STEPS))
        for i in range(0, len(exprs), size):
            chunk = exprs[i:i + size]
            parts.append(_columns_in_order(provider.features(codes, chunk, start_time, end_time, freq=freq), chunk))
            update(len(chunk))
    if all(p.index.equals(parts[0].index) for p in parts[1:]):
        return pd.concat(parts, axis=1)
    return pd.concat(parts, axis=1, join="outer").sort_index()


def _columns_in_order(df: pd.DataFrame, exprs: list[str]) -> pd.DataFrame:
    """The provider's frame with its columns in the order asked for."""
    cols = list(df.columns)
    if cols == exprs:
        return df
    if len(cols) != len(exprs):
        raise RuntimeError(f"the data provider returned {len(cols)} columns for {len(exprs)} expressions")
    if set(cols) == set(exprs):
        return df.loc[:, exprs]
    # the provider renamed the columns (e.g. normalised spaces); it keeps the order of the request
    return df


def _is_sorted(index: pd.Index) -> bool:
    return bool(index.is_monotonic_increasing)


def _mask_spans(df: pd.DataFrame, spans: dict[str, list]) -> pd.DataFrame:
    """Keep rows whose datetime lies in one of the instrument's ``(start, end)`` spans."""
    dt = df.index.get_level_values("datetime").to_numpy(dtype="datetime64[ns]")
    pos = df.index.names.index("instrument")
    codes = np.asarray(df.index.codes[pos])
    level = df.index.levels[pos]
    keep = np.zeros(len(df), dtype=bool)
    n_spans = max((len(s) for s in spans.values()), default=0)
    # one vectorised pass per span rank (codes rarely have more than a few membership spans)
    for k in range(n_spans):
        lo = np.full(len(level), np.datetime64("NaT"), dtype="datetime64[ns]")
        hi = lo.copy()
        for i, code in enumerate(level):
            code_spans = spans.get(code, ())
            if k < len(code_spans):
                lo[i] = np.datetime64(pd.Timestamp(code_spans[k][0]), "ns")
                hi[i] = np.datetime64(pd.Timestamp(code_spans[k][1]), "ns")
        keep |= (dt >= lo[codes]) & (dt <= hi[codes])
    return df[keep]


def _apply_filter_pipe(spans: dict[str, list], filter_pipe: Iterable[dict]) -> dict[str, list]:
    """Apply Qlib's ``NameDFilter`` (regex on the code); other filters are ignored with a warning."""
    for flt in filter_pipe:
        ftype = flt.get("filter_type") if isinstance(flt, dict) else type(flt).__name__
        if ftype == "NameDFilter":
            rule = flt.get("name_rule_re") if isinstance(flt, dict) else flt.name_rule_re
            if not isinstance(rule, str):
                raise ConfigError(f"QlibDataLoader: NameDFilter needs name_rule_re, a regular expression of codes "
                                  f"(got {rule!r})")
            spans = {c: s for c, s in spans.items() if re.match(rule, c)}
        else:
            warnings.warn(f"QlibDataLoader: filter {ftype!r} is not supported and is ignored "
                          "(only NameDFilter is applied)", stacklevel=4)
    return spans


def _describe(obj: Any) -> Any:
    """A JSON-able description of configs that may contain objects (for cache keys)."""
    if isinstance(obj, dict):
        return {str(k): _describe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_describe(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return f"{type(obj).__module__}.{type(obj).__qualname__}:{sorted(vars(obj).items()) if hasattr(obj, '__dict__') else repr(obj)}"
