"""Fixtures: a small synthetic market (60 stocks, 2016-2018) and the datasets Qlib's benchmarks use on it.

The market and the datasets are built once per session; each dataset holds its data, so tests do not need
the data provider after building them.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

SEGMENTS = {"train": ("2016-01-01", "2017-06-30"), "valid": ("2017-07-01", "2017-12-31"),
            "test": ("2018-01-01", "2018-12-31")}
SPAN = {"instruments": "all", "start_time": "2016-01-01", "end_time": "2018-12-31",
        "fit_start_time": "2016-01-01", "fit_end_time": "2017-06-30"}
# Qlib's RNN/Linear configs: robust z-score and fill the features, rank-normalise the label for learning
NORM_FEATURES = [{"class": "RobustZScoreNorm", "kwargs": {"fields_group": "feature", "clip_outlier": True}},
                 {"class": "Fillna", "kwargs": {"fields_group": "feature"}}]
RANK_LABEL = [{"class": "DropnaLabel"}, {"class": "CSRankNorm", "kwargs": {"fields_group": "label"}}]
ZSCORE_LABEL = [{"class": "DropnaLabel"}, {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}]
# the 20 Alpha158 features of Qlib's ALSTM/GRU Alpha158 configs
SELECTED_20 = ["KLEN", "KLOW", "ROC60", "STD5", "RSQR5", "RSQR10", "RSQR20", "RSQR60", "RESI5", "RESI10",
               "CORR5", "CORR10", "CORR20", "CORR60", "CORD5", "CORD10", "CORD60", "VSTD5", "WVMA5", "WVMA60"]
# Qlib's benchmark LightGBM parameters suit 300 stocks x 7 years; on this small market their L1/L2 penalties
# stop tree growth after ~9 trees. Small trees and a low learning rate keep learning for ~75 rounds and then
# overfit, which exercises early stopping. One thread: the test machine is shared.
LGB_PARAMS = {"learning_rate": 0.02, "num_leaves": 7, "min_data_in_leaf": 500, "colsample_bytree": 0.5,
              "num_threads": 1, "seed": 0}


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tests run torch on one thread: the machine is shared, and OpenMP threads that wait on each other on an
    oversubscribed CPU slow tiny models down by an order of magnitude."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def _provider(folder: Path) -> Iterator[None]:
    """The synthetic market as the data provider, through ``qexp.init(provider_uri=...)``."""
    import qexp
    from qexp import data_api
    old = (data_api._global["provider"], data_api._global["region"])
    qexp.init(uri=str(folder.parent / "runs"), provider_uri=str(folder))
    try:
        yield
    finally:
        data_api.set_provider(*old)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "market"
    proc = subprocess.run([sys.executable, "-m", "qexp", "data", "synth", "--out", str(folder), "--instruments",
                           "60", "--start", "2016-01-01", "--end", "2018-12-31", "--seed", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def _dataset(synth_dir: Path, handler: str, ts: bool = False, **handler_kwargs: Any) -> Any:
    from qexp_data.alpha import Alpha158, Alpha360
    from qexp_data.dataset import DatasetH, TSDatasetH
    with _provider(synth_dir):
        h = {"Alpha158": Alpha158, "Alpha360": Alpha360}[handler](**SPAN, **handler_kwargs)
        if ts:
            return TSDatasetH(step_len=20, handler=h, segments=dict(SEGMENTS))
        return DatasetH(h, dict(SEGMENTS))


@pytest.fixture(scope="session")
def ds158(synth_dir: Path) -> Any:
    """Alpha158 as in Qlib's LightGBM config: raw features, z-scored label."""
    return _dataset(synth_dir, "Alpha158", learn_processors=ZSCORE_LABEL)


@pytest.fixture(scope="session")
def ds158_norm(synth_dir: Path) -> Any:
    """Alpha158 as in Qlib's Linear config: robust z-scored and filled features, ranked label."""
    return _dataset(synth_dir, "Alpha158", infer_processors=NORM_FEATURES, learn_processors=RANK_LABEL)


@pytest.fixture(scope="session")
def ds360(synth_dir: Path) -> Any:
    """Alpha360 as in Qlib's ALSTM config (DatasetH, d_feat 6)."""
    return _dataset(synth_dir, "Alpha360", infer_processors=NORM_FEATURES, learn_processors=RANK_LABEL)


