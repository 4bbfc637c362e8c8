"""SignalRecord on a TSDatasetH: label.pkl is the test segment's raw label rows (a DataFrame, as Qlib's
class_casting to DatasetH gives), not the TSDataSampler of windows, so SigAnaRecord runs after it."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import qexp
from qexp import QexpError, R
from qexp_data.dataset import TSDatasetH
from qexp_data.handler import DataHandlerLP
from qexp_data.loader import StaticDataLoader
from qexp_data.sampler import TSDataSampler
from qexp_records import SigAnaRecord, SignalRecord

SEGMENTS = {"train": ("2020-01-01", "2020-02-28"), "valid": ("2020-03-02", "2020-03-31"),
            "test": ("2020-04-01", "2020-05-29")}


def _frames(n_inst: int = 10, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", "2020-05-29")
    idx = pd.MultiIndex.from_product([dates, [f"S{i}" for i in range(n_inst)]], names=["datetime", "instrument"])
    feat = pd.DataFrame(rng.normal(size=(len(idx), 3)), index=idx, columns=["F0", "F1", "F2"])
    label = pd.DataFrame({"LABEL0": feat["F0"] * 0.5 + rng.normal(0, 0.5, len(idx))}, index=idx)
    label.iloc[::7] = np.nan  # DropnaLabel removes these from the learn data, not from the raw label
    return feat, label


def _dataset() -> TSDatasetH:
    feat, label = _frames()
    handler = DataHandlerLP(instruments="all", start_time="2020-01-01", end_time="2020-05-29",
                            data_loader=StaticDataLoader({"feature": feat, "label": label}),
                            learn_processors=[{"class": "DropnaLabel"},
                                              {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}])
    return TSDatasetH(step_len=5, handler=handler, segments=dict(SEGMENTS))


class _LastF0:
    """Predicts each window's last F0: informative about the planted label."""

    def predict(self, dataset, segment="test"):
        sampler = dataset.prepare(segment, col_set=["feature", "label"], data_key="infer")
        assert isinstance(sampler, TSDataSampler)
        windows = np.asarray(sampler[np.arange(len(sampler))])
        return pd.Series(windows[:, -1, 0], index=sampler.get_index())


def test_ts_dataset_label_is_the_segment_s_raw_label_frame(tmp_path) -> None:
    qexp.init(uri=str(tmp_path / "runs"))
    ds = _dataset()
    assert isinstance(ds.prepare("test", col_set="label", data_key="raw"), TSDataSampler)
    with R.start(experiment_name="ts"):
        rec = R.get_recorder()
        out = SignalRecord(_LastF0(), ds, rec).generate()
        SigAnaRecord(rec).generate()
    label = rec.load_object("label.pkl")
    assert isinstance(label, pd.DataFrame) and out["label.pkl"] is not None
    expected = ds.handler.fetch(slice(*SEGMENTS["test"]), col_set="label", data_key="raw")
    pd.testing.assert_frame_equal(label, expected)
    dates = label.index.get_level_values("datetime")
    assert dates.min() == pd.Timestamp("2020-04-01")  # the segment's rows, not the windows' padding
    assert label["LABEL0"].isna().any()  # raw: DropnaLabel's rows are still there
    pred = rec.load_object("pred.pkl")
    assert pred.index.equals(label.index)
    metrics = rec.list_metrics()
    assert math.isfinite(metrics["IC"]) and metrics["IC"] > 0.2


def test_samples_without_a_handler_are_a_clear_error(tmp_path) -> None:
    class _Samples:
        segments = SEGMENTS

        def prepare(self, segments, col_set="feature", data_key="infer"):
            return object()

    qexp.init(uri=str(tmp_path / "runs"))
    pred = pd.Series([0.1], index=pd.MultiIndex.from_tuples([(pd.Timestamp("2020-04-01"), "S0")],
                                                            names=["datetime", "instrument"]))

    class _Model:
        def predict(self, dataset, segment="test"):
            return pred

    with R.start(experiment_name="ts"):
        with pytest.raises(QexpError, match="returned a object, not a DataFrame.*no handler"):
            SignalRecord(_Model(), _Samples(), R.get_recorder()).generate()
