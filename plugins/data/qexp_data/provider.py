"""``LocalProvider``: Qlib's ``D.calendar`` / ``D.list_instruments`` / ``D.features`` over a Qlib-format folder.

The ``features`` contract (the handlers code against it):

* ``features(instruments, fields, start_time=None, end_time=None, freq="day") -> pd.DataFrame``
* index: ``pd.MultiIndex`` named ``("datetime", "instrument")``, sorted by datetime then instrument code;
  datetime values are calendar days (``datetime64[ns]``), instrument values the codes as given (upper-case
  codes from instruments files for a market name).
* columns: one per distinct field string, in request order, named by the field string exactly as passed
  (``"Ref($close, 1)/$close"``, spaces kept); dtype float32.
* rows: for each instrument, every calendar day in ``[start_time, end_time]`` that lies within its data files
  (suspended days inside are NaN rows) and, for a market or config, within its membership spans.
* values follow Qlib's ``D.features``: each expression sees history loaded before ``start_time`` (windows at
  ``start_time`` are full), future bars after ``end_time`` (``Ref($close, -2)`` at ``end_time``), history from
  before index membership; final float32 cast.
"""
from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import ExpressionError, UnknownFieldError
from .expr import Evaluator, Layout, fields as expr_fields, kernels as K, max_window, parse, top_frame
from .rows import _frame, _other_fields, _row_mask
from .store import QlibStore, check_freq
from .universe import Spans, resolve

# price/volume fields Qlib data folders may lack; reading an absent one gives NaN, as Qlib does
STANDARD_FIELDS = frozenset({"open", "close", "high", "low", "volume", "vwap", "factor", "change", "amount"})


def _ts(value: Any, default: pd.Timestamp) -> pd.Timestamp:
    return default if value is None else pd.Timestamp(value)


