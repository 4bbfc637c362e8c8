"""DatasetH segments / col_set / data_key / pickling, and TSDatasetH windows checked by hand."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from qexp_data.dataset import DatasetH, TSDatasetH
from qexp_data.handler import DataHandlerLP
from qexp_data.loader import StaticDataLoader
from qexp_data.sampler import TSDataSampler

from .test_handler import FIT, LOADER

SEGMENTS = {"train": ("2020-01-08", "2020-01-31"), "valid": ["2020-02-03", "2020-02-10"],
            "test": ("2020-02-11", "2020-02-25")}


def handler_config():
    return {"class": "DataHandlerLP", "module_path": "qexp_data.handler", "kwargs": {
        "instruments": "all", "start_time": "2020-01-08", "end_time": "2020-02-25", "data_loader": LOADER,
        "infer_processors": [{"class": "ZScoreNorm", "kwargs": {"fit_start_time": FIT[0], "fit_end_time": FIT[1],
                                                                  "fields_group": "feature"}}],
        "learn_processors": ["DropnaLabel"]}}


def dates_of(df):
    d = df.index.get_level_values("datetime")
    return d.min(), d.max()


def test_prepare_segments_col_set_data_key(provider):
    ds = DatasetH(handler_config(), SEGMENTS)
    assert isinstance(ds.handler, DataHandlerLP)
    train = ds.prepare("train")
    assert dates_of(train) == (pd.Timestamp("2020-01-08"), pd.Timestamp("2020-01-31"))
    assert list(train.columns) == ["CLOSE", "MA5", "ROC1", "LABEL0"]
    assert list(train.index.names) == ["datetime", "instrument"]
    tr, va = ds.prepare(["train", "valid"], col_set=["feature", "label"], data_key=DataHandlerLP.DK_L)
    assert tr.columns.nlevels == 2 and not tr[("label", "LABEL0")].isna().any()
    assert dates_of(va) == (pd.Timestamp("2020-02-03"), pd.Timestamp("2020-02-10"))
    feat = ds.prepare("test", col_set="feature", data_key="raw")
    pd.testing.assert_frame_equal(feat, ds.handler.fetch(slice("2020-02-11", "2020-02-25"), col_set="feature",
                                                         data_key="raw"))
    by_slice = ds.prepare(slice("2020-02-11", "2020-02-12"), col_set="label")
    assert list(by_slice.columns) == ["LABEL0"] and len(by_slice) == 8
    with pytest.raises(KeyError, match=r"unknown segment 'tset'.*\['train', 'valid', 'test'\]"):
        ds.prepare("tset")
    with pytest.raises(KeyError, match="unknown segment"):
        ds.prepare(["train", "nope"])


def test_fetch_kwargs_and_bad_segments(provider):
    ds = DatasetH(handler_config(), SEGMENTS, fetch_kwargs={"data_key": "raw"})
    assert ds.prepare("train", col_set="feature").equals(
        ds.handler.fetch(slice(*SEGMENTS["train"]), col_set="feature", data_key="raw"))
    with pytest.raises(ValueError, match="segments"):
        DatasetH(handler_config(), {"train": ("2020-01-01",)})


def test_pickle_drops_data_and_setup_data_reloads(provider):
    ds = DatasetH(handler_config(), SEGMENTS)
    before = ds.prepare("test")
    ds.config(dump_all=False, recursive=True)
    blob = ds.to_pickle_bytes()
    restored = pickle.loads(blob)
    assert not {"_data", "_infer", "_learn"} & set(restored.handler.__dict__)
    # the fitted statistics travel with the pickle
    np.testing.assert_array_equal(restored.handler.infer_processors[0].mean_train,
                                  ds.handler.infer_processors[0].mean_train)
    with pytest.raises(AttributeError, match="setup_data"):
        restored.prepare("test")
    restored.setup_data()
    pd.testing.assert_frame_equal(restored.prepare("test"), before)
    # dump_all keeps the data
    ds.config(dump_all=True, recursive=True)
    full_blob = ds.to_pickle_bytes()
    data_bytes = sum(getattr(ds.handler, a).to_numpy().nbytes for a in ("_data", "_infer", "_learn"))
    assert len(full_blob) - len(blob) > 0.9 * data_bytes
    full = pickle.loads(full_blob)
    pd.testing.assert_frame_equal(full.prepare("test"), before)


def test_to_pickle_and_load(provider, tmp_path):
    ds = DatasetH(handler_config(), SEGMENTS)
    ds.to_pickle(tmp_path / "ds.pkl")
    loaded = DatasetH.load(tmp_path / "ds.pkl")
    loaded.setup_data(handler_kwargs={"init_type": DataHandlerLP.IT_LS})
    pd.testing.assert_frame_equal(loaded.prepare("valid"), ds.prepare("valid"))
    with pytest.raises(TypeError, match="not a TSDatasetH"):
        TSDatasetH.load(tmp_path / "ds.pkl")


def test_config_segments(provider):
    ds = DatasetH(handler_config(), SEGMENTS)
    ds.config(segments={"all": ("2020-01-08", "2020-02-25")})
    assert list(ds.segments) == ["all"]


# ---- TSDatasetH on a tiny panel, every window checked by hand -----------------------------------------
D = pd.bdate_range("2021-03-01", periods=8)  # D[0] .. D[7]


def tiny_frame() -> pd.DataFrame:
    """X has every day; Y has no row on D[0], D[3], D[4]. Value = 10 * day + (0 for X, 1 for Y)."""
    rows = [(D[i], "X", 10 * i, -i) for i in range(8)]
    rows += [(D[i], "Y", 10 * i + 1, -i - 0.5) for i in range(8) if i not in (0, 3, 4)]
    df = pd.DataFrame(rows, columns=["datetime", "instrument", "v", "lab"]).set_index(["datetime", "instrument"])
    df.columns = pd.MultiIndex.from_tuples([("feature", "v"), ("label", "lab")])
    return df.sort_index().astype(np.float32)


def tiny_dataset(step_len=4, **seg):
    segments = seg or {"early": (D[1], D[2]), "late": (D[5], D[7])}
    h = DataHandlerLP(data_loader=StaticDataLoader(tiny_frame()))
    return TSDatasetH(handler=h, segments=segments, step_len=step_len)


N = np.nan


def test_ts_windows_none_ffill_bfill():
    ds = tiny_dataset()
    s = ds.prepare("late", col_set="feature")
    assert isinstance(s, TSDataSampler) and len(s) == 6 and not s.empty
    idx = s.get_index()
    assert list(idx) == [(D[5], "X"), (D[5], "Y"), (D[6], "X"), (D[6], "Y"), (D[7], "X"), (D[7], "Y")]
    assert s[1].dtype == np.float32 and s[1].shape == (4, 1)
    # fillna_type "none": missing rows are NaN
    np.testing.assert_array_equal(s[0][:, 0], [20, 30, 40, 50])  # X at D5: D2..D5
    np.testing.assert_array_equal(s[1][:, 0], [21, N, N, 51])    # Y at D5: no rows on D3, D4
    np.testing.assert_array_equal(s[3][:, 0], [N, N, 51, 61])    # Y at D6: D3..D6
    np.testing.assert_array_equal(s[5][:, 0], [N, 51, 61, 71])   # Y at D7: D4..D7
    # "ffill": a leading gap stays NaN (nothing inside the window to fill from)
    s.config(fillna_type="ffill")
    np.testing.assert_array_equal(s[1][:, 0], [21, 21, 21, 51])
    np.testing.assert_array_equal(s[3][:, 0], [N, N, 51, 61])
    # "ffill+bfill": the leading gap takes the first value of the window
    s.config(fillna_type="ffill+bfill")
    np.testing.assert_array_equal(s[1][:, 0], [21, 21, 21, 51])
    np.testing.assert_array_equal(s[3][:, 0], [51, 51, 51, 61])
    np.testing.assert_array_equal(s[5][:, 0], [51, 51, 61, 71])
    np.testing.assert_array_equal(s[4][:, 0], [40, 50, 60, 70])
    with pytest.raises(ValueError, match="fillna_type"):
        s.config(fillna_type="bfill")


def test_ts_start_padding():
    # the "early" segment starts at D1: the calendar has one earlier day (D0), the rest is padding
    s = tiny_dataset().prepare("early", col_set="feature")
    assert list(s.get_index()) == [(D[1], "X"), (D[1], "Y"), (D[2], "X"), (D[2], "Y")]
    np.testing.assert_array_equal(s[0][:, 0], [N, N, 0, 10])
    np.testing.assert_array_equal(s[1][:, 0], [N, N, N, 11])
    np.testing.assert_array_equal(s[3][:, 0], [N, N, 11, 21])
    s.config(fillna_type="ffill")
    np.testing.assert_array_equal(s[0][:, 0], [N, N, 0, 10])
    s.config(fillna_type="ffill+bfill")
    np.testing.assert_array_equal(s[0][:, 0], [0, 0, 0, 10])
    np.testing.assert_array_equal(s[1][:, 0], [11, 11, 11, 11])
    np.testing.assert_array_equal(s[3][:, 0], [11, 11, 11, 21])


def test_ts_label_last_batches_and_lookups():
    ds = tiny_dataset()
    s = ds.prepare("late", fillna_type="ffill+bfill")  # all columns: the label is the last one
    assert s[0].shape == (4, 2)
    np.testing.assert_array_equal(s[0][:, -1], [-2, -3, -4, -5])
    batch = s[np.array([0, 1, 3])]
    assert batch.shape == (3, 4, 2) and batch.dtype == np.float32
    for k, i in enumerate([0, 1, 3]):
        np.testing.assert_array_equal(batch[k], s[i])
    np.testing.assert_array_equal(s[[5]][0], s[5])
    np.testing.assert_array_equal(s[1:3], np.stack([s[1], s[2]]))
    np.testing.assert_array_equal(s[(D[6], "Y")], s[3])
    np.testing.assert_array_equal(s[-1], s[5])
    with pytest.raises(IndexError, match="out of range"):
        s[6]
    with pytest.raises(KeyError, match="ZZZ"):
        s[(D[6], "ZZZ")]
    # one copy of the rows (+ the NaN row), not one per window
    assert s.data_arr.shape == (len(ds.handler.fetch(slice(D[1], D[7]))) + 1, 2)
    # several segments at once, and an empty one
    early, late = ds.prepare(["early", "late"], col_set="feature")
    assert (len(early), len(late)) == (4, 6)
    ds.config(segments={"none": (D[7] + pd.Timedelta(days=7), D[7] + pd.Timedelta(days=9))})
    assert ds.prepare("none").empty


def test_ts_step_len_default_and_pickle():
    h = DataHandlerLP(data_loader=StaticDataLoader(tiny_frame()))
    ds = TSDatasetH(handler=h, segments={"all": (D[0], D[7])})
    assert ds.step_len == 30 and ds.prepare("all")[0].shape == (30, 2)
    ds.config(step_len=3)
    assert ds.prepare("all")[0].shape == (3, 2)
    restored = pickle.loads(pickle.dumps(ds))
    assert restored.step_len == 3
    restored.setup_data()
    np.testing.assert_array_equal(restored.prepare("all")[np.arange(5)], ds.prepare("all")[np.arange(5)])


def test_ts_flt_col_keeps_flagged_rows_only():
    df = tiny_frame()
    keep = (df.index.get_level_values("instrument") == "X") & (df.index.get_level_values("datetime") >= D[6])
    df[("filter", "keep")] = keep.astype(np.float32)
    ds = TSDatasetH(handler=DataHandlerLP(data_loader=StaticDataLoader(df)), segments={"late": (D[5], D[7])},
                    step_len=3)
    s = ds.prepare("late", col_set=["feature", "label"], flt_col="filter")
    assert list(s.get_index()) == [(D[6], "X"), (D[7], "X")]
    np.testing.assert_array_equal(s[0][:, 0], [40, 50, 60])  # windows still see the unflagged rows
    with pytest.raises(ValueError, match="exactly one column"):
        ds.prepare("late", flt_col=["feature", "label"])
