"""Alpha158 / Alpha360: exact column names and order, config options, defaults (reference §3-§5)."""
from __future__ import annotations

import pytest

from qexp.exceptions import ConfigError
from qexp_data.alpha import LABEL_EXPR, Alpha158, Alpha158DL, Alpha158vwap, Alpha360, Alpha360DL
from qexp_data.processor import CSZScoreNorm, DropnaLabel, Fillna, ProcessInf, ZScoreNorm

from .fake_provider import PanelProvider

# ---- the lists, written from the reference's rules (not from the code under test) -------------------
KBAR = ["KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2"]
PRICE = ["OPEN0", "HIGH0", "LOW0", "VWAP0"]
ROLLING_GROUPS = ["ROC", "MA", "STD", "BETA", "RSQR", "RESI", "MAX", "MIN", "QTLU", "QTLD", "RANK", "RSV",
                  "IMAX", "IMIN", "IMXD", "CORR", "CORD", "CNTP", "CNTN", "CNTD", "SUMP", "SUMN", "SUMD",
                  "VMA", "VSTD", "WVMA", "VSUMP", "VSUMN", "VSUMD"]
WINDOWS = [5, 10, 20, 30, 60]


def reference_alpha158_names() -> list[str]:
    return KBAR + PRICE + [f"{g}{d}" for g in ROLLING_GROUPS for d in WINDOWS]


def reference_alpha360_names() -> list[str]:
    return [f"{b}{i}" for b in ["CLOSE", "OPEN", "HIGH", "LOW", "VWAP", "VOLUME"] for i in list(range(59, 0, -1)) + [0]]


def test_alpha158_names_exact():
    exprs, names = Alpha158DL.get_feature_config()
    assert names == reference_alpha158_names()
    assert len(names) == len(exprs) == 158
    assert len(set(exprs)) == 158


def test_alpha158_selected_20_keep_original_order():
    selected = ["KLEN", "KLOW", "ROC60", "STD5", "RSQR5", "RSQR10", "RSQR20", "RSQR60", "RESI5", "RESI10",
                "CORR5", "CORR10", "CORR20", "CORR60", "CORD5", "CORD10", "CORD60", "VSTD5", "WVMA5", "WVMA60"]
    _, names = Alpha158DL.get_feature_config()
    assert [n for n in names if n in set(selected)] == selected


def test_alpha158_key_expressions():
    exprs, names = Alpha158DL.get_feature_config()
    e = dict(zip(names, exprs))
    assert e["KMID"] == "($close-$open)/$open"
    assert e["KSFT2"] == "(2*$close-$high-$low)/($high-$low+1e-12)"
    assert e["OPEN0"] == "$open/$close" and e["VWAP0"] == "$vwap/$close"
    assert e["ROC5"] == "Ref($close, 5)/$close"
    assert e["MIN20"] == "Min($low, 20)/$close"
    assert e["QTLU10"] == "Quantile($close, 10, 0.8)/$close"
    assert e["IMXD60"] == "(IdxMax($high, 60)-IdxMin($low, 60))/60"
    assert e["CORD5"] == "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), 5)"
    assert e["CNTD10"] == "Mean($close>Ref($close, 1), 10)-Mean($close<Ref($close, 1), 10)"
    assert e["VMA30"] == "Mean($volume, 30)/($volume+1e-12)"


def test_alpha158_config_options():
    exprs, names = Alpha158DL.get_feature_config({"kbar": {}})
    assert names == KBAR
    _, names = Alpha158DL.get_feature_config({"price": {"windows": [0, 1], "feature": ["CLOSE"]}})
    assert names == ["CLOSE0", "CLOSE1"]
    exprs, names = Alpha158DL.get_feature_config({"volume": {"windows": [0, 2]}})
    assert names == ["VOLUME0", "VOLUME2"]
    assert exprs == ["$volume/($volume+1e-12)", "Ref($volume, 2)/($volume+1e-12)"]
    _, names = Alpha158DL.get_feature_config({"price": {}})  # Qlib's defaults: 5 features x windows 0..4
    assert names[:5] == ["OPEN0", "OPEN1", "OPEN2", "OPEN3", "OPEN4"] and len(names) == 25
    _, names = Alpha158DL.get_feature_config({"rolling": {"windows": [5], "include": ["MA", "LOW", "ROC"]}})
    assert names == ["ROC5", "MA5", "MIN5"]  # Qlib's group order, not the include order
    config_keys = ["LOW" if g == "MIN" else g for g in ROLLING_GROUPS]  # MIN columns: config key "LOW"
    _, names = Alpha158DL.get_feature_config({"rolling": {"windows": [10], "exclude": config_keys[1:]}})
    assert names == ["ROC10"]
    with pytest.warns(UserWarning, match="NOPE"):
        _, names = Alpha158DL.get_feature_config({"rolling": {"windows": [5], "include": ["NOPE", "MA"]}})
    assert names == ["MA5"]


