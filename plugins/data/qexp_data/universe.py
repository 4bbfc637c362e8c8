"""Which instruments a request means, and their membership spans: market names, code lists, Qlib's
``D.instruments(market, filter_pipe)`` dicts, and ``{code: [(start, end), ...]}`` dicts."""
from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import pandas as pd

from .errors import DataError
from .store import QlibStore

Spans = dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]


def instruments_config(market: str = "all", filter_pipe: list | None = None) -> dict:
    """Qlib's ``D.instruments``: a stock-pool config ``{"market": ..., "filter_pipe": [...]}``."""
    return {"market": market, "filter_pipe": list(filter_pipe or [])}


def _clip(spans: Spans, start: pd.Timestamp, end: pd.Timestamp) -> Spans:
    out: Spans = {}
    for code, rows in spans.items():
        kept = [(max(start, s), min(end, e)) for s, e in rows if max(start, s) <= min(end, e)]
        if kept:
            out[code] = kept
    return out


def resolve(store: QlibStore, instruments: Any, start: pd.Timestamp, end: pd.Timestamp,
            features: Callable[..., pd.DataFrame] | None = None) -> tuple[list[str], Spans | None]:
    """Codes (sorted) and membership spans clipped to ``[start, end]``; spans is None for a plain list of
    codes (no membership mask, as in Qlib)."""
    if instruments is None:
        instruments = "all"
    if isinstance(instruments, str):
        instruments = instruments_config(instruments)
    if isinstance(instruments, dict) and "market" in instruments:
        spans = _clip(dict(store.instruments(str(instruments["market"]))), start, end)
        for flt in instruments.get("filter_pipe") or []:
            spans = apply_filter(flt, spans, start, end, features)
        return sorted(spans), spans
    if isinstance(instruments, dict):
        spans = {str(k): [(pd.Timestamp(s), pd.Timestamp(e)) for s, e in v] for k, v in instruments.items()}
        spans = _clip(spans, start, end)
        return sorted(spans), spans
    if isinstance(instruments, (list, tuple, set, pd.Index, np.ndarray)):
        return sorted(dict.fromkeys(str(c) for c in instruments)), None
    raise DataError(f"Unsupported instruments {instruments!r}: pass a market name ('csi300'), a list of "
                    f"codes, or a config from D.instruments(market, filter_pipe).")


def apply_filter(flt: Any, spans: Spans, start: pd.Timestamp, end: pd.Timestamp,
                 features: Callable[..., pd.DataFrame] | None) -> Spans:
    """Qlib's NameDFilter (regex on the code) and ExpressionDFilter (keep the days a rule is true)."""
    if hasattr(flt, "to_config"):
        flt = flt.to_config()
    if not isinstance(flt, dict) or "filter_type" not in flt:
        raise DataError(f"Unsupported instrument filter {flt!r}: expected a dict with 'filter_type' "
                        f"(NameDFilter or ExpressionDFilter).")
    kind = flt["filter_type"]
    f_start = pd.Timestamp(flt["filter_start_time"]) if flt.get("filter_start_time") else start
    f_end = pd.Timestamp(flt["filter_end_time"]) if flt.get("filter_end_time") else end
    if kind == "NameDFilter":
        rule = re.compile(flt["name_rule_re"])
        return {c: s for c, s in spans.items() if rule.match(c)}
    if kind == "ExpressionDFilter":
        if features is None or not spans:
            return spans
        rule = flt["rule_expression"]
        keep = bool(flt.get("keep", False))
        df = features(sorted(spans), [rule], f_start, f_end)
        truth = df.iloc[:, 0].fillna(0).astype(bool)
        codes_present = set(truth.index.get_level_values("instrument"))
        out: Spans = {}
        for code, rows in spans.items():
            if code in codes_present:
                day_truth = truth.xs(code, level="instrument")
                # Outside the filter window membership is kept as is; inside, only the true days.
                kept = [(a, b) for a, b in rows if b < f_start or a > f_end]
                kept += [(max(a, s), min(b, e)) for a, b in _true_runs(day_truth) for s, e in rows
                         if max(a, s) <= min(b, e)]
                if kept:
                    out[code] = sorted(kept)
            elif keep:
                out[code] = rows
        return out
    raise DataError(f"Unknown instrument filter {kind!r}: qexp supports NameDFilter and ExpressionDFilter.")


def _true_runs(truth: pd.Series) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Runs of consecutive True rows (consecutive trading days of the instrument) as (first, last) dates."""
    edges = np.diff(np.r_[0, truth.to_numpy().astype(np.int8), 0])
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1
    return [(truth.index[a], truth.index[b]) for a, b in zip(starts, ends)]
