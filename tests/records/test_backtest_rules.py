"""Each backtest rule of Qlib's daily TopkDropout backtest, on tiny markets with hand-computed numbers.

Default costs in these tests: buy 5 bp, sell 15 bp, minimum 5; lots of 100 real shares; 9.5% limits; close
prices; 100,000 cash. The strategy's budget per name is ``cash after sells * 0.95 / number of names to buy``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .conftest import DATES, make_pred, make_quote, run_bt

# day 0 prefers A, later days prefer D: buy A on day 1, swap A for D on day 2
SWAP = {0: {"A": 4, "B": 3, "C": 2, "D": 1}, 1: {"A": 1, "B": 2, "C": 3, "D": 4},
        2: {"A": 1, "B": 2, "C": 3, "D": 4}, 3: {"A": 1, "B": 2, "C": 3, "D": 4},
        4: {"A": 1, "B": 2, "C": 3, "D": 4}}


def _orders(orders: pd.DataFrame, day: int) -> list[tuple]:
    o = orders[orders["datetime"] == DATES[day]]
    return [(r.instrument, r.direction, r.deal_amount) for r in o.itertuples()]


def test_signal_lag_no_trade_on_day_one_and_exact_accounting(quote_flat):
    report, positions, orders, _ = run_bt(quote_flat, make_pred(SWAP), topk=1, n_drop=1)
    # day 0: the signal of the previous day does not exist, so nothing trades
    assert _orders(orders, 0) == []
    assert report["account"].iloc[0] == 100000 and report["return"].iloc[0] == 0 and report["cost"].iloc[0] == 0
    # day 1 trades on day 0's scores (A best): 100000 * 0.95 / 10 = 9500 shares, cost 47.5
    assert _orders(orders, 1) == [("A", "BUY", 9500.0)]
    assert report["cash"].iloc[1] == pytest.approx(100000 - 95000 - 47.5)
    # day 2 trades on day 1's scores (D best): sell all of A (cost 142.5), then buy D with
    # 99810 * 0.95 / 50 = 1896.4 -> 1800 shares (cost 45)
    assert _orders(orders, 2) == [("A", "SELL", 9500.0), ("D", "BUY", 1800.0)]
    cash2 = 4952.5 + 95000 - 142.5 - 90000 - 45
    assert report["cash"].iloc[2] == pytest.approx(cash2)
    v1, v2 = 4952.5 + 95000, cash2 + 1800 * 50
    assert report["account"].iloc[2] == pytest.approx(v2)
    assert report["value"].iloc[2] == pytest.approx(90000)
    # return is gross of cost; cost and turnover are separate, all over the previous account value
    assert report["return"].iloc[2] == pytest.approx((v2 - v1 + 187.5) / v1)
    assert report["cost"].iloc[2] == pytest.approx(187.5 / v1)
    assert report["turnover"].iloc[2] == pytest.approx((95000 + 90000) / v1)
    assert report["total_cost"].iloc[2] == pytest.approx(47.5 + 187.5)
    assert report["total_turnover"].iloc[2] == pytest.approx(95000 + 185000)
    assert positions[DATES[2]].get_stock_list() == ["D"]
    assert list(report.columns) == ["account", "return", "total_turnover", "turnover", "total_cost", "cost",
                                    "value", "cash", "bench"]
    assert report.index.name == "datetime"


def test_first_day_trades_when_the_previous_days_signal_exists(quote_flat):
    # the backtest starts on day 1; day 0's scores exist, so day 1 (the first day) already trades
    report, _, orders, _ = run_bt(quote_flat, make_pred(SWAP), topk=1, n_drop=1, start=1)
    assert report.index[0] == DATES[1]
    assert _orders(orders, 1) == [("A", "BUY", 9500.0)]


def test_day_without_signal_does_not_trade(quote_flat):
    pred = make_pred({k: v for k, v in SWAP.items() if k != 1})   # no scores on day 1
    _, _, orders, _ = run_bt(quote_flat, pred, topk=1, n_drop=1)
    assert _orders(orders, 2) == []          # day 2 would trade on day 1's scores
    assert _orders(orders, 3) != []


def test_budget_divides_post_sell_cash_by_all_names_to_buy_including_skipped():
    # B hits the limit up on day 1 (+10%): it is skipped, yet the budget is still cash * 0.95 / 2
    q = make_quote({"A": [10.0] * 4, "B": [20.0, 22.0, 22.0, 22.0], "C": [40.0] * 4})
    pred = make_pred({0: {"A": 3, "B": 4, "C": 1}})
    _, _, orders, _ = run_bt(q, pred, topk=2, n_drop=0)
    # 100000 * 0.95 / 2 = 47500 -> 4750 shares of A -> 4700 after rounding to lots
    assert _orders(orders, 1) == [("A", "BUY", 4700.0)]


def test_lot_rounding_uses_the_adjustment_factor():
    # factor 0.5: 4750 adjusted shares are 2375 real shares -> 2300 real -> 4600 adjusted
    q = make_quote({"A": [10.0] * 3, "B": [20.0] * 3}, factor={"A": 0.5, "B": 1.0})
    pred = make_pred({0: {"A": 2, "B": 1}})
    _, _, orders, _ = run_bt(q, pred, topk=2, n_drop=0)
    assert _orders(orders, 1) == [("A", "BUY", 4600.0), ("B", "BUY", 2300.0)]
    # trade_unit=None: no rounding at all
    _, _, orders, _ = run_bt(q, pred, topk=2, n_drop=0, trade_unit=None)
    assert _orders(orders, 1) == [("A", "BUY", 4750.0), ("B", "BUY", 2375.0)]


def test_missing_factor_falls_back_to_adjusted_prices_without_rounding():
    q = make_quote({"A": [10.0] * 3, "B": [20.0] * 3})
    q.loc[(DATES[1], "A"), "$factor"] = np.nan
    with pytest.warns(UserWarning, match="adjusted prices"):
        _, _, orders, _ = run_bt(q, make_pred({0: {"A": 2, "B": 1}}), topk=2, n_drop=0)
    assert _orders(orders, 1) == [("A", "BUY", 4750.0), ("B", "BUY", 2375.0)]


def test_quote_without_factor_column_trades_adjusted_amounts():
    q = make_quote({"A": [10.0] * 3, "B": [20.0] * 3}).drop(columns="$factor")
    with pytest.warns(UserWarning, match="adjusted prices"):
        _, _, orders, _ = run_bt(q, make_pred({0: {"A": 2, "B": 1}}), topk=2, n_drop=0)
    assert _orders(orders, 1) == [("A", "BUY", 4750.0), ("B", "BUY", 2375.0)]


def test_min_cost_applies_to_small_trades():
    q = make_quote({"A": [10.0] * 4, "B": [20.0] * 4})
    pred = make_pred({0: {"A": 2, "B": 1}, 1: {"A": 1, "B": 2}})
    report, _, orders, _ = run_bt(q, pred, topk=1, n_drop=1, account=2000.0)
    # 2000 * 0.95 / 10 = 190 shares -> 100; value 1000, proportional cost 0.5 < 5 -> cost 5
    o = orders[orders["datetime"] == DATES[1]].iloc[0]
    assert (o.deal_amount, o.trade_val, o.cost) == (100.0, 1000.0, 5.0)
    # the sell of A on day 2: 1000 * 0.0015 = 1.5 -> 5
    o = orders[(orders["datetime"] == DATES[2]) & (orders["direction"] == "SELL")].iloc[0]
    assert o.cost == 5.0
    assert report["cash"].iloc[1] == pytest.approx(2000 - 1000 - 5)


def test_buy_is_clipped_to_the_cash_left():
    # one name, risk_degree 1: the whole cash cannot pay value + cost, so the buy shrinks to what cash allows
    q = make_quote({"A": [10.0] * 3})
    _, _, orders, _ = run_bt(q, make_pred({0: {"A": 1}}), topk=1, n_drop=0, account=10000.0, trade_unit=None,
                             strategy_kw={"risk_degree": 1.0})
    o = orders.iloc[0]
    # cash 10000 < 10000 + max(5, 5): amount = (10000 - 5) / 10, since 10000 < 5 / 0.0005 + 5
    assert o.deal_amount == pytest.approx(999.5)
    assert o.cost == 5.0


def test_limit_up_blocks_buying_and_limit_down_blocks_selling():
    base = {"A": [10.0] * 5, "D": [50.0] * 5}
    # D is limit-up on day 2: A is sold, D cannot be bought
    q = make_quote({**base, "D": [50.0, 50.0, 55.0, 55.0, 55.0]})
    _, _, orders, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1)
    assert _orders(orders, 2) == [("A", "SELL", 9500.0)]
    # A is limit-down on day 2: A cannot be sold; D is still bought with the cash left (the buy list is
    # fixed before the sells execute, as in Qlib): 4952.5 * 0.95 / 50 = 94 -> 0 lots
    q = make_quote({**base, "A": [10.0, 10.0, 9.0, 9.0, 9.0]})
    _, _, orders, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1)
    assert _orders(orders, 2) == [("D", "BUY", 0.0)]
    assert _orders(orders, 3)[0] == ("A", "SELL", 9500.0)


@pytest.mark.parametrize("forbid_all", [True, False])
def test_forbid_all_trade_at_limit_blocks_both_directions(forbid_all):
    # A is limit-UP on day 2 (a sell is allowed by direction), D is limit-DOWN (a buy is allowed by direction)
    q = make_quote({"A": [10.0, 10.0, 11.0, 11.0, 11.0], "D": [50.0, 50.0, 45.0, 45.0, 45.0]})
    _, _, orders, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1,
                             strategy_kw={"forbid_all_trade_at_limit": forbid_all})
    day2 = _orders(orders, 2)
    if forbid_all:
        assert day2 == []
    else:
        # sell A at 11 (104500, cost 156.75); buy D at 45 with (4952.5 + 104343.25) * 0.95 / 45 -> 2300
        assert day2 == [("A", "SELL", 9500.0), ("D", "BUY", 2300.0)]


def test_limit_threshold_none_and_expression_pair():
    q = make_quote({"A": [10.0] * 5, "D": [50.0, 50.0, 55.0, 55.0, 55.0]})
    _, _, orders, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1, limit_threshold=None)
    assert [x[0] for x in _orders(orders, 2)] == ["A", "D"]
    # explicit flags: D flagged "limit buy" on day 2 only
    q["$buy_limit"] = 0.0
    q["$sell_limit"] = 0.0
    q.loc[(DATES[2], "D"), "$buy_limit"] = 1.0
    _, _, orders, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1, limit_threshold=("$buy_limit", "$sell_limit"))
    assert _orders(orders, 2) == [("A", "SELL", 9500.0)]


def test_suspended_stock_is_not_traded_and_keeps_its_last_price():
    # A (held) is suspended on day 2: no sell, valued at its last close 10; it resumes at 12 on day 3
    q = make_quote({"A": [10.0, 10.0, np.nan, 12.0, 12.0], "D": [50.0] * 5})
    report, positions, orders, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1)
    # the buy list holds D, budget 4952.5 * 0.95 / 50 -> 0 lots
    assert _orders(orders, 2) == [("D", "BUY", 0.0)]
    assert report["account"].iloc[2] == pytest.approx(4952.5 + 9500 * 10)
    assert positions[DATES[2]].get_stock_price("A") == 10.0
    assert _orders(orders, 3)[0] == ("A", "SELL", 9500.0)
    sell = orders[(orders["datetime"] == DATES[3]) & (orders["instrument"] == "A")].iloc[0]
    assert sell.price == 12.0
    # a suspended candidate is skipped like a limited one
    q = make_quote({"A": [10.0, np.nan, 10.0, 10.0, 10.0], "D": [50.0] * 5})
    _, _, orders, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1)
    assert _orders(orders, 1) == []


def test_instrument_without_any_quote_is_never_bought(quote_flat):
    pred = make_pred({0: {"ZZZ": 9, "A": 1}})
    _, _, orders, _ = run_bt(quote_flat, pred, topk=2, n_drop=0)
    # ZZZ (no quote at all) is suspended; the budget still counts it: 100000 * 0.95 / 2 / 10 = 4750 -> 4700
    assert _orders(orders, 1) == [("A", "BUY", 4700.0)]


def test_selling_the_full_position_ignores_lots():
    from qexp_records.backtest import ArrayPosition, Exchange, OrderDir
    q = make_quote({"A": [10.0] * 3})
    ex = Exchange(start_time=DATES[0], end_time=DATES[2], codes=["A"], quote=q, **{
        "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5, "trade_unit": 100, "limit_threshold": 0.095})
    pos = ArrayPosition(1, 12345.0)
    pos.buy(0, 12345.0, 0.0, 10.0)            # 1234.5 shares: not a whole lot; cash is now 0
    res = ex.deal(1, 0, OrderDir.SELL, 1234.5, pos)
    assert res.deal_amount == 1234.5 and not pos.held[0]
    assert pos.cash == pytest.approx(12345.0 - 12345.0 * 0.0015)
    # a partial sell is rounded down to lots
    pos = ArrayPosition(1, 12345.0)
    pos.buy(0, 12345.0, 0.0, 10.0)
    res = ex.deal(1, 0, OrderDir.SELL, 1000.3, pos)
    assert res.deal_amount == 1000.0 and pos.amount[0] == pytest.approx(234.5)


def test_full_sell_of_a_factor_adjusted_holding(quote_flat):
    q = make_quote({"A": [10.0] * 6, "D": [50.0] * 6}, factor={"A": 0.3, "D": 1.0})
    report, positions, orders, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1)
    # 9500 adjusted = 2850 real -> 2800 real -> 9333.33 adjusted; it is later sold in full
    bought = _orders(orders, 1)[0][2]
    assert bought == pytest.approx(2800 / 0.3)
    assert _orders(orders, 2)[0] == ("A", "SELL", bought)
    assert "A" not in positions[DATES[2]].get_stock_list()


def test_hold_thresh_delays_the_sell():
    q = make_quote({"A": [10.0] * 5, "D": [50.0] * 5})
    _, _, orders, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1, strategy_kw={"hold_thresh": 2})
    # A was bought on day 1: held one bar on day 2 (< 2), two bars on day 3
    assert [o for o in _orders(orders, 2) if o[1] == "SELL"] == []
    assert _orders(orders, 3) == [("A", "SELL", 9500.0), ("D", "BUY", 1800.0)]


def test_equal_scores_are_ordered_by_instrument_code(quote_flat):
    pred = make_pred({0: {"D": 1.0, "C": 1.0, "B": 1.0, "A": 1.0}, 1: {"D": 1.0, "C": 1.0, "B": 1.0, "A": 1.0}})
    _, positions, orders, _ = run_bt(quote_flat, pred, topk=2, n_drop=1)
    assert [o[0] for o in _orders(orders, 1)] == ["A", "B"]
    # day 2: held A, B; candidate C ranks after them on the tie, so it is the dropped one: no trade
    assert _orders(orders, 2) == []
    assert positions[DATES[2]].get_stock_list() == ["A", "B"]


def test_nan_scores_rank_last_and_unscored_holdings_are_sold_first(quote_flat):
    pred = make_pred({0: {"A": 1.0, "B": 2.0}, 1: {"B": 2.0, "C": 3.0, "D": np.nan}})
    _, _, orders, _ = run_bt(quote_flat, pred, topk=2, n_drop=1)
    assert sorted(o[0] for o in _orders(orders, 1)) == ["A", "B"]
    # day 2: A has no score (NaN, ranked last) -> sold; C (3.0) is bought, D (NaN) is not
    assert [(o[0], o[1]) for o in _orders(orders, 2)] == [("A", "SELL"), ("C", "BUY")]


def test_deal_price_open_buys_at_the_open_and_values_at_the_close():
    q = make_quote({"A": [10.0] * 3}, opens={"A": [9.5, 9.5, 9.5]})
    report, positions, orders, _ = run_bt(q, make_pred({0: {"A": 1}}), topk=1, n_drop=0, deal_price="open")
    # 95000 / 9.5 = 10000 shares at 9.5, valued at the close 10 at day end
    o = orders.iloc[0]
    assert (o.deal_amount, o.price) == (10000.0, 9.5)
    assert positions[DATES[1]].get_stock_price("A") == 10.0
    assert report["account"].iloc[1] == pytest.approx(100000 - 95000 - 47.5 + 100000)
    # "$open" is the same setting
    _, _, orders2, _ = run_bt(q, make_pred({0: {"A": 1}}), topk=1, n_drop=0, deal_price="$open")
    assert orders2.iloc[0].price == 9.5


def test_gross_return_identity_over_a_random_market():
    rng = np.random.default_rng(7)
    codes = list("ABCDEF")
    closes = {c: list(10 * np.cumprod(1 + rng.normal(0, 0.03, 10))) for c in codes}
    q = make_quote(closes)
    pred = make_pred({d: {c: float(rng.random()) for c in codes} for d in range(10)})
    report, positions, orders, ind = run_bt(q, pred, topk=3, n_drop=1)
    prev = np.r_[100000.0, report["account"].to_numpy()[:-1]]
    day_cost = report["total_cost"].diff().fillna(report["total_cost"].iloc[0]).to_numpy()
    assert np.allclose(report["return"] * prev, report["account"] - prev + day_cost)
    assert np.allclose(report["cost"] * prev, day_cost)
    assert np.allclose(report["account"], report["cash"] + report["value"])
    for t, d in enumerate(DATES):
        assert positions[d].calculate_value() == pytest.approx(report["account"].iloc[t])
    # indicators: every order fully filled on this liquid market, pa 0 on a daily bar
    traded = ind[ind["count"] > 0]
    assert (traded["ffr"] == 1.0).all() and (traded["pa"] == 0.0).all()
    assert (traded["count"] == orders.groupby("datetime").size().reindex(traded.index)).all()


def test_same_inputs_give_the_same_portfolio():
    rng = np.random.default_rng(3)
    codes = [f"S{i}" for i in range(6)]
    q = make_quote({c: list(10 * np.cumprod(1 + rng.normal(0, 0.02, 10))) for c in codes})
    # scores rounded to one decimal: many ties
    pred = make_pred({d: {c: round(float(rng.random()), 1) for c in codes} for d in range(10)})
    a = run_bt(q, pred, topk=3, n_drop=1)[2]
    b = run_bt(q, pred.sample(frac=1.0, random_state=1), topk=3, n_drop=1)[2]
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_benchmark_from_an_instrument_and_from_a_series(quote_flat):
    q = pd.concat([quote_flat, make_quote({"IDX": [100.0, 101.0, 99.99, 99.99, 100.0, 100.0]})]).sort_index()
    report, _, _, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1, benchmark="IDX")
    # $close / Ref($close, 1) - 1; the first day has no previous close in the data -> 0
    closes = np.array([100.0, 101.0, 99.99, 99.99, 100.0, 100.0], dtype="float32").astype("float64")
    assert report["bench"].iloc[0] == 0.0
    assert np.allclose(report["bench"].iloc[1:], closes[1:] / closes[:-1] - 1)
    # starting on day 1 uses day 0's close for the first return
    report, _, _, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1, benchmark="IDX", start=1)
    assert report["bench"].iloc[0] == pytest.approx(closes[1] / closes[0] - 1)
    series = pd.Series([0.01, 0.02], index=DATES[[1, 3]])
    report, _, _, _ = run_bt(q, make_pred(SWAP), topk=1, n_drop=1, benchmark=series)
    assert report["bench"].tolist() == [0.0, 0.01, 0.0, 0.02, 0.0, 0.0]


def test_region_defaults():
    from qexp_records.backtest import Exchange
    q = make_quote({"A": [10.0] * 3})
    us = Exchange(quote=q, region="us")
    cn = Exchange(quote=q, region="cn")
    assert (us.trade_unit, us.limit_threshold) == (1, None)
    assert (cn.trade_unit, cn.limit_threshold, cn.buy_price_field) == (100, 0.095, "$close")
    assert Exchange(quote=q, region="cn", limit_threshold=None, trade_unit=None).trade_unit is None
