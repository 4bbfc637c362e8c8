"""Every operator against a plain per-instrument pandas implementation of Qlib's semantics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import N_DAYS
from qlib_reference import Reference

from qexp_data.provider import LocalProvider

CODES = ["SH600000", "SH600001", "SZ000001", "SZ000002", "SZ000003", "SZ000004"]

EXPRESSIONS = [
    "$close", "$vwap", "-$close", "$close + 1", "2 * $close - $high - $low", "$close / $open",
    "$high ** 0.5", "Power($close, 2)", "Abs($close - $open)", "Sign($close - Ref($close, 1))", "Log($volume)",
    "Greater($open, $close)", "Less($open, $close)", "If($close > $open, $high, $low)",
    "If($close > Ref($close, 1), 1, 0)", "($close > $open) & ($volume > 1000)", "($close > $open) | Not($volume > 1000)",
    "$close >= $open", "$close < $open", "$close <= $open", "$close == $open", "$close != $open",
    "Ref($close, 1)", "Ref($close, 5)", "Ref($close, -2)", "Ref($close, 0)", "Ref($close > $open, 1)",
    "Mean($close, 5)", "Mean($close, 20)", "Mean($close, 0)", "Mean($close, 0.5)",
    "Sum($volume, 10)", "Sum($close > Ref($close, 1), 5)", "Std($close, 5)", "Std($close, 0)", "Var($close, 10)",
    "Skew($close, 10)", "Kurt($close, 10)", "Max($high, 5)", "Max($high, 0)", "Min($low, 20)", "Min($low, 0)",
    "Med($close, 6)", "Med($close, 0)", "Mad($close, 5)", "Mad($close, 0)", "Count($volume, 5)", "Count($volume, 0)",
    "Quantile($close, 10, 0.8)", "Quantile($close, 10, 0.2)", "Quantile($close, 7, 0.5)", "Quantile($close, 0, 0.3)",
    "Rank($close, 5)", "Rank($close, 20)", "Rank($close, 0)",
    "IdxMax($high, 5)", "IdxMax($high, 20)", "IdxMin($low, 10)", "IdxMax($close, 0)", "IdxMin($close, 0)",
    "Delta($close, 1)", "Delta($close, 3)", "Delta($close, 0)",
    "Slope($close, 5)", "Slope($close, 20)", "Rsquare($close, 5)", "Rsquare($close, 20)", "Resi($close, 5)",
    "Resi($close, 20)", "WMA($close, 5)", "WMA($close, 0)", "EMA($close, 5)", "EMA($close, 0.3)", "EMA($close, 0)",
    "Corr($close, Log($volume + 1), 5)", "Corr($close, $open, 10)", "Cov($close, $volume, 10)",
    "Corr($close/Ref($close, 1), Log($volume/Ref($volume, 1) + 1), 10)",
    "Mean($close > Ref($close, 1), 5) - Mean($close < Ref($close, 1), 5)",
    "Std(Abs($close/Ref($close, 1) - 1) * $volume, 5)", "Ref(Mean($close, 5), 2)", "Mean(Ref($close, 0), 3)",
    "EMA(Mean($close, 3), 4)", "Ref($close, -1) / Ref(EMA($close, 3), 1)",
    "ChangeInstrument('SH600000', $close) / $close", "Mask($close, 'SZ000001')",
]

# Float64 in both engines, cast to float32 at the end: they agree to float32 precision, except where a
# quantity is ill-conditioned (fits on near-constant windows), where both are rounding noise.
RTOL, ATOL = 2e-5, 1e-6


def _compare(got: pd.DataFrame, want: pd.DataFrame, expr: str) -> None:
    g = got[expr]
    w = want[expr].reindex(g.index)
    assert g.dtype == np.float32
    gv, wv = g.to_numpy(np.float64), w.to_numpy(np.float64)
    nan_g, nan_w = np.isnan(gv), np.isnan(wv)
    bad = np.nonzero(nan_g != nan_w)[0]
    assert len(bad) == 0, f"{expr}: NaN pattern differs at {list(g.index[bad[:5]])}: got {gv[bad[:5]]}, want {wv[bad[:5]]}"
    ok = ~nan_g
    close = np.isclose(gv[ok], wv[ok], rtol=RTOL, atol=ATOL) | (gv[ok] == wv[ok])
    idx = np.nonzero(~close)[0]
    assert len(idx) == 0, (f"{expr}: {len(idx)} values differ, e.g. at {list(g.index[ok][idx[:5]])}: "
                           f"got {gv[ok][idx[:5]]}, want {wv[ok][idx[:5]]}")


@pytest.mark.parametrize("s,e", [(30, 110), (0, N_DAYS - 1)])
def test_every_operator_matches_per_instrument_pandas(edge_store, s, e):
    provider = LocalProvider(str(edge_store))
    cal = provider.calendar()
    got = provider.features(CODES, EXPRESSIONS, cal[s], cal[e])
    want = Reference(edge_store).features(CODES, EXPRESSIONS, s, e, len(cal))
    want.index = want.index.set_levels(cal[want.index.levels[0]], level=0)
    want.index.names = ["datetime", "instrument"]
    # Same rows: every calendar day of each instrument's files within [s, e].
    assert list(got.index) == list(want.index)
    for expr in EXPRESSIONS:
        _compare(got, want, expr)


def test_each_expression_alone_equals_batched(edge_store):
    """Common-subexpression sharing and the union load range must not change any value."""
    provider = LocalProvider(str(edge_store))
    batched = provider.features(CODES, EXPRESSIONS, "2021-02-15", "2021-05-31")
    for expr in EXPRESSIONS[::3]:
        alone = provider.features(CODES, [expr], "2021-02-15", "2021-05-31")
        pd.testing.assert_series_equal(alone[expr], batched[expr])
