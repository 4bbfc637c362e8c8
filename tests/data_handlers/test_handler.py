"""DataHandler / DataHandlerLP: raw/infer/learn data, process types, fit window, fetch, loaders."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from qexp.exceptions import ConfigError
from qexp_data.handler import DataHandler, DataHandlerLP, DataNotLoadedError
from qexp_data.loader import QlibDataLoader, StaticDataLoader
from qexp_data.processor import ZScoreNorm

FEATURES = (["$close", "Mean($close, 5)/$close", "Ref($close, 1)/$close"], ["CLOSE", "MA5", "ROC1"])
LABEL = (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])
LOADER = {"class": "QlibDataLoader", "kwargs": {"config": {"feature": FEATURES, "label": LABEL}}}
START, END = "2020-01-08", "2020-02-25"
FIT = ("2020-01-08", "2020-01-31")


def zscore_cfg(group=None):
    return {"class": "ZScoreNorm", "kwargs": {"fit_start_time": FIT[0], "fit_end_time": FIT[1], "fields_group": group}}


def handler(**kw):
    args = dict(instruments="all", start_time=START, end_time=END, data_loader=LOADER)
    args.update(kw)
    return DataHandlerLP(**args)


def expected_raw(panel: pd.DataFrame) -> pd.DataFrame:
    """The raw frame computed directly from the panel, per instrument."""
    parts = []
    for code, g in panel.groupby(level="instrument"):
        c = g["close"].droplevel("instrument").astype(np.float64)
        part = pd.DataFrame({
            ("feature", "CLOSE"): c, ("feature", "MA5"): c.rolling(5, min_periods=1).mean() / c,
            ("feature", "ROC1"): c.shift(1) / c, ("label", "LABEL0"): c.shift(-2) / c.shift(-1) - 1,
        })
        part.index = pd.MultiIndex.from_arrays([part.index, [code] * len(part)], names=["datetime", "instrument"])
        parts.append(part)
    out = pd.concat(parts).sort_index()
    return out.loc[pd.Timestamp(START):pd.Timestamp(END)].astype(np.float32)


def test_raw_data_matches_expressions(provider, panel):
    h = handler()
    raw = h.fetch(col_set="__raw", data_key="raw")
    exp = expected_raw(panel)
    assert list(raw.columns) == list(exp.columns)
    pd.testing.assert_index_equal(raw.index, exp.index)
    np.testing.assert_allclose(raw.to_numpy(), exp.to_numpy(), rtol=1e-5, atol=1e-6)
    # suspended days are NaN rows, not dropped
    assert raw.loc[(slice(None), "CCC"), ("feature", "CLOSE")].isna().sum() == 2


def test_market_spans_and_list_of_codes(provider):
    h = handler(instruments="mkt")
    raw = h.fetch(data_key="raw")
    ccc = raw.xs("CCC", level="instrument")
    assert ccc.index.min() == pd.bdate_range("2020-01-01", periods=40)[20]
    assert set(raw.index.get_level_values("instrument")) == {"AAA", "BBB", "CCC"}
    h = handler(instruments=["DDD", "AAA"])
    assert set(h.fetch(data_key="raw").index.get_level_values("instrument")) == {"AAA", "DDD"}


def test_append_vs_independent(provider):
    infer = [zscore_cfg()]
    learn = ["DropnaLabel", {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}]
    ha = handler(infer_processors=infer, learn_processors=learn, process_type="append")
    hi = handler(infer_processors=infer, learn_processors=learn, process_type="independent")
    raw = ha.fetch(data_key="raw")
    # infer data is the same; learn data differs in the features only
    pd.testing.assert_frame_equal(ha.fetch(data_key="infer"), hi.fetch(data_key="infer"))
    la, li = ha.fetch(data_key="learn"), hi.fetch(data_key="learn")
    pd.testing.assert_index_equal(la.index, li.index)
    # independent: learn features are the raw ones; append: the z-scored infer ones
    pd.testing.assert_frame_equal(li[["CLOSE", "MA5"]], raw.loc[li.index, ["CLOSE", "MA5"]])
    pd.testing.assert_frame_equal(la[["CLOSE", "MA5"]], ha.fetch(data_key="infer").loc[la.index, ["CLOSE", "MA5"]])
    assert not np.allclose(la["CLOSE"], li["CLOSE"])
    # both: label z-scored per date after DropnaLabel
    assert not la["LABEL0"].isna().any()
    per_date = la["LABEL0"].groupby(level="datetime")
    np.testing.assert_allclose(per_date.mean().to_numpy(), 0, atol=1e-5)


def test_fit_window_respected(provider):
    h = handler(infer_processors=[zscore_cfg("feature")])
    raw = h.fetch(data_key="raw", col_set="feature")
    fit_rows = raw.loc[pd.Timestamp(FIT[0]):pd.Timestamp(FIT[1])].to_numpy(dtype=np.float64)
    mu, sd = np.nanmean(fit_rows, axis=0), np.nanstd(fit_rows, axis=0)
    exp = (raw.to_numpy(dtype=np.float64) - mu) / sd
    np.testing.assert_allclose(h.fetch(col_set="feature").to_numpy(dtype=np.float64), exp, rtol=1e-4, atol=1e-5)
    # the label is outside the group and untouched
    pd.testing.assert_series_equal(h.fetch(col_set="label")["LABEL0"], h.fetch(col_set="label", data_key="raw")["LABEL0"])


def test_infer_processors_must_be_for_infer(provider):
    with pytest.raises(ConfigError, match="DropnaLabel.*learn_processors"):
        handler(infer_processors=["DropnaLabel"])
    with pytest.raises(ConfigError, match="process_type"):
        handler(process_type="sideways")


def test_processor_given_as_instance_and_qlib_module_path(provider):
    zs = ZScoreNorm(fit_start_time=FIT[0], fit_end_time=FIT[1])
    h = handler(infer_processors=[zs, {"class": "Fillna", "module_path": "qexp_data.processor"}])
    assert h.infer_processors[0] is zs
    assert not h.fetch().isna().any().any()


def test_fetch_variants(provider):
    h = handler(learn_processors=["DropnaLabel"])
    all_ = h.fetch()
    assert list(all_.columns) == ["CLOSE", "MA5", "ROC1", "LABEL0"]  # "__all" drops the group level
    assert list(h.fetch(col_set="feature").columns) == ["CLOSE", "MA5", "ROC1"]
    assert list(h.fetch(col_set="label").columns) == ["LABEL0"]
    two = h.fetch(col_set=["feature", "label"])
    assert isinstance(two.columns, pd.MultiIndex) and two.columns.nlevels == 2
    raw_cols = h.fetch(col_set="__raw")
    assert isinstance(raw_cols.columns, pd.MultiIndex)
    # inclusive datetime slice
    part = h.fetch(slice("2020-01-10", "2020-01-14"))
    assert sorted(set(part.index.get_level_values("datetime").strftime("%m-%d"))) == ["01-10", "01-13", "01-14"]
    # a single date with squeeze drops the datetime level
    one = h.fetch(pd.Timestamp("2020-01-14"), col_set="label", squeeze=True)
    assert isinstance(one, pd.Series) and one.index.name == "instrument"
    # by instrument
    aaa = h.fetch("AAA", level="instrument")
    assert set(aaa.index.get_level_values("instrument")) == {"AAA"}
    # data keys
    assert len(h.fetch(data_key="learn")) < len(h.fetch(data_key="infer"))
    with pytest.raises(KeyError, match="data_key"):
        h.fetch(data_key="nope")
    with pytest.raises(KeyError, match="groups"):
        h.fetch(col_set="weird")
    assert h.get_cols("label") == ["LABEL0"]


def test_drop_raw(provider):
    h = handler(drop_raw=True, infer_processors=[zscore_cfg()])
    assert len(h.fetch()) > 0
    with pytest.raises(AttributeError, match="drop_raw"):
        h.fetch(data_key="raw")


def test_reload_with_load_state_keeps_fitted_stats(provider):
    h = handler(infer_processors=[zscore_cfg()])
    before = h.fetch()
    mean = h.infer_processors[0].mean_train.copy()
    h2 = pickle.loads(pickle.dumps(h))
    assert "_data" not in h2.__dict__ and "_infer" not in h2.__dict__  # pickled without data
    with pytest.raises(DataNotLoadedError, match="setup_data"):
        h2.fetch()
    h2.setup_data(init_type=DataHandlerLP.IT_LS)
    np.testing.assert_array_equal(h2.infer_processors[0].mean_train, mean)
    pd.testing.assert_frame_equal(h2.fetch(), before)
    # a new fit window refits on the next fit_seq setup
    h2.config(processor_kwargs={"fit_start_time": "2020-02-01", "fit_end_time": "2020-02-25"})
    h2.setup_data()
    assert not np.allclose(h2.infer_processors[0].mean_train, mean)


def test_ungrouped_loader_config_and_plain_list(provider):
    loader = QlibDataLoader(config=["$close", "Ref($close, 1)"])
    df = loader.load("all", START, END)
    assert list(df.columns) == ["$close", "Ref($close, 1)"]
    loader = QlibDataLoader(config={"feature": ["$close", "$close"], "label": ["$close"]})
    df = loader.load("all", START, END)  # duplicates are evaluated once and repeated
    assert df.shape[1] == 3 and np.array_equal(df.iloc[:, 0].to_numpy(), df.iloc[:, 2].to_numpy(), equal_nan=True)
    with pytest.raises(ConfigError, match="expressions but"):
        QlibDataLoader(config={"feature": (["$close"], ["A", "B"])})


def test_static_loader_frame_and_pickle_path(provider, tmp_path):
    base = handler().fetch(col_set="__raw", data_key="raw")
    path = tmp_path / "frame.pkl"
    base.to_pickle(path)
    for src in (base, str(path)):
        h = DataHandlerLP(instruments=["AAA", "CCC"], start_time="2020-01-10", end_time="2020-01-20",
                          data_loader=StaticDataLoader(src))
        got = h.fetch(col_set="__raw", data_key="raw")
        exp = base.loc[pd.Timestamp("2020-01-10"):pd.Timestamp("2020-01-20")]
        exp = exp[exp.index.get_level_values("instrument").isin(["AAA", "CCC"])]
        pd.testing.assert_frame_equal(got, exp)
    # a market name is resolved through the provider
    h = DataHandler(instruments="mkt", data_loader={"class": "StaticDataLoader", "kwargs": {"config": str(path)}})
    assert set(h.fetch().index.get_level_values("instrument")) == {"AAA", "BBB", "CCC"}
    with pytest.raises(ConfigError, match="does not exist"):
        DataHandlerLP(data_loader=StaticDataLoader(str(tmp_path / "missing.pkl")))


def test_from_df_and_range_selector(provider):
    base = handler().fetch(col_set="__raw", data_key="raw")
    h = DataHandlerLP.from_df(base)
    pd.testing.assert_frame_equal(h.fetch(col_set="__raw", data_key="learn"), base)
    sel = h.get_range_selector("2020-01-15", 3)
    assert (sel.start, sel.stop) == (pd.Timestamp("2020-01-13"), pd.Timestamp("2020-01-15"))


def test_name_filter_pipe_and_unsupported_filters(provider):
    loader = QlibDataLoader(config={"feature": FEATURES}, filter_pipe=[
        {"filter_type": "NameDFilter", "name_rule_re": "^(AAA|CCC)$"}])
    df = loader.load("mkt", START, END)
    assert set(df.index.get_level_values("instrument")) == {"AAA", "CCC"}
    # CCC only joined mkt on day 20: the spans still apply
    assert df.xs("CCC", level="instrument").index.min() == pd.bdate_range("2020-01-01", periods=40)[20]
    loader = QlibDataLoader(config={"feature": FEATURES},
                            filter_pipe=[{"filter_type": "ExpressionDFilter", "rule_expression": "$close>10"}])
    with pytest.warns(UserWarning, match="ExpressionDFilter"):
        loader.load("mkt", START, END)


def test_progress_bar_chunks_give_the_same_frame(provider, monkeypatch, capsys):
    quiet = handler(cache=False).fetch(col_set="__raw", data_key="raw")
    calls = provider.calls
    monkeypatch.setenv("QEXP_PROGRESS", "1")
    monkeypatch.setattr("qexp_data.loader.PROGRESS_CHUNK", 2)
    shown = handler(cache=False).fetch(col_set="__raw", data_key="raw")
    assert provider.calls - calls == 2  # 4 fields in chunks of 2
    pd.testing.assert_frame_equal(shown, quiet)
    assert "features (4 fields)" in capsys.readouterr().err


def test_span_mask_with_several_spans_per_code(panel):
    from qexp_data.loader import _mask_spans
    d = pd.bdate_range("2020-01-01", periods=40)
    spans = {"AAA": [(d[2], d[4]), (d[10], d[11])], "BBB": [(d[0], d[39])]}
    out = _mask_spans(panel, spans)
    aaa = out.xs("AAA", level="instrument").index
    assert list(aaa) == [d[2], d[3], d[4], d[10], d[11]]
    assert len(out.xs("BBB", level="instrument")) == 30  # BBB starts on day 10
    assert set(out.index.get_level_values("instrument")) == {"AAA", "BBB"}


class _InPlace:
    """A Qlib-style user processor that changes its input in place in several ways."""

    def fit(self, df=None):
        pass

    def __call__(self, df):
        df.fillna(-7.0, inplace=True)
        df.iloc[0, 0] = 12345.0
        df[("feature", "MA5")] = 0.5
        return df

    def is_for_infer(self):
        return True

    def readonly(self):
        return False


def test_in_place_processors_leave_raw_and_infer_untouched(provider):
    from qexp_data.processor import Processor

    class InPlace(_InPlace, Processor):
        pass

    h = handler(infer_processors=[InPlace()], learn_processors=[InPlace()], process_type="independent")
    fresh = handler(cache=False).fetch(col_set="__raw", data_key="raw")
    pd.testing.assert_frame_equal(h.fetch(col_set="__raw", data_key="raw"), fresh)
    infer = h.fetch(data_key="infer")
    assert infer.iloc[0, 0] == 12345.0 and (infer["MA5"] == 0.5).all() and not infer.isna().any().any()
    ha = handler(infer_processors=[ZScoreNorm(fit_start_time=FIT[0], fit_end_time=FIT[1])],
                 learn_processors=[InPlace()])
    assert ha.fetch(data_key="infer").iloc[0, 0] != 12345.0  # append: learn ran on a protected infer frame
    assert ha.fetch(data_key="learn").iloc[0, 0] == 12345.0


def _double_aaa(df, instrument=None):
    return df * 2 if instrument == "AAA" else df


def test_inst_processors_run_per_instrument(provider):
    plain = QlibDataLoader(config={"feature": FEATURES}).load("all", START, END)
    loader = QlibDataLoader(config={"feature": FEATURES}, inst_processors=[_double_aaa])
    df = loader.load("all", START, END)
    pd.testing.assert_frame_equal(df.xs("AAA", level="instrument"), plain.xs("AAA", level="instrument") * 2)
    pd.testing.assert_frame_equal(df.xs("BBB", level="instrument"), plain.xs("BBB", level="instrument"))
    assert list(df.index.names) == ["datetime", "instrument"] and df.index.is_monotonic_increasing


def test_progress_callback_when_the_provider_takes_one(panel, monkeypatch, capsys):
    from qexp import data_api

    from .fake_provider import PanelProvider

    class Reporting(PanelProvider):
        def features(self, instruments, fields, start_time=None, end_time=None, freq="day", progress=None):
            out = super().features(instruments, fields, start_time, end_time, freq)
            for _ in fields:
                progress(1)
                self.updates += 1
            return out

    prov = Reporting(panel)
    prov.updates = 0
    old = data_api._global["provider"]
    data_api.set_provider(prov)
    monkeypatch.setenv("QEXP_PROGRESS", "1")
    try:
        handler(cache=False)
    finally:
        data_api.set_provider(old)
    assert prov.calls == 1 and prov.updates == 4  # one call, no chunks, one step per field
    assert "features (4 fields)" in capsys.readouterr().err
