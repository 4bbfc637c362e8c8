"""Expression tree nodes and the table of operators (name, arguments, kind).

Every node has a canonical string (``Mean($close,5)``): equal strings mean equal values, so the evaluator
uses it as the key for common subexpressions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union, cast


@dataclass(frozen=True)
class Field:
    """``$name``: a raw series from ``features/<code>/<name>.day.bin`` (name lower-cased as Qlib does)."""
    name: str

    def canon(self) -> str:
        return f"${self.name}"


@dataclass(frozen=True)
class Const:
    value: Union[int, float]

    def canon(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Str:
    value: str

    def canon(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Call:
    op: str
    args: tuple[Node, ...]
    _canon: str = field(default="", compare=False, repr=False)

    def canon(self) -> str:
        if not self._canon:
            object.__setattr__(self, "_canon", f"{self.op}({','.join(a.canon() for a in self.args)})")
        return self._canon


Node = Union[Field, Const, Str, Call]


def number(node: Node) -> int | float:
    """The value of a numeric argument (a window, a quantile): the parser puts only :class:`Const` there."""
    return cast(Const, node).value


def text(node: Node) -> str:
    """The value of a string argument (an instrument code, a table's kind): the parser puts only :class:`Str`
    there."""
    return cast(Str, node).value

# Operator kinds: what the arguments are and how the look-back/look-ahead window extends.
ELEM = "elem"                  # op(x)
PAIR = "pair"                  # op(a, b); a or b may be a number
IF = "if"                      # If(cond, a, b)
REF = "ref"                    # Ref(x, N)
ROLLING = "rolling"            # op(x, N)
QUANTILE = "quantile"          # Quantile(x, N, q)
PAIR_ROLLING = "pair_rolling"  # op(a, b, N)
INSTRUMENT = "instrument"      # ChangeInstrument('CODE', x) / Mask(x, 'CODE')

OPERATORS: dict[str, str] = {
    **{name: ELEM for name in ("Abs", "Sign", "Log", "Not", "Neg")},
    **{name: PAIR for name in ("Add", "Sub", "Mul", "Div", "Power", "Greater", "Less",
                               "Gt", "Ge", "Lt", "Le", "Eq", "Ne", "And", "Or")},
    "If": IF,
    "Ref": REF,
    **{name: ROLLING for name in ("Mean", "Sum", "Std", "Var", "Skew", "Kurt", "Max", "Min", "Med", "Mad",
                                  "Rank", "Count", "IdxMax", "IdxMin", "Slope", "Rsquare", "Resi", "WMA",
                                  "EMA", "Delta")},
    "Quantile": QUANTILE,
    "Corr": PAIR_ROLLING,
    "Cov": PAIR_ROLLING,
    "ChangeInstrument": INSTRUMENT,
    "Mask": INSTRUMENT,
}

# Rolling ops whose fractional N (0 < N < 1) means an exponentially weighted mean, as in Qlib's base
# ``Rolling._load_internal``; the other rolling ops need an integer N.
EWM_CAPABLE = frozenset({"Mean", "Sum", "Std", "Var", "Skew", "Kurt", "Max", "Min", "Med", "Count", "EMA"})

ARITY = {ELEM: 1, PAIR: 2, IF: 3, REF: 2, ROLLING: 2, QUANTILE: 3, PAIR_ROLLING: 3, INSTRUMENT: 2}
SIGNATURE = {ELEM: "(feature)", PAIR: "(left, right)", IF: "(condition, left, right)", REF: "(feature, N)",
             ROLLING: "(feature, N)", QUANTILE: "(feature, N, q)", PAIR_ROLLING: "(left, right, N)"}
INSTRUMENT_SIGNATURE = {"ChangeInstrument": "('CODE', feature)", "Mask": "(feature, 'CODE')"}
