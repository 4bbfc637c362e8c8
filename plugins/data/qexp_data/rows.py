"""Row layout shared by the provider and the expression cache: which (instrument, day) rows a result has,
and the frame built from them."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .expr import fields as expr_fields
from .universe import Spans


def _other_fields(nodes: list) -> set[str]:
    """Fields read through ChangeInstrument/Mask (checked against the folder like the others)."""
    from .expr.nodes import INSTRUMENT, OPERATORS, Call
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Call):
            if OPERATORS.get(node.op) == INSTRUMENT:
                inner = node.args[1] if node.op == "ChangeInstrument" else node.args[0]
                found.update(expr_fields(inner))
            for a in node.args:
                walk(a)
    for n in nodes:
        walk(n)
    return found


def _row_mask(codes: list[str], spans: Spans | None, first: np.ndarray, last: np.ndarray, s: int, e: int,
              cal: pd.DatetimeIndex) -> np.ndarray:
    """(I, e - s + 1) bool: rows present in the result (inside the data files and the membership spans)."""
    t = np.arange(s, e + 1)[None, :]
    rows = (t >= first[:, None]) & (t <= last[:, None])
    if spans is not None:
        days = cal[s:e + 1]
        member = np.zeros_like(rows)
        for i, code in enumerate(codes):
            for a, b in spans.get(code, ()):
                lo, hi = days.searchsorted(a, "left"), days.searchsorted(b, "right")
                member[i, lo:hi] = True
        rows &= member
    return rows


def _frame(out: np.ndarray, cal: pd.DatetimeIndex, codes: list[str], t_idx: np.ndarray, i_idx: np.ndarray, s: int,
           e: int, names: list[str]) -> pd.DataFrame:
    index = pd.MultiIndex(levels=[cal[s:e + 1], pd.Index(codes, dtype=object)], codes=[t_idx, i_idx],
                          names=["datetime", "instrument"], verify_integrity=False)
    return pd.DataFrame(out.T, index=index, columns=pd.Index(names, dtype=object), copy=False)