class LocalProvider:
    """Data provider over a local Qlib-format folder (``provider_uri``)."""

    def __init__(self, uri: str | os.PathLike, **_: Any):
        from qexp.ext import file_uri_to_path
        self.uri = os.fspath(uri)
        self.root = Path(file_uri_to_path(self.uri)).expanduser().absolute()
        self.store = QlibStore(self.root)

    def __repr__(self) -> str:
        return f"LocalProvider({str(self.root)!r})"

    # -- Qlib's memory cache H: calendars expire after mem_cache_expire, so an updated folder is seen again
    def _refresh(self) -> None:
        """Drop the folder's cached metadata (calendar, markets, fields) once its ``H["c"]`` entry expired."""
        from .memcache import H
        key = ("calendar", str(self.root))
        if H["c"].get(key, expire=H.expire) is None:
            st = self.store
            st._calendar = st._future = st._fields = st._dirs = None
            st._markets = {}
            H["c"].set(key, st.calendar())

    # -- calendar and instruments
    def calendar(self, start_time: Any = None, end_time: Any = None, freq: str = "day",
                 future: bool = False) -> pd.DatetimeIndex:
        """Trading days in ``[start_time, end_time]`` (``day_future.txt`` when ``future`` and present)."""
        check_freq(freq)
        self._refresh()
        cal = self.store.calendar(future=future)
        if len(cal) == 0:
            return cal
        lo = cal.searchsorted(_ts(start_time, cal[0]), "left")
        hi = cal.searchsorted(_ts(end_time, cal[-1]), "right")
        return cal[lo:hi]

    def list_instruments(self, instruments: Any = "all", start_time: Any = None, end_time: Any = None,
                         as_list: bool = False, freq: str = "day") -> Any:
        """``{code: [(start, end), ...]}`` clipped to the bounds (codes without overlap dropped), or the
        sorted list of codes when ``as_list``. Accepts a market name, a ``D.instruments`` config or a list."""
        from .memcache import H
        self._refresh()
        cal = self.store.calendar()
        start, end = _ts(start_time, cal[0]), _ts(end_time, cal[-1])
        key = ("instruments", str(self.root), repr(instruments), str(start), str(end))
        cached = H["i"].get(key)
        if cached is None:
            codes, spans = resolve(self.store, instruments, start, end, self.features)
            if spans is None:
                first, last = self.store.spans(codes, [])
                spans = {c: [(max(start, cal[f]), min(end, cal[la]))] for c, f, la in zip(codes, first, last)
                         if f <= la and max(start, cal[f]) <= min(end, cal[la])}
                codes = sorted(spans)
            cached = (list(codes), {c: list(spans[c]) for c in codes})
            H["i"].set(key, cached)
        codes, spans = cached
        return list(codes) if as_list else {c: list(spans[c]) for c in codes}

    # -- features
    def features(self, instruments: Any, fields: Sequence[str], start_time: Any = None, end_time: Any = None,
                 freq: str = "day", **_: Any) -> pd.DataFrame:
        """Values of Qlib expressions; see the module docstring for the index/column contract."""
        check_freq(freq)
        self._refresh()
        names = list(dict.fromkeys(str(f) for f in ([fields] if isinstance(fields, str) else fields)))
        nodes = []
        for name in names:
            try:
                nodes.append(parse(name))
            except ExpressionError as exc:
                raise ExpressionError(f"Field {name!r}: {exc}") from None
        cal = self.store.calendar()
        start, end = _ts(start_time, cal[0]), _ts(end_time, cal[-1])
        codes, spans = resolve(self.store, instruments, start, end, self.features)
        s = int(cal.searchsorted(start, "left"))
        e = int(cal.searchsorted(end, "right")) - 1
        if not nodes or not codes or s > e or s >= len(cal):
            return _empty(names)
        used = sorted(set().union(*(expr_fields(n) for n in nodes)) | _other_fields(nodes))
        self._check_fields(used, names, nodes)
        from . import cache as data_cache
        if data_cache.expression_cache_enabled():
            from .exprcache import evaluate_cached
            return evaluate_cached(self, codes, spans, nodes, names, s, e, freq)
        return self._evaluate(codes, spans, nodes, names, s, e, len(cal), used)

    def _check_fields(self, used: list[str], names: list[str], nodes: list) -> None:
        available = self.store.fields()
        missing = [f for f in used if f not in available]
        # Qlib reads an absent standard field as NaN: Yahoo cn_data has no $vwap, and Alpha158's VWAP0
        # is then an all-NaN column rather than an error
        standard = [f for f in missing if f in STANDARD_FIELDS]
        if standard and not getattr(self, "_warned_missing", None) == set(standard):
            self._warned_missing = set(standard)
            warnings.warn(f"{self.root} has no {', '.join('$' + f for f in standard)}; expressions using "
                          f"{'it' if len(standard) == 1 else 'them'} are NaN, as in Qlib", RuntimeWarning,
                          stacklevel=4)
        missing = [f for f in missing if f not in STANDARD_FIELDS]
        if missing:
            where = next(n for n, node in zip(names, nodes) if missing[0] in repr(node))
            raise UnknownFieldError(
                f"Unknown field ${missing[0]} in expression {where!r}: no features/*/{missing[0]}.day.bin in "
                f"{self.root}. Available fields: {', '.join('$' + f for f in available) or 'none'}.")

    def _evaluate(self, codes: list[str], spans: Spans | None, nodes: list, names: list[str], s: int, e: int,
                  n_days: int, used: list[str], own: list[str] | None = None,
                  rows: np.ndarray | None = None) -> pd.DataFrame:
        """Values of ``nodes`` on the rows of ``codes`` x days ``[s, e]`` inside the data files of the fields
        ``own`` (default: the fields the nodes read) and the membership ``spans`` (or the given ``rows``)."""
        frames = [top_frame(n, s, e, n_days) for n in nodes]
        q_min, qend_max = min(f[0] for f in frames), max(f[1] for f in frames)
        pad = max(0, max(max_window(n) for n in nodes) - 1)
        layout = Layout(base=q_min, pad=pad, width=pad + qend_max - q_min + 1)
        if own is None:
            own = sorted(set().union(*(expr_fields(n) for n in nodes)))
        first, last = self.store.spans(codes, own)
        if rows is None:
            rows = _row_mask(codes, spans, first, last, s, e, self.store.calendar())
        t_idx, i_idx = np.nonzero(rows.T)                       # datetime-major order
        out = np.empty((len(nodes), len(t_idx)), dtype=np.float32)

        stop = threading.Event()  # set when a chunk fails, so the others stop early

        def evaluate_chunk(a: int, b: int) -> None:
            """Fill ``out``'s rows of instruments ``codes[a:b]``; expressions never look across instruments,
            so chunks are independent and each has its own evaluator (and sub-expression cache)."""
            ev = self._evaluator(codes[a:b], layout, first[a:b], last[a:b], q_min, qend_max)
            keys = [ev.add_output(node, fr) for node, fr in zip(nodes, frames)]
            pos = None if (a, b) == (0, len(codes)) else np.flatnonzero((i_idx >= a) & (i_idx < b))
            ii, tt = (i_idx, t_idx) if pos is None else (i_idx[pos], t_idx[pos])
            flat = (ii - a) * layout.width + (layout.col(s) + tt)
            gathered = np.empty(len(flat))   # np.take into a reused buffer, then one float32 cast
            for j, key in enumerate(keys):
                if stop.is_set():
                    return
                val = ev.compute(key)
                fr = ev.frame(key[1] if key[0] != "const" else ())
                arr = np.ascontiguousarray(K.as_float(val, fr))
                np.take(arr.reshape(-1), flat, out=gathered)
                if pos is None:
                    out[j] = gathered
                else:
                    out[j, pos] = gathered
                ev.release(key)

        bounds = _chunk_bounds(len(codes), feature_threads("day"))
        if len(bounds) == 1:
            evaluate_chunk(*bounds[0])
        else:
            # numpy and pandas' window kernels release the GIL, so threads give Qlib's worker-process
            # parallelism without pickling panels between processes
            from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
            pool = ThreadPoolExecutor(len(bounds), thread_name_prefix="qexp-features")
            try:
                futures = [pool.submit(evaluate_chunk, a, b) for a, b in bounds]
                wait(futures, return_when=FIRST_EXCEPTION)
                for f in sorted(futures, key=lambda f: not f.done()):  # a failed one raises first
                    f.result()
            except BaseException:
                stop.set()  # the first error (or Ctrl-C) surfaces once the running chunks see the flag
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return _frame(out, self.store.calendar(), codes, t_idx, i_idx, s, e, names)

    def _evaluator(self, codes: list[str], layout: Layout, first: np.ndarray, last: np.ndarray, q: int,
                   qend: int) -> Evaluator:
        subs: dict[str, Evaluator] = {}

        def sub(code: str) -> Evaluator:
            if code not in subs:
                if not self.store.has_instrument(code):
                    from .errors import DataError
                    raise DataError(f"ChangeInstrument/Mask: instrument {code!r} has no data in {self.root}.")
                f, la = self.store.spans([code], self.store.fields())
                subs[code] = self._evaluator([code], layout, f, la, q, qend)
            return subs[code]

        def load(field: str) -> np.ndarray:
            return self._panel(codes, field, layout.base, layout.base + layout.width - layout.pad - 1, layout.pad)

        ev = Evaluator(layout, load, first, last, sub=sub)
        ev.set_global_range(q, qend)
        return ev

    def _panel(self, codes: Sequence[str], field: str, lo: int, hi: int, pad: int) -> np.ndarray:
        """:meth:`QlibStore.panel` through ``H["f"]``: whole feature files kept by path, size and mtime (a
        rewritten file is read again)."""
        from .binfmt import feature_path, read_bin
        from .memcache import H
        unit = H["f"]
        out = np.full((len(codes), pad + hi - lo + 1), np.nan)
        for i, code in enumerate(codes):
            path = feature_path(self.root, code, field)
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            key = (str(path), st.st_size, st.st_mtime_ns)
            whole = unit.get(key)
            if whole is None:
                whole = read_bin(path)
                unit.set(key, whole)
            start, values = whole
            a, b = max(lo, start), min(hi, start + len(values) - 1)
            if a <= b:
                out[i, pad + a - lo: pad + b - lo + 1] = values[a - start: b - start + 1]
        return out


