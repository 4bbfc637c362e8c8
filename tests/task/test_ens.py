"""Ensembles, groups and collectors on hand-made frames."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qexp.ens import AverageEnsemble, Group, RollingEnsemble, RollingGroup, SingleKeyEnsemble
from qexp.task import Collector, MergeCollector

D = pd.Timestamp


def frame(rows, col="score"):
    idx = pd.MultiIndex.from_tuples([(D(d), i) for d, i, _ in rows], names=["datetime", "instrument"])
    return pd.DataFrame({col: [v for _, _, v in rows]}, index=idx)


def test_rolling_ensemble_keeps_the_later_window_on_overlap():
    w1 = frame([("2020-01-02", "A", 1.0), ("2020-01-02", "B", 2.0), ("2020-01-03", "A", 3.0), ("2020-01-03", "B", 4.0)])
    w2 = frame([("2020-01-03", "A", 30.0), ("2020-01-03", "B", 40.0), ("2020-01-06", "A", 5.0)])
    w0 = frame([("2020-01-01", "A", 0.5)])
    # key order does not matter: windows are ordered by their first date
    out = RollingEnsemble()({"late": w2, "early": w1, "first": w0})
    expected = frame([("2020-01-01", "A", 0.5), ("2020-01-02", "A", 1.0), ("2020-01-02", "B", 2.0),
                      ("2020-01-03", "A", 30.0), ("2020-01-03", "B", 40.0), ("2020-01-06", "A", 5.0)])
    pd.testing.assert_frame_equal(out, expected)


def test_average_ensemble_zscores_per_day_then_averages():
    a = frame([("2020-01-02", "A", 1.0), ("2020-01-02", "B", 3.0), ("2020-01-03", "A", 2.0), ("2020-01-03", "B", 0.0)])
    b = frame([("2020-01-02", "A", 10.0), ("2020-01-02", "B", 30.0), ("2020-01-03", "A", 5.0), ("2020-01-03", "B", 7.0)])
    out = AverageEnsemble()({"m1": a, "nested": {"m2": b}})
    # each day: two stocks, z-scores are -/+ 1/sqrt(2) (sample std); A low on day 1 in both; day 2 a: A high, b: A low
    z = 1 / np.sqrt(2)
    expected = pd.Series([-z, z, 0.0, 0.0], index=a.index)
    assert isinstance(out, pd.Series)
    pd.testing.assert_series_equal(out, expected, check_names=False)


def test_single_key_ensemble():
    assert SingleKeyEnsemble()({"a": {"b": 1}}) == 1
    assert SingleKeyEnsemble()({"a": {"b": 1}, "c": 2}) == {"a": 1, "c": 2}
    assert SingleKeyEnsemble()({"a": {"b": 1}}, recursion=False) == {"b": 1}
    assert SingleKeyEnsemble()(5) == 5


def test_rolling_group():
    w1 = frame([("2020-01-02", "A", 1.0)])
    w2 = frame([("2020-01-03", "A", 2.0)])
    out = RollingGroup()({("LGB", "r1"): w1, ("LGB", "r2"): w2, ("XGB", "r1"): w1})
    assert set(out) == {("LGB",), ("XGB",)} and len(out[("LGB",)]) == 2
    with pytest.raises(TypeError, match="tuple"):
        RollingGroup()({"plain": w1})
    grouped = Group(group_func=lambda d: {"all": d}, ens=lambda d: sorted(d))({"b": 1, "a": 2})
    assert grouped == {"all": ["a", "b"]}
    assert Group(group_func=lambda d: {"x": d, "y": d}, ens=len)({"k": 1}, n_jobs=2) == {"x": 1, "y": 1}
    with pytest.raises(NotImplementedError):
        Group()({"a": 1})


def test_collectors():
    class Fixed(Collector):
        def __init__(self, data, process_list=None):
            super().__init__(process_list)
            self.data = data

        def collect(self):
            return self.data

    c = Fixed({"pred": {"r1": 1, "r2": 2}}, process_list=[lambda d: sum(d.values())])
    assert c() == {"pred": 3}
    merged = MergeCollector({"A": c, "B": Fixed({"x": 5})})()
    assert merged == {("A", "pred"): 3, ("B", "x"): 5}
    assert MergeCollector({"A": c}, merge_func=lambda ck, k: f"{ck}_{k}")() == {"A_pred": 3}
    with pytest.raises(NotImplementedError):
        Collector.process_collect({"a": 1}, [42])


@pytest.mark.parametrize("uri_kind", ["file", "sqlite"])
def test_recorder_collector_keeps_the_latest_of_repeated_keys(tmp_path, caplog, uri_kind):
    import logging

    import qexp
    from qexp import R
    from qexp.task import RecorderCollector
    uri = str(tmp_path / "runs") if uri_kind == "file" else f"sqlite:///{tmp_path / 'mlflow.db'}"
    if uri_kind == "sqlite":
        pytest.importorskip("mlflow")
    qexp.init(uri=uri)
    for name in ("oldest", "middle", "newest"):
        with R.start(experiment_name="dup", recorder_name=name):
            R.save_objects(**{"pred.pkl": pd.Series([1.0], name=name)})
    with caplog.at_level(logging.WARNING, logger="qexp.tasks"):
        out = RecorderCollector("dup", rec_key_func=lambda r: "same key")()
    assert out["pred"]["same key"].name == "newest"
    assert "the latest run's pred" in caplog.text
