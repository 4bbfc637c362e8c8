"""Holdings: an array form the engine trades on, and a dict snapshot kept per day for the artifacts."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ArrayPosition", "Position", "isclose"]


def isclose(a: float, b: float) -> bool:
    """``np.isclose`` for two floats (rtol 1e-5, atol 1e-8) without numpy's per-call overhead."""
    return abs(a - b) <= 1e-8 + 1e-5 * abs(b)


class ArrayPosition:
    """Cash plus per-instrument arrays over the exchange's universe (index = instrument position).

    ``held`` marks instruments in the position: an amount is never used to decide that, because Qlib keeps a
    stock until a sell matches its amount (``np.isclose``), not when the amount reaches exactly zero.
    """

    __slots__ = ("cash", "amount", "price", "count", "held")

    def __init__(self, n_instruments: int, cash: float):
        self.cash = float(cash)
        self.amount = np.zeros(n_instruments)
        self.price = np.zeros(n_instruments)
        self.count = np.zeros(n_instruments, dtype=np.int64)   # bars held, +1 at each bar end
        self.held = np.zeros(n_instruments, dtype=bool)

    def copy(self) -> ArrayPosition:
        other = ArrayPosition.__new__(ArrayPosition)
        other.cash = self.cash
        other.amount = self.amount.copy()
        other.price = self.price.copy()
        other.count = self.count.copy()
        other.held = self.held.copy()
        return other

    def held_indices(self) -> np.ndarray:
        return np.flatnonzero(self.held)

    def stock_value(self) -> float:
        h = self.held
        return float(np.dot(self.amount[h], self.price[h]))

    def value(self) -> float:
        return self.cash + self.stock_value()

    def buy(self, i: int, trade_val: float, cost: float, price: float) -> None:
        amount = trade_val / price
        if self.held[i]:
            self.amount[i] += amount
        else:
            self.held[i] = True
            self.amount[i] = amount
            self.price[i] = price
            self.count[i] = 0
        self.cash -= trade_val + cost

    def sell(self, i: int, trade_val: float, cost: float, price: float) -> None:
        if not self.held[i]:
            raise KeyError(f"cannot sell instrument #{i}: it is not held")
        amount = trade_val / price
        if isclose(float(self.amount[i]), amount):
            self.held[i] = False
            self.amount[i] = 0.0
            self.price[i] = 0.0
            self.count[i] = 0
        else:
            self.amount[i] -= amount
            if self.amount[i] < -1e-5:
                raise ValueError(f"instrument #{i}: selling {amount} leaves a negative amount {self.amount[i]}")
        self.cash += trade_val - cost

    def snapshot(self, codes: np.ndarray) -> Position:
        """A frozen copy of the holdings (a :class:`Position`; its Qlib-shaped dict is built on first use)."""
        idx = self.held_indices()
        return Position.from_arrays(codes[idx], self.amount[idx], self.price[idx], self.count[idx], self.cash)


class Position:
    """One day's holdings, shaped like Qlib's ``Position.position`` dict, with Qlib's read methods.

    ``position`` is ``{code: {"amount", "price", "weight", "count_day"}, "cash": ..., "now_account_value": ...}``.
    """

    def __init__(self, position: dict[str, Any] | None = None):
        self._position = position
        self._arrays: tuple | None = None

    @classmethod
    def from_arrays(cls, codes: np.ndarray, amount: np.ndarray, price: np.ndarray, count: np.ndarray,
                    cash: float) -> Position:
        # the engine keeps one per day: arrays are cheap to copy, the dict is built only when someone reads it
        p = cls()
        p._arrays = (codes, amount, price, count, float(cash))
        return p

    @property
    def position(self) -> dict[str, Any]:
        if self._position is None:
            codes, amount, price, count, cash = self._arrays  # type: ignore[misc]
            value = cash + float(np.dot(amount, price))
            pos: dict[str, Any] = {}
            for c, a, p, n in zip(codes, amount.tolist(), price.tolist(), count.tolist()):
                pos[str(c)] = {"amount": a, "price": p, "weight": a * p / value if value else np.nan,
                               "count_day": int(n)}
            pos["cash"] = cash
            pos["now_account_value"] = value
            self._position = pos
        return self._position

    def __getstate__(self) -> dict[str, Any]:
        return {"position": self.position}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._position = state["position"]
        self._arrays = None

    def get_stock_list(self) -> list[str]:
        return [k for k in self.position if k not in ("cash", "now_account_value")]

    def get_stock_amount(self, code: str) -> float:
        return self.position[code]["amount"] if code in self.position else 0.0

    def get_stock_price(self, code: str) -> float:
        return self.position[code]["price"]

    def get_stock_count(self, code: str, bar: str = "day") -> int:
        return self.position[code]["count_day"] if code in self.position else 0

    def get_stock_weight(self, code: str) -> float:
        return self.position[code]["weight"]

    def get_cash(self) -> float:
        return self.position["cash"]

    def calculate_stock_value(self) -> float:
        return float(sum(v["amount"] * v["price"] for k, v in self.position.items()
                         if k not in ("cash", "now_account_value")))

    def calculate_value(self) -> float:
        return self.calculate_stock_value() + self.get_cash()

    def to_frame(self) -> pd.DataFrame:
        """Holdings as a frame indexed by instrument: amount, price, weight, count_day."""
        rows = {k: v for k, v in self.position.items() if k not in ("cash", "now_account_value")}
        return pd.DataFrame.from_dict(rows, orient="index",
                                      columns=["amount", "price", "weight", "count_day"]).rename_axis("instrument")

    def __repr__(self) -> str:
        return (f"Position(cash={self.get_cash():.2f}, stocks={len(self.get_stock_list())}, "
                f"value={self.position.get('now_account_value', self.calculate_value()):.2f})")