# Below this many instruments per chunk, a thread costs more than it saves.
MIN_CODES_PER_THREAD = 32


_kernels: dict[str, Any] = {"kernels": None}


def set_kernels(kernels: Any) -> None:
    """Qlib's ``kernels`` from ``qexp.init``: an int or a callable of the frequency (None: the default)."""
    _kernels["kernels"] = kernels


def feature_threads(freq: str = "day") -> int:
    """Threads for feature computation: Qlib's ``kernels`` (``qexp.init(kernels=...)``), else
    ``QEXP_DATA_THREADS``, else the CPUs this process may use (at most 8)."""
    from qexp.ext import resolve_kernels
    return resolve_kernels(_kernels["kernels"], freq)


def _chunk_bounds(n_codes: int, threads: int) -> list[tuple[int, int]]:
    """``[(a, b), ...]``: contiguous instrument ranges, one per thread, each of at least
    ``MIN_CODES_PER_THREAD``."""
    k = max(1, min(threads, n_codes // max(1, MIN_CODES_PER_THREAD)))
    edges = np.linspace(0, n_codes, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _empty(names: list[str]) -> pd.DataFrame:
    index = pd.MultiIndex.from_arrays([pd.DatetimeIndex([]), pd.Index([], dtype=object)],
                                      names=["datetime", "instrument"])
    return pd.DataFrame({n: pd.Series([], dtype=np.float32) for n in names}, index=index)