@pytest.fixture(scope="session")
def ts158(synth_dir: Path) -> Any:
    """Alpha158's selected 20 features as in Qlib's ALSTM Alpha158 config (TSDatasetH, step_len 20)."""
    procs = [{"class": "FilterCol", "kwargs": {"fields_group": "feature", "col_list": SELECTED_20}}] + NORM_FEATURES
    return _dataset(synth_dir, "Alpha158", ts=True, infer_processors=procs, learn_processors=RANK_LABEL)


@pytest.fixture(scope="module")
def tiny_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmark-config tests' market (test_benchmark_yamls_*): 20 stocks, 2019-01 to 2020-03."""
    from qexp_data.synth import SynthParams, write_synth
    return write_synth(tmp_path_factory.mktemp("tiny") / "synth",
                       SynthParams(instruments=20, start="2019-01-01", end="2020-03-31", seed=3))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module, so the built-in synthetic market is generated once for the dry runs."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A fresh file store as qexp's tracking URI."""
    import qexp
    uri = tmp_path / "runs"
    qexp.init(uri=str(uri))
    return uri


def test_labels(dataset: Any, segment: str = "test") -> pd.Series:
    """The raw (infer) label of every row of ``segment`` (for a TSDatasetH too: read from its handler)."""
    start, end = dataset.segments[segment]
    return dataset.handler.fetch(slice(start, end), col_set="label", data_key="infer").iloc[:, 0]


test_labels.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_ic(pred: pd.Series, dataset: Any, segment: str = "test") -> float:
    """Mean over days of the Pearson correlation between predictions and the raw (infer) label."""
    label = test_labels(dataset, segment)
    df = pd.DataFrame({"pred": pred, "label": label.reindex(pred.index)}).dropna()
    daily = df.groupby(level="datetime").apply(lambda g: g["pred"].corr(g["label"]))
    return float(daily.mean())


test_ic.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def predict_in_subprocess(uri: Path, recorder_id: str, dataset: Any, tmp_path: Path,
                          segment: str = "test") -> pd.Series:
    """Load ``params.pkl`` of run ``recorder_id`` in a new Python process and predict ``segment`` there."""
    return predict_saved_in_subprocess(uri, recorder_id, dataset, tmp_path, ["params"], segment)["params"]


def predict_saved_in_subprocess(uri: Path, recorder_id: str, dataset: Any, tmp_path: Path, names: list[str],
                                segment: str = "test") -> dict[str, pd.Series]:
    """Load the models ``{name}.pkl`` of run ``recorder_id`` in one new Python process and predict ``segment``
    with each there: ``{name: scores}``.

    The dataset travels as a pickle with its data (``dump_all`` where it is a Serializable), so the child
    needs no data provider; the repository is on the child's path, so a test's own dataset class loads there.
    """
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    ds_file = work / "dataset.pkl"
    if hasattr(dataset, "config"):
        dataset.config(dump_all=True, recursive=True)
    try:
        ds_file.write_bytes(pickle.dumps(dataset))
    finally:
        if hasattr(dataset, "config"):
            dataset.config(dump_all=False, recursive=True)
    out = work / "preds.pkl"
    script = (
        "import pickle, sys\n"
        "import qexp\n"
        "from qexp import R\n"
        "qexp.init(uri=sys.argv[1])\n"
        "rec = R.get_recorder(recorder_id=sys.argv[2])\n"
        "dataset = pickle.loads(open(sys.argv[3], 'rb').read())\n"
        "preds = {n: rec.load_object(n + '.pkl').predict(dataset, sys.argv[4]) for n in sys.argv[6].split(',')}\n"
        "pickle.dump(preds, open(sys.argv[5], 'wb'))\n"
    )
    # one thread as in this process: a matrix product's rounding depends on how many threads share it
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script, str(uri), recorder_id, str(ds_file), segment, str(out),
                           ",".join(names)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pickle.loads(out.read_bytes())


