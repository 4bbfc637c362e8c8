"""Qlib's runtime keys ``trade_unit``, ``limit_threshold`` and ``deal_price`` (issue 17 item 3): given to
``qexp.init`` (Qlib: ``qlib.init(trade_unit=...)`` sets ``C.trade_unit``), they are the backtest exchange's
defaults when a config's ``exchange_kwargs`` does not give its own; ``custom_ops`` is refused by name."""
from __future__ import annotations

import logging
import re

import pandas as pd
import pytest

import qexp
from qexp.ext import ConfigError

from .conftest import DATES, make_pred, make_quote

COSTS = dict(open_cost=0.0005, close_cost=0.0015, min_cost=5.0)


@pytest.fixture(autouse=True)
def _back_to_region_defaults():
    yield
    from qexp_records.backtest.exchange import set_init_defaults
    set_init_defaults({})


def _init(tmp_path, **settings):
    qexp.init(uri=str(tmp_path / "store"), region="cn", **settings)


def _first_buys(quote: pd.DataFrame, pred: pd.DataFrame, topk: int, **exchange_kwargs) -> list[tuple]:
    """Orders of day 1 of a TopkDropout backtest whose exchange_kwargs give only costs (plus ``exchange_kwargs``)."""
    from qexp_records.backtest import SimulatorExecutor, TopkDropoutStrategy, backtest
    dates = pd.DatetimeIndex(quote.index.get_level_values(0).unique())
    strat = TopkDropoutStrategy(signal=pred, topk=topk, n_drop=0)
    _, ind = backtest(dates[0], dates[-1], strat, SimulatorExecutor(generate_portfolio_metrics=True),
                      benchmark=None, account=100000.0, exchange_kwargs={**COSTS, **exchange_kwargs}, quote=quote)
    orders = ind["1day"][1]
    day1 = orders[orders["datetime"] == DATES[1]]
    return [(r.instrument, r.direction, r.deal_amount) for r in day1.itertuples()]


def test_trade_unit_sets_the_lot_size_a_config_leaves_out(tmp_path):
    q = make_quote({"A": [10.0] * 3})
    pred = make_pred({0: {"A": 1}})
    _init(tmp_path)
    assert _first_buys(q, pred, 1) == [("A", "BUY", 9500.0)]          # cn: lots of 100 (95000 / 10)
    _init(tmp_path, trade_unit=1000)
    assert _first_buys(q, pred, 1) == [("A", "BUY", 9000.0)]          # lots of 1000
    assert _first_buys(q, pred, 1, trade_unit=100) == [("A", "BUY", 9500.0)]   # the config's own wins
    _init(tmp_path, trade_unit=None)                                   # None: no lot rounding
    q2 = make_quote({"A": [7.0] * 3})
    assert _first_buys(q2, pred, 1)[0][2] == pytest.approx(95000 / 7, rel=1e-6)


def test_limit_threshold_sets_the_price_limit_a_config_leaves_out(tmp_path):
    # B rises 10% on day 1: at cn's 9.5% limit it cannot be bought; with a 20% limit it can
    q = make_quote({"A": [10.0] * 4, "B": [20.0, 22.0, 22.0, 22.0]})
    pred = make_pred({0: {"A": 1, "B": 2}})
    _init(tmp_path)
    assert [o[0] for o in _first_buys(q, pred, 1)] == []
    _init(tmp_path, limit_threshold=0.2)
    assert [o[0] for o in _first_buys(q, pred, 1)] == ["B"]
    assert [o[0] for o in _first_buys(q, pred, 1, limit_threshold=0.095)] == []   # the config's own wins
    from qexp_records import default_port_analysis_config
    assert default_port_analysis_config()["backtest"]["exchange_kwargs"]["limit_threshold"] == 0.2


def test_deal_price_sets_the_price_a_config_leaves_out(tmp_path):
    # A opens at 8 and closes at 10 on day 1: 95000 buys 9500 shares at the close, 11800 at the open
    q = make_quote({"A": [10.0] * 3}, opens={"A": [8.0] * 3})
    pred = make_pred({0: {"A": 1}})
    _init(tmp_path)
    assert _first_buys(q, pred, 1) == [("A", "BUY", 9500.0)]
    _init(tmp_path, deal_price="open")
    assert _first_buys(q, pred, 1) == [("A", "BUY", 11800.0)]
    assert _first_buys(q, pred, 1, deal_price="close") == [("A", "BUY", 9500.0)]    # the config's own wins
    from qexp_records import default_port_analysis_config
    assert default_port_analysis_config()["backtest"]["exchange_kwargs"]["deal_price"] == "open"
    _init(tmp_path)                                                    # a new init without it: the region's
    assert _first_buys(q, pred, 1) == [("A", "BUY", 9500.0)]


def test_the_keys_are_used_not_noticed_and_reach_workers(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="qexp"):
        _init(tmp_path, trade_unit=10, limit_threshold=None, deal_price=["open", "close"])
    assert not [r for r in caplog.records if "no effect" in r.getMessage() or "not used" in r.getMessage()]
    settings = qexp.get_settings()
    assert (settings["trade_unit"], settings["limit_threshold"], settings["deal_price"]) == (10, None, ["open", "close"])


@pytest.mark.parametrize("key, bad, allowed", [
    ("trade_unit", 0, "a positive number of shares per lot"),
    ("limit_threshold", "ten", "a number (0.095)"),
    ("deal_price", 5, "a price field"),
])
def test_invalid_values_are_refused_naming_the_key(tmp_path, key, bad, allowed):
    with pytest.raises(ConfigError, match=re.escape(f"{key}={bad!r} is invalid; {key} accepts {allowed}")):
        _init(tmp_path, **{key: bad})


class MyOp:  # a Qlib-style operator class
    pass


def test_custom_ops_are_refused_by_name_with_what_to_do(tmp_path, caplog):
    with pytest.raises(ConfigError) as err:
        _init(tmp_path, custom_ops=[MyOp])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("qexp.init: custom_ops=[<class")
    assert "cannot run Qlib operator classes" in msg and "built-in operators" in msg and "processor" in msg
    with caplog.at_level(logging.WARNING, logger="qexp"):
        _init(tmp_path, custom_ops=[])                                 # Qlib's default: accepted quietly
    assert not [r for r in caplog.records if "custom_ops" in r.getMessage()]


def test_region_tw_trades_qlib_s_taiwan_lots_and_limits(tmp_path):
    from qexp_records.backtest.exchange import region_defaults
    from qexp_records.port_ana_record import default_port_analysis_config
    assert region_defaults("tw") == {"trade_unit": 1000, "limit_threshold": 0.1, "deal_price": "close"}
    assert default_port_analysis_config("tw")["backtest"]["benchmark"] is None
    assert default_port_analysis_config("tw")["backtest"]["exchange_kwargs"]["limit_threshold"] == 0.1
    qexp.init(uri=str(tmp_path / "store"), region="tw")
    q = make_quote({"A": [10.0] * 3})
    assert _first_buys(q, make_pred({0: {"A": 1}}), 1) == [("A", "BUY", 9000.0)]   # lots of 1,000 (95000 / 10)
