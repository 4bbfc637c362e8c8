"""How far an expression looks back and ahead (Qlib's ``get_extended_window_size``), and which operators
make a value depend on where the loaded series starts."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .nodes import (
    ELEM,
    IF,
    INSTRUMENT,
    OPERATORS,
    PAIR,
    PAIR_ROLLING,
    QUANTILE,
    REF,
    ROLLING,
    Call,
    Const,
    Node,
    number,
)


def _n(node: Call) -> int | float:
    return number(node.args[2 if OPERATORS[node.op] == PAIR_ROLLING else 1])


@lru_cache(maxsize=16384)
def extension(node: Node) -> tuple[int, int]:
    """``(left, right)``: extra days to load before start_time and after end_time, as Qlib computes them.

    Ref(x, N) adds N (N < 0 adds on the right); Rolling(x, N) adds N - 1 (Delta too: Qlib under-counts it
    by one, so Delta(x, N) is NaN at start_time when exactly the extended history is loaded); Ref(x, 0)
    resets to (0, 0). Pair operators take the max of both sides. For ``Corr/Cov(a, b, 0)`` Qlib computes
    max - 1; we keep max (expanding), so the start row is not dropped.
    """
    if not isinstance(node, Call):
        return 0, 0
    kind = OPERATORS.get(node.op)
    if kind in (ELEM, INSTRUMENT):
        return extension(node.args[0] if kind == ELEM or node.op == "Mask" else node.args[1])
    if kind in (PAIR, IF):
        exts = [extension(a) for a in node.args]
        return max(e[0] for e in exts), max(e[1] for e in exts)
    if kind == REF:
        n = int(_n(node))
        if n == 0:
            return 0, 0
        lft, rgt = extension(node.args[0])
        return max(lft + n, lft), max(rgt - n, rgt)
    if kind in (ROLLING, QUANTILE, PAIR_ROLLING):
        w = _n(node)
        feats = node.args[:2] if kind == PAIR_ROLLING else node.args[:1]
        exts = [extension(a) for a in feats]
        lft, rgt = max(e[0] for e in exts), max(e[1] for e in exts)
        if w == 0:
            return lft, rgt
        if 0 < w < 1:
            size = int(np.log(1e-6) / np.log(1 - w))
            return max(lft + size - 1, lft), rgt
        return max(lft + int(w) - 1, lft), rgt
    return 0, 0


def start_sensitive(node: Node) -> bool:
    """True when the operator's value at the rows that matter depends on where its input series starts:
    Ref(x, 0) and Delta(x, 0) (first value), Delta(x, N) (Qlib loads one day too few), EMA (infinite
    memory), and every expanding (N = 0) or exponentially weighted (0 < N < 1) window."""
    if not isinstance(node, Call):
        return False
    kind = OPERATORS.get(node.op)
    if kind == REF:
        return _n(node) == 0
    if kind in (ROLLING, QUANTILE, PAIR_ROLLING):
        n = _n(node)
        return node.op in ("Delta", "EMA") or n == 0 or 0 < n < 1
    return False


@lru_cache(maxsize=16384)
def has_sensitive(node: Node) -> bool:
    if not isinstance(node, Call):
        return False
    return start_sensitive(node) or any(has_sensitive(a) for a in node.args)


@lru_cache(maxsize=16384)
def max_window(node: Node) -> int:
    """Largest integer rolling window in the tree (the panel padding must be at least this minus one)."""
    if not isinstance(node, Call):
        return 0
    kind = OPERATORS.get(node.op)
    own = 0
    if kind in (ROLLING, QUANTILE, PAIR_ROLLING):
        n = _n(node)
        own = int(n) if n >= 1 else 0
    return max([own] + [max_window(a) for a in node.args])


def fields(node: Node, out: set[str] | None = None) -> set[str]:
    """The $fields an expression reads for its own instrument (not inside ChangeInstrument/Mask)."""
    from .nodes import Field
    out = set() if out is None else out
    if isinstance(node, Field):
        out.add(node.name)
    elif isinstance(node, Call) and OPERATORS.get(node.op) != INSTRUMENT:
        for a in node.args:
            fields(a, out)
    return out


def is_const(node: Node) -> bool:
    return isinstance(node, Const)
