"""A plain per-instrument re-implementation of Qlib's expression semantics with pandas (the reference the
vectorised engine is tested against). It follows qlib/data/ops.py and base.py as described in the
reference notes: one contiguous calendar-indexed series per instrument, loaded over the expression's
extended range, pandas rolling with min_periods=1, Qlib's Cython fit formulas written as loops."""
from __future__ import annotations

import numpy as np
import pandas as pd

from qexp_data import binfmt
from qexp_data.expr import extension, parse
from qexp_data.expr.nodes import Call, Const, Field


def _series(root, code, field, lo, hi):
    path = binfmt.feature_path(root, code, field)
    if not path.is_file():
        return pd.Series(dtype=np.float64)
    start, values = binfmt.read_bin(path, lo, hi)
    return pd.Series(values.astype(np.float64), index=range(start, start + len(values)))


def _slope_family(a: np.ndarray, n: int, what: str) -> np.ndarray:
    out = np.full(len(a), np.nan)
    for t in range(len(a)):
        lo = t - n + 1
        ys = np.array([a[k] if k >= 0 else np.nan for k in range(lo, t + 1)])
        xs = np.arange(1, n + 1, dtype=float)
        ok = ~np.isnan(ys)
        m = ok.sum()
        x, y = xs[ok], ys[ok]
        sx, sy, sxx, sxy, syy = x.sum(), y.sum(), (x * x).sum(), (x * y).sum(), (y * y).sum()
        with np.errstate(all="ignore"):
            b = (m * sxy - sx * sy) / (m * sxx - sx * sx)
            if what == "slope":
                out[t] = b
            elif what == "rsquare":
                r = (m * sxy - sx * sy) / np.sqrt((m * sxx - sx * sx) * (m * syy - sy * sy))
                out[t] = r * r
            else:
                out[t] = a[t] - (b * n + (sy / m - b * sx / m))
    return out


