"""Evaluate many expressions at once over an instruments x days panel, sharing common subexpressions.

Qlib evaluates each (instrument, expression) on the series loaded over
``[start - left_extension, end + right_extension]`` of *that* expression. We load one panel over the union
of those ranges and evaluate each distinct subexpression once. That is exact because a subexpression whose
tree has no start-sensitive operator (see :func:`windows.start_sensitive`) has the same values, at every
row its parents read, whatever the load start; such nodes are computed once on the union range ("global"
frame). A start-sensitive node and everything below or above it is computed on its expression's own range.

Values are freed as soon as their last consumer has used them, which keeps the peak memory of a 158-feature
request to a few hundred MB.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import kernels as K
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
    Field,
    Node,
    Str,
    number,
    text,
)
from .windows import extension, has_sensitive, start_sensitive

GLOBAL: tuple = ()   # frame key of the union range


@dataclass(frozen=True)
class Layout:
    """Panel columns: column ``pad + k`` is calendar index ``base + k``; ``width`` columns in all."""
    base: int
    pad: int
    width: int

    def col(self, cal_index: int | np.ndarray) -> Any:
        return np.asarray(cal_index) - self.base + self.pad


@dataclass
class _Step:
    node: Node
    frame: tuple
    children: list[Any]   # keys (tuples) or ("const", value)


def _window_n(node: Call) -> int | float | None:
    kind = OPERATORS.get(node.op)
    if kind in (ROLLING, QUANTILE):
        return number(node.args[1])
    if kind == PAIR_ROLLING:
        return number(node.args[2])
    return None


def _int_window(node: Call) -> bool:
    n = _window_n(node)
    return n is not None and n >= 1


def _deps(node: Call) -> list[Node]:
    """Inputs of a node, including the helper nodes it shares with others: running sums for Mean/Sum/Count,
    block extrema for Max/Min, sorted windows for Quantile/Med, Std for the 2e-5 masks, fit moments."""
    op, args = node.op, node.args
    kind = OPERATORS.get(op)
    if kind == INSTRUMENT:
        return []
    if op in ("Mean", "Sum", "Count") and _int_window(node):
        return [Call("_Prefix", (args[0],))]
    if op in ("Max", "Min") and _int_window(node):
        return [Call("_Prefix", (args[0],)), Call("_ExtTable", (args[0], Str(op.lower())))]
    if op in ("Quantile", "Med") and _int_window(node):
        return [Call("_Quantiles", (args[0], args[1]))]
    if op == "Rsquare":
        return [Call("_Moments", (args[0], args[1])), Call("Std", (args[0], args[1]))]
    if op == "Slope":
        return [Call("_Moments", (args[0], args[1]))]
    if op == "Resi":
        return [args[0], Call("_Moments", (args[0], args[1]))]
    if op == "Rank" and _int_window(node):
        return [Call("_Ranks", (args[0],))]
    if op in ("IdxMax", "IdxMin"):
        return [args[0], Call("_ArgTable", (args[0], Str("max" if op == "IdxMax" else "min")))]
    if op == "Corr":
        return [args[0], args[1], Call("Std", (args[0], args[2])), Call("Std", (args[1], args[2]))]
    if kind in (REF, ROLLING, QUANTILE):
        return [args[0]]
    if kind == PAIR_ROLLING:
        return [args[0], args[1]]
    if op == "_Moments":
        return [Call("_FitPrefix", (args[0],))]
    if op in ("_ArgTable", "_Prefix", "_ExtTable", "_Quantiles", "_FitPrefix", "_Ranks"):
        return [args[0]]
    return list(args)


class Evaluator:
    """Evaluates parsed expressions for a fixed set of instruments over one panel layout.

    ``load(field)`` returns the raw panel ``(I, width)`` float64 of a field (NaN outside each instrument's
    file and outside the union range); ``first``/``last`` are, per instrument, the calendar indices of its
    series (union of its field files); ``sub(code)`` returns an Evaluator for another single instrument
    (ChangeInstrument / Mask).
    """

    def __init__(self, layout: Layout, load: Callable[[str], np.ndarray], first: np.ndarray, last: np.ndarray,
                 sub: Callable[[str], Evaluator] | None = None, free_values: bool = True):
        self.layout = layout
        self._load = load
        self._first = np.asarray(first, dtype=np.int64)
        self._last = np.asarray(last, dtype=np.int64)
        self._sub = sub
        self._free = free_values
        self._frames: dict[tuple, K.Frame] = {}
        self._ranges: dict[tuple, tuple[int, int]] = {}
        self._leaves: dict[str, np.ndarray] = {}
        self._plan: dict[tuple, _Step] = {}
        self._refs: Counter = Counter()
        self._values: dict[tuple, Any] = {}
        self._quantiles: dict[tuple, set[float]] = {}   # _Quantiles key -> every q asked of it
        self._rank_windows: dict[tuple, set[int]] = {}  # _Ranks key -> every window asked of it

    # -- frames
    def set_global_range(self, q: int, qend: int) -> None:
        self._ranges[GLOBAL] = (q, qend)

    def frame(self, fkey: tuple) -> K.Frame:
        fr = self._frames.get(fkey)
        if fr is None:
            q, qend = self._ranges[GLOBAL] if fkey == GLOBAL else fkey
            col = self.layout.col
            first = col(np.maximum(self._first, q))
            last = col(np.minimum(self._last, qend))
            cols = np.arange(self.layout.width)[None, :]
            absent = (cols < first[:, None]) | (cols > last[:, None])
            fr = self._frames[fkey] = K.Frame(first, last, absent, self.layout.width)
        return fr

    def leaf(self, name: str, fkey: tuple) -> np.ndarray:
        raw = self._leaves.get(name)
        if raw is None:
            raw = self._leaves[name] = self._load(name)
        if fkey == GLOBAL:
            return raw
        return K.mask(raw.copy(), self.frame(fkey))

    # -- planning
    def plan(self, node: Node, fkey: tuple, forced: bool = False) -> Any:
        """Register ``node`` (and its inputs) for evaluation in frame ``fkey``; returns its value key."""
        if isinstance(node, (Const, Str)):
            return ("const", node.value)
        specific = forced or has_sensitive(node)
        frame = fkey if specific else GLOBAL
        key = (node.canon(), frame)
        if key in self._plan:
            return key
        children: list[Any] = []
        if isinstance(node, Call):
            child_forced = forced or start_sensitive(node)
            children = [self.plan(d, fkey, child_forced) for d in _deps(node)]
        self._plan[key] = _Step(node, frame, children)
        if isinstance(node, Call) and node.op in ("Quantile", "Med") and _int_window(node):
            q = float(number(node.args[2])) if node.op == "Quantile" else 0.5
            self._quantiles.setdefault(children[0], set()).add(q)
        if isinstance(node, Call) and node.op == "Rank" and _int_window(node):
            self._rank_windows.setdefault(children[0], set()).add(int(_window_n(node)))  # type: ignore[arg-type]
        for ck in children:
            if ck[0] != "const":
                self._refs[ck] += 1
        return key

    def add_output(self, node: Node, fkey: tuple) -> Any:
        key = self.plan(node, fkey)
        if key[0] != "const":
            self._refs[key] += 1
        return key

    def release(self, key: Any) -> None:
        """A consumer is done with ``key``; free it after its last consumer."""
        if key[0] == "const":
            return
        self._refs[key] -= 1
        if self._free and self._refs[key] <= 0:
            self._values.pop(key, None)

    # -- evaluation
    def compute(self, key: Any) -> Any:
        if key[0] == "const":
            return key[1]
        if key in self._values:
            return self._values[key]
        step = self._plan[key]
        args = [self.compute(ck) for ck in step.children]
        value = self._apply(step, args)
        self._values[key] = value
        for ck in step.children:
            self.release(ck)
        return value

    def value(self, node: Node, fkey: tuple) -> Any:
        """Plan and compute one node (used by sub-evaluators; values are kept)."""
        return self.compute(self.plan(node, fkey))

    def _apply(self, step: _Step, args: Sequence[Any]) -> Any:
        node, fr = step.node, self.frame(step.frame)
        if isinstance(node, Field):
            return self.leaf(node.name, step.frame)
        assert isinstance(node, Call)
        op = node.op
        kind = OPERATORS.get(op)
        if kind == ELEM:
            return K.elem(op, args[0], fr)
        if kind == PAIR:
            return K.pair(op, args[0], args[1], fr)
        if kind == IF:
            return K.if_(args[0], args[1], args[2], fr)
        if kind == INSTRUMENT:
            return self._other_instrument(node, step.frame, fr)
        if op == "_FitPrefix":
            return K.fit_prefix(args[0], fr)
        if op == "_Moments":
            return K.moments(args[0], int(number(node.args[1])), fr)
        if op == "_Ranks":
            return K.ranks(args[0], sorted(self._rank_windows[(node.canon(), step.frame)]), fr)
        if op == "_ArgTable":
            return K.ArgTable(args[0], text(node.args[1]), fr)
        if op == "_Prefix":
            return K.prefix(args[0], fr)
        if op == "_ExtTable":
            return K.ExtTable(args[0], text(node.args[1]), fr)
        if op == "_Quantiles":
            qs = sorted(self._quantiles.get((node.canon(), step.frame), {0.5}))
            return K.quantiles(args[0], int(number(node.args[1])), qs, fr)
        if op in ("Mean", "Sum", "Count") and _int_window(node):
            return K.window_stat(op, args[0], int(_window_n(node)), fr)  # type: ignore[arg-type]
        if op in ("Max", "Min") and _int_window(node):
            w = int(_window_n(node))  # type: ignore[arg-type]
            cnt, _ = args[0].window(w)
            return args[1].query(w, cnt, fr)
        if op in ("Quantile", "Med") and _int_window(node):
            q = float(number(node.args[2])) if op == "Quantile" else 0.5
            return args[0][q]
        n = number(node.args[2 if kind == PAIR_ROLLING else 1])
        if kind == REF:
            return K.ref(args[0], int(n), fr)
        if kind == QUANTILE:
            return K.quantile(args[0], int(n), float(number(node.args[2])), fr)
        if kind == PAIR_ROLLING:
            res = K.pair_rolling(op, args[0], args[1], int(n), fr)
            return K.corr_mask(res, args[2], args[3], fr) if op == "Corr" else res
        if op in K._PANDAS_FUNC:
            return K.rolling(op, args[0], n, fr)
        if op == "EMA":
            return K.ema(args[0], n, fr)
        n = int(n)
        if op == "Rank":
            return args[0][n] if n >= 1 else K.rank(args[0], n, fr)
        if op == "Mad":
            return K.mad(args[0], n, fr)
        if op == "Delta":
            return K.delta(args[0], n, fr)
        if op == "WMA":
            return K.wma(args[0], n, fr)
        if op == "Slope":
            return K.slope(args[0], fr)
        if op == "Rsquare":
            return K.rsquare(args[0], args[1], fr)
        if op == "Resi":
            return K.resi(args[0], args[1], fr)
        if op in ("IdxMax", "IdxMin"):
            return K.idx_extreme(args[1], args[0], n, fr)
        raise AssertionError(f"operator {op} has no kernel")  # pragma: no cover - table and kernels agree

    def _other_instrument(self, node: Call, fkey: tuple, fr: K.Frame) -> np.ndarray:
        code_arg, feat = (node.args[0], node.args[1]) if node.op == "ChangeInstrument" else node.args[::-1]
        assert self._sub is not None and isinstance(code_arg, Str)
        other = self._sub(code_arg.value)
        key = other.plan(feat, fkey, forced=fkey != GLOBAL)
        val = K.as_float(other.compute(key), other.frame(key[1]) if key[0] != "const" else other.frame(GLOBAL))
        return K.mask(np.broadcast_to(val, fr.shape).copy(), fr)


def top_frame(node: Node, start: int, end: int, n_days: int) -> tuple[int, int]:
    """Load range ``(q, qend)`` of a top-level expression for the output rows ``[start, end]``."""
    lft, rgt = extension(node)
    return max(0, start - lft), min(n_days - 1, end + rgt)