def test_alpha360_names_exact():
    exprs, names = Alpha360DL.get_feature_config()
    assert names == reference_alpha360_names()
    e = dict(zip(names, exprs))
    assert e["CLOSE0"] == "$close/$close"
    assert e["HIGH7"] == "Ref($high, 7)/$close"
    assert e["VWAP0"] == "$vwap/$close"
    assert e["VOLUME59"] == "Ref($volume, 59)/($volume+1e-12)"
    assert e["VOLUME0"] == "$volume/($volume+1e-12)"


@pytest.fixture
def blind_provider(panel):
    from qexp import data_api
    prov = PanelProvider(panel, blind=True)
    old = data_api._global["provider"]
    data_api.set_provider(prov)
    yield prov
    data_api.set_provider(old)


def test_alpha158_handler_columns_and_default_processors(blind_provider):
    h = Alpha158(instruments="all", start_time="2020-01-06", end_time="2020-02-20")
    raw = h.fetch(col_set="__raw", data_key="raw")
    assert list(raw.columns) == [("feature", n) for n in reference_alpha158_names()] + [("label", "LABEL0")]
    assert list(raw.index.names) == ["datetime", "instrument"]
    assert raw.index.is_monotonic_increasing
    assert h.infer_processors == []
    assert [type(p) for p in h.learn_processors] == [DropnaLabel, CSZScoreNorm]
    assert h.learn_processors[1].fields_group == "label"
    assert h.process_type == "append"
    assert h.data_loader.fields["label"] == ([LABEL_EXPR], ["LABEL0"])
    # the blind provider draws labels with NaN only on suspended days; DropnaLabel removes those rows
    learn = h.fetch(data_key="learn")
    assert not learn["LABEL0"].isna().any()


def test_alpha360_defaults_need_fit_window(blind_provider):
    with pytest.raises(ConfigError, match="fit_start_time"):
        Alpha360(instruments="all", start_time="2020-01-06", end_time="2020-02-20")


def test_alpha360_handler_columns_and_default_processors(blind_provider):
    h = Alpha360(instruments="all", start_time="2020-01-06", end_time="2020-02-20",
                 fit_start_time="2020-01-06", fit_end_time="2020-01-31")
    assert h.get_cols() == reference_alpha360_names() + ["LABEL0"]
    assert [type(p) for p in h.infer_processors] == [ProcessInf, ZScoreNorm, Fillna]
    zs = h.infer_processors[1]
    assert (zs.fit_start_time, zs.fit_end_time, zs.fields_group) == (
        __import__("pandas").Timestamp("2020-01-06"), __import__("pandas").Timestamp("2020-01-31"), None)
    # Qlib's pitfall: Fillna on all columns fills NaN labels with 0 before DropnaLabel, so nothing is dropped
    infer = h.fetch(data_key="infer")
    assert not infer.isna().any().any()
    assert len(h.fetch(data_key="learn")) == len(infer)


def test_label_override_and_vwap_variant(blind_provider):
    h = Alpha158(instruments="all", start_time="2020-01-06", end_time="2020-01-31",
                 label=(["Ref($close, -1)/$close - 1"], ["RET1"]), learn_processors=[])
    assert h.get_cols("label") == ["RET1"]
    h = Alpha158(instruments="all", start_time="2020-01-06", end_time="2020-01-31",
                 label=["Ref($close, -2)/Ref($close, -1) - 1"], learn_processors=[])
    assert h.get_cols("label") == ["Ref($close, -2)/Ref($close, -1) - 1"]
    h = Alpha158vwap(instruments="all", start_time="2020-01-06", end_time="2020-01-31", learn_processors=[])
    assert h.data_loader.fields["label"][0] == ["Ref($vwap, -2)/Ref($vwap, -1) - 1"]
