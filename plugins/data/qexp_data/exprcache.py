"""Qlib's ``DiskExpressionCache`` in qexp: each instrument's series of each expression, over the whole
calendar, kept as a small entry (raw float32 values + JSON metadata) in the active cache store.

``qexp.init(expression_cache="DiskExpressionCache")`` turns it on. An entry's key covers the expression, the
instrument, the calendar file and the sizes and mtimes of the feature files the expression reads, so changed
data is never served. As in Qlib, a cached series is computed over all of the instrument's data, so an
expression whose value depends on where its history starts (``EMA``) can differ in its first days from one
computed for a shorter range. Expressions reading other instruments (``ChangeInstrument``, ``Mask``) are
always computed.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
import pandas as pd

from .expr import fields as expr_fields
from .rows import _frame, _other_fields, _row_mask
from .universe import Spans

BATCH = 2000  # keys per store round trip


def _fingerprint(path: Any) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def evaluate_cached(prov: Any, codes: list[str], spans: Spans | None, nodes: list, names: list[str], s: int,
                    e: int, freq: str = "day") -> pd.DataFrame:
    """``prov.features`` through the expression cache: hits are read, misses computed once and stored."""
    from . import cache as data_cache
    from .binfmt import FREQ, feature_path

    store = data_cache.active_store()
    cal = prov.store.calendar()
    n_days = len(cal)
    node_fields = [sorted(expr_fields(n)) for n in nodes]
    all_fields = sorted(set().union(*node_fields))
    first, last = prov.store.spans(codes, all_fields)
    rows = _row_mask(codes, spans, first, last, s, e, cal)
    t_idx, i_idx = np.nonzero(rows.T)
    out = np.full((len(nodes), len(t_idx)), np.nan, dtype=np.float32)

    cacheable = [j for j, n in enumerate(nodes) if not _other_fields([n])]
    direct = [j for j in range(len(nodes)) if j not in set(cacheable)]
    if direct:
        df = prov._evaluate(codes, spans, [nodes[j] for j in direct], [names[j] for j in direct], s, e, n_days,
                            all_fields, own=all_fields, rows=rows)
        out[direct] = df.to_numpy().T

    if cacheable:
        cal_fp = _fingerprint(prov.root / "calendars" / f"{FREQ}.txt")
        file_fp = {(c, f): _fingerprint(feature_path(prov.root, c, f)) for c in codes for f in all_fields}
        engine = str(getattr(prov, "engine_version", ""))

        def key(j: int, code: str) -> str:
            payload = [engine, str(prov.root), freq, cal_fp, code, names[j],
                       [file_fp[(code, f)] for f in node_fields[j]]]
            return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:40]

        keys = {(j, i): key(j, c) for j in cacheable for i, c in enumerate(codes)}
        flat = list(keys.items())
        series: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
        if not data_cache.rebuilding():
            for a in range(0, len(flat), BATCH):
                part = flat[a:a + BATCH]
                for (ji, _), got in zip(part, store.get_many_arrays([k for _, k in part])):
                    if got is not None:
                        arrays, meta = got
                        series[ji] = (int(meta["first"]), arrays["v"])
        missing = [ji for ji, _ in flat if ji not in series]
        if missing:
            series.update(_compute_and_store(prov, store, codes, nodes, names, node_fields, keys, missing, n_days))
        order = np.argsort(i_idx, kind="stable")
        bounds = np.searchsorted(i_idx[order], np.arange(len(codes) + 1))
        for i in range(len(codes)):
            pos = order[bounds[i]:bounds[i + 1]]
            if not len(pos):
                continue
            days = s + t_idx[pos]
            for j in cacheable:
                f0, v = series[(j, i)]
                k = days - f0
                ok = (k >= 0) & (k < len(v))
                out[j, pos[ok]] = v[k[ok]]
    return _frame(out, cal, codes, t_idx, i_idx, s, e, names)


def _compute_and_store(prov: Any, store: Any, codes: list[str], nodes: list, names: list[str],
                       node_fields: list[list[str]], keys: dict, missing: list[tuple[int, int]],
                       n_days: int) -> dict[tuple[int, int], tuple[int, np.ndarray]]:
    """Whole-calendar series of the missing (node, instrument) pairs, each cut to the span of the node's own
    fields; stored as small entries."""
    js = sorted({j for j, _ in missing})
    iis = sorted({i for _, i in missing})
    sub_codes = [codes[i] for i in iis]
    own = sorted(set().union(*(node_fields[j] for j in js)))
    df = prov._evaluate(sub_codes, None, [nodes[j] for j in js], [names[j] for j in js], 0, n_days - 1, n_days,
                        own, own=own)
    values = df.to_numpy()
    lvl_t = df.index.codes[0]
    lvl_i = df.index.codes[1]
    field_spans = {f: prov.store.spans(sub_codes, [f]) for f in own}
    want = set(missing)
    got: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
    items = []
    order = np.argsort(lvl_i, kind="stable")
    bounds = np.searchsorted(lvl_i[order], np.arange(len(sub_codes) + 1))
    for si, i in enumerate(iis):
        pos = order[bounds[si]:bounds[si + 1]]
        days = np.asarray(lvl_t[pos], dtype=np.int64)
        for col, j in enumerate(js):
            if (j, i) not in want:
                continue
            fields = node_fields[j]
            if fields:
                f0 = min(int(field_spans[f][0][si]) for f in fields)
                f1 = max(int(field_spans[f][1][si]) for f in fields)
            else:
                f0, f1 = (int(days.min()), int(days.max())) if len(days) else (0, -1)
            if f1 < f0 or not len(days):
                v = np.empty(0, dtype=np.float32)
                f0 = 0
            else:
                v = np.full(f1 - f0 + 1, np.nan, dtype=np.float32)
                inside = (days >= f0) & (days <= f1)
                v[days[inside] - f0] = values[pos[inside], col]
            got[(j, i)] = (f0, v)
            items.append((keys[(j, i)], {"v": v}, {"first": f0, "expression": names[j], "instrument": codes[i]}))
    for a in range(0, len(items), BATCH):
        store.put_many_arrays(items[a:a + BATCH])
    return got