def fake_valid_losses(monkeypatch: pytest.MonkeyPatch, dataset: Any, losses: list[float]) -> list[dict]:
    """Make ``TorchModel._evaluate`` answer ``losses`` in turn when it scores the valid segment (as many rows
    as ``dataset``'s valid learn data) and score everything else for real. Returns the list that receives a
    copy of the network's weights at each faked valid scoring, for checks of the restored best epoch."""
    from qexp_models.torch_loop import TorchModel
    n_valid = len(dataset.prepare("valid", col_set=["feature", "label"], data_key="learn"))
    valid_losses = iter(losses)
    real = TorchModel._evaluate
    snapshots: list[dict] = []

    def fake(self: Any, torch_: Any, net: Any, t: Any, replicas: Any) -> Any:
        if len(t.y) == n_valid:
            snapshots.append({k: v.clone() for k, v in net.state_dict().items()})
            loss = next(valid_losses)
            return loss, -loss
        return real(self, torch_, net, t, replicas)

    monkeypatch.setattr(TorchModel, "_evaluate", fake)
    return snapshots


def fit_in_one_run(specs: dict[str, tuple[Any, dict, str]], request: pytest.FixtureRequest, uri: Path,
                   experiment: str, **common: Any) -> tuple[dict[str, tuple[Any, Any]], str]:
    """Fit each model of ``specs`` (``{name: (class, kwargs, dataset fixture name)}``, with ``common`` kwargs
    added) inside one run of a new store at ``uri`` and save them there as ``{name}.pkl``:
    ``({name: (model, dataset)}, run id)``."""
    import qexp
    from qexp import R
    datasets = {name: request.getfixturevalue(ds_name) for name, (_, _, ds_name) in specs.items()}
    qexp.init(uri=str(uri))
    models = {}
    with R.start(experiment_name=experiment):
        for name, (cls, kwargs, _) in specs.items():
            models[name] = (cls(**kwargs, **common).fit(datasets[name]), datasets[name])
        R.save_objects(**{f"{name}.pkl": m for name, (m, _) in models.items()})
        rid = R.get_recorder().id
    return models, rid


def assert_same_predictions_in_subprocess(models: dict[str, tuple[Any, Any]], uri: Path, recorder_id: str,
                                          tmp_path: Path) -> None:
    """The models saved by :func:`fit_in_one_run`, loaded in a new process (one per dataset), predict exactly
    what they predict here."""
    groups: dict[int, list[str]] = {}
    for name, (_, ds) in models.items():
        groups.setdefault(id(ds), []).append(name)
    for names in groups.values():
        ds = models[names[0]][1]
        preds = predict_saved_in_subprocess(uri, recorder_id, ds, tmp_path, names)
        for name in names:
            pd.testing.assert_series_equal(preds[name], models[name][0].predict(ds), obj=name)


def assert_test_index(pred: pd.Series, dataset: Any) -> None:
    """Predictions cover exactly the test rows of the infer data, one finite score each."""
    expected = test_labels(dataset).index
    assert isinstance(pred, pd.Series)
    assert list(pred.index.names) == ["datetime", "instrument"]
    assert pred.index.equals(expected)
    assert np.isfinite(pred.to_numpy()).all()


class FrameDataset:
    """A minimal DatasetH stand-in over one frame with ``feature``/``label`` column groups, for inputs the
    real handlers cannot produce (all-NaN labels, NaN features, missing segments)."""

    def __init__(self, frame: pd.DataFrame, segments: dict[str, tuple[str, str]]):
        self.frame = frame
        self.segments = segments

    def prepare(self, segments: str, col_set: Any = "__all", data_key: str = "infer") -> pd.DataFrame:
        if segments not in self.segments:
            raise KeyError(segments)
        start, end = self.segments[segments]
        dates = self.frame.index.get_level_values("datetime")
        df = self.frame[(dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))]
        if isinstance(col_set, str) and col_set in ("feature", "label"):
            return df[col_set]
        return df


def random_frame(n_days: int = 60, n_inst: int = 8, n_feat: int = 6, seed: int = 0) -> pd.DataFrame:
    """A panel whose label is a noisy linear function of the features."""
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=n_days), [f"S{i}" for i in range(n_inst)]],
                                       names=["datetime", "instrument"])
    x = rng.standard_normal((len(index), n_feat)).astype(np.float32)
    y = x @ rng.standard_normal(n_feat) * 0.1 + rng.standard_normal(len(index)) * 0.1
    cols = pd.MultiIndex.from_tuples([("feature", f"F{i}") for i in range(n_feat)] + [("label", "LABEL0")])
    return pd.DataFrame(np.c_[x, y].astype(np.float32), index=index, columns=cols)


FRAME_SEGMENTS = {"train": ("2020-01-01", "2020-02-14"), "valid": ("2020-02-15", "2020-03-05"),
                  "test": ("2020-03-06", "2020-12-31")}