class Reference:
    def __init__(self, root):
        self.root = root

    def load(self, node, code, lo, hi):
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Field):
            return _series(self.root, code, node.name, lo, hi)
        assert isinstance(node, Call)
        op, args = node.op, node.args

        def ev(i):
            return self.load(args[i], code, lo, hi)
        if op in ("Add", "Sub", "Mul", "Div", "Power", "Greater", "Less", "Gt", "Ge", "Lt", "Le", "Eq", "Ne"):
            f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Power": np.power,
                 "Greater": np.maximum, "Less": np.minimum, "Gt": np.greater, "Ge": np.greater_equal,
                 "Lt": np.less, "Le": np.less_equal, "Eq": np.equal, "Ne": np.not_equal}[op]
            a, b = ev(0), ev(1)
            if isinstance(a, pd.Series) and a.dtype == bool and op not in ("Gt", "Ge", "Lt", "Le", "Eq", "Ne"):
                a = a.astype(float)
            if isinstance(b, pd.Series) and b.dtype == bool and op not in ("Gt", "Ge", "Lt", "Le", "Eq", "Ne"):
                b = b.astype(float)
            with np.errstate(all="ignore"):
                return f(a, b)
        if op in ("And", "Or"):
            return (np.logical_and if op == "And" else np.logical_or)(ev(0).astype(bool), ev(1).astype(bool))
        if op == "Not":
            return ~ev(0).astype(bool)
        if op in ("Abs", "Log", "Sign", "Neg"):
            x = ev(0).astype(float)
            with np.errstate(all="ignore"):
                return {"Abs": np.abs, "Log": np.log, "Sign": np.sign, "Neg": np.negative}[op](x)
        if op == "If":
            c, a, b = ev(0), ev(1), ev(2)
            idx = next(v.index for v in (c, a, b) if isinstance(v, pd.Series))
            return pd.Series(np.where(np.asarray(c, dtype=bool) if not isinstance(c, pd.Series) else
                                      c.to_numpy().astype(bool), a, b), index=idx).astype(float)
        if op == "Ref":
            x, n = ev(0), args[1].value
            if len(x) == 0:
                return x
            if n == 0:
                return pd.Series(x.iloc[0], index=x.index, dtype=float)
            return x.astype(float).shift(n)
        if op in ("ChangeInstrument", "Mask"):
            c, f = (args[0], args[1]) if op == "ChangeInstrument" else (args[1], args[0])
            return self.load(f, c.value, lo, hi)
        x = ev(0)
        if isinstance(x, pd.Series):
            x = x.astype(float)
            if len(x) == 0:
                return x
        if op in ("Corr", "Cov"):
            y = ev(1).astype(float)
            n = args[2].value
            r = x.rolling(n, min_periods=1) if n else x.expanding(min_periods=1)
            res = getattr(r, op.lower())(y)
            if op == "Corr":
                sx = x.rolling(n, min_periods=1).std() if n else x.expanding(min_periods=1).std()
                sy = y.rolling(n, min_periods=1).std() if n else y.expanding(min_periods=1).std()
                res.loc[np.isclose(sx, 0, atol=2e-5) | np.isclose(sy, 0, atol=2e-5)] = np.nan
            return res
        n = args[1].value
        roll = x.expanding(min_periods=1) if n == 0 else x.rolling(int(n), min_periods=1) if n >= 1 else None
        base = {"Mean": "mean", "Sum": "sum", "Std": "std", "Var": "var", "Skew": "skew", "Kurt": "kurt",
                "Max": "max", "Min": "min", "Med": "median", "Count": "count"}
        if op in base:
            if 0 < n < 1:
                return x.ewm(alpha=n, min_periods=1).mean()
            return getattr(roll, base[op])()
        if op == "Quantile":
            return roll.quantile(args[2].value)
        if op == "Rank":
            return roll.rank(pct=True)
        if op in ("IdxMax", "IdxMin"):
            f = np.argmax if op == "IdxMax" else np.argmin
            return roll.apply(lambda a: f(a) + 1, raw=True)
        if op == "Mad":
            return roll.apply(lambda a: np.mean(np.abs(a[~np.isnan(a)] - a[~np.isnan(a)].mean())), raw=True)
        if op == "WMA":
            def wm(a):
                w = np.arange(len(a)) + 1
                return np.nanmean(w / w.sum() * a)
            return roll.apply(wm, raw=True)
        if op == "EMA":
            if n == 0:
                def ew(a):
                    al = 1 - 2 / (1 + len(a))
                    w = al ** np.arange(len(a))[::-1]
                    return np.nansum(w / w.sum() * a)
                return roll.apply(ew, raw=True)
            if 0 < n < 1:
                return x.ewm(alpha=n, min_periods=1).mean()
            return x.ewm(span=n, min_periods=1).mean()
        if op == "Delta":
            return x - x.iloc[0] if n == 0 else x - x.shift(n)
        if op in ("Slope", "Rsquare", "Resi"):
            vals = _slope_family(x.to_numpy(), int(n), op.lower())
            res = pd.Series(vals, index=x.index)
            if op == "Rsquare":
                res.loc[np.isclose(x.rolling(int(n), min_periods=1).std(), 0, atol=2e-5)] = np.nan
            return res
        raise NotImplementedError(op)

    def features(self, codes, fields, s, e, n_days):
        """DataFrame like D.features for a list of codes (no membership spans), rows per instrument
        = its series within [s, e]; index (datetime index as calendar position, instrument)."""
        frames = []
        for code in codes:
            cols = {}
            for f in fields:
                node = parse(f)
                lft, rgt = extension(node)
                lo, hi = max(0, s - lft), min(n_days - 1, e + rgt)
                v = self.load(node, code, lo, hi)
                if not isinstance(v, pd.Series):
                    continue
                v = v.astype(np.float32)
                cols[f] = v.loc[(v.index >= s) & (v.index <= e)]
            df = pd.DataFrame(cols)
            # Rows: the instrument's own data span (qexp does not add the rows that ChangeInstrument/Mask
            # would bring from another instrument's span in Qlib; documented).
            own = _series(self.root, code, "close", 0, n_days)
            df = df.loc[(df.index >= (own.index[0] if len(own) else n_days)) &
                        (df.index <= (own.index[-1] if len(own) else -1))]
            df["instrument"] = code
            frames.append(df)
        out = pd.concat(frames)
        out.index.name = "t"
        return out.reset_index().set_index(["t", "instrument"]).sort_index()
