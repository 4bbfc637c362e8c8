"""MTSDatasetH (Qlib's memory-augmented time-series dataset of TRA): batches, windows, days, labels and the
memory checked by hand on a tiny frame; Qlib's name; bad arguments."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from qexp.exceptions import ConfigError
from qexp_data.handler import DataHandlerLP
from qexp_data.loader import StaticDataLoader
from qexp_data.mts_dataset import MTSDatasetH, MTSSegment

torch = pytest.importorskip("torch")

D = pd.bdate_range("2021-03-01", periods=8)  # D[0] .. D[7]
SEGMENTS = {"train": (D[0], D[4]), "test": (D[5], D[7])}


def frame(n_feat: int = 2) -> pd.DataFrame:
    """Stocks A (index 0) and B (1) on every day, C (2) from D[3]. Feature k of stock i on day d is
    (-1)**k * (100 i + d) (n_feat > 2: 1000 k + 100 i + d); label = d + i / 10. A's feature 0 on D[1] is NaN."""
    rows = []
    for i, inst in enumerate("ABC"):
        for d in range(8):
            if inst == "C" and d < 3:
                continue
            base = 100 * i + d
            feats = [base, -base] if n_feat == 2 else [1000 * k + base for k in range(n_feat)]
            rows.append((D[d], inst, *feats, d + i / 10))
    names = [f"f{k}" for k in range(n_feat)]
    df = pd.DataFrame(rows, columns=["datetime", "instrument", *names, "y"]).set_index(["datetime", "instrument"])
    df.columns = pd.MultiIndex.from_tuples([("feature", n) for n in names] + [("label", "LABEL0")])
    df = df.sort_index().astype(np.float32)
    df.loc[(D[1], "A"), ("feature", "f0")] = np.nan
    return df


def dataset(**kwargs) -> MTSDatasetH:
    args = {"seq_len": 3, "horizon": 1, "num_states": 2, "batch_size": -1, "shuffle": False}
    args.update(kwargs)
    n_feat = args.pop("n_feat", 2)
    return MTSDatasetH(DataHandlerLP(data_loader=StaticDataLoader(frame(n_feat))), dict(SEGMENTS), **args)


def rows_of(seg: MTSSegment, batch: dict) -> list[tuple[str, pd.Timestamp]]:
    return list(seg.restore_index(batch["index"]))


def test_eval_batches_are_whole_days_of_windows_checked_by_hand():
    ds = dataset()
    train, test = ds.prepare(["train", "test"])
    assert (train.n_days, train.n_rows, test.n_days, test.n_rows) == (5, 12, 3, 9)
    train.eval()
    batches = list(train)
    assert len(batches) == len(train) == 5
    assert [b["daily_count"].tolist() for b in batches] == [[2], [2], [2], [3], [3]]
    assert [list(train.restore_daily_index(b["daily_index"])) for b in batches] == [[d] for d in D[:5]]
    day1, day4 = batches[1], batches[4]
    assert rows_of(train, day1) == [("A", D[1]), ("B", D[1])]
    # windows of the last 3 rows of each stock, zeros before its first row; A's NaN feature read as 0
    np.testing.assert_array_equal(day1["data"][:, :, 0].numpy(), [[0, 0, 0], [0, 100, 101]])
    np.testing.assert_array_equal(day1["data"][:, :, 1].numpy(), [[0, 0, -1], [0, -100, -101]])
    assert rows_of(train, day4) == [("A", D[4]), ("B", D[4]), ("C", D[4])]
    np.testing.assert_array_equal(day4["data"][:, :, 0].numpy(), [[2, 3, 4], [102, 103, 104], [0, 203, 204]])
    np.testing.assert_allclose(day4["label"].numpy(), [4.0, 4.1, 4.2])
    assert day4["data"].dtype == torch.float32 and day4["state"].shape == (3, 2, 2)  # seq_len - horizon steps
    # the test segment's first window reaches back into train days (the stock's earlier rows)
    test.eval()
    first = next(iter(test))
    np.testing.assert_array_equal(first["data"][:, :, 0].numpy(), [[3, 4, 5], [103, 104, 105], [203, 204, 205]])


def test_train_batches_random_samples_or_days():
    ds = dataset(batch_size=4, num_states=0)
    train = ds.prepare("train")
    assert len(train) == 3  # 12 rows, the last batch partial
    batches = list(train)
    assert [len(b["index"]) for b in batches] == [4, 4, 4]
    assert sorted(np.concatenate([b["index"] for b in batches]).tolist()) == sorted(train.rows.tolist())
    assert batches[0]["daily_count"].size == 0 and batches[0]["daily_index"].size == 0
    ds = dataset(batch_size=5, drop_last=True, shuffle=True, num_states=0)
    train = ds.prepare("train")
    assert len(train) == 2 and [len(b["label"]) for b in train] == [5, 5]
    train.rng = np.random.default_rng(0)
    first = next(iter(train))["index"].tolist()
    train.rng = np.random.default_rng(0)
    assert next(iter(train))["index"].tolist() == first  # the segment's generator drives the shuffle
    # eval() on a training segment: whole days in date order; train() goes back
    train.eval()
    assert len(train) == 5 and next(iter(train))["daily_count"].tolist() == [2]
    train.train()
    assert len(train) == 2
    # 2 days per batch, 1 stock drawn per day
    ds = dataset(batch_size=-2, n_samples=1, num_states=0)
    train = ds.prepare("train")
    assert len(train) == 3
    batches = list(train)
    assert [b["daily_count"].tolist() for b in batches] == [[1, 1], [1, 1], [1]]
    for b in batches:
        dates = train.restore_index(b["index"]).get_level_values("datetime")
        assert list(dates) == list(train.restore_daily_index(b["daily_index"]))


def test_sample_memory_round_trip_and_horizon():
    ds = dataset()
    train, test = ds.prepare(["train", "test"])
    train.eval()
    day4 = list(train)[4]
    rows = day4["index"]
    # write each row's own number (twice) to the memory of every row of the dataset
    all_rows = np.arange(21)
    train.assign_data(all_rows, torch.tensor(np.c_[all_rows, -all_rows], dtype=torch.float32))
    day4 = list(train)[4]
    # state = memory of the window's rows without the last `horizon` one (its label is not known yet)
    state = day4["state"].numpy()
    np.testing.assert_array_equal(state[:, :, 0], [rows[0] - np.array([2, 1]), rows[1] - np.array([2, 1]),
                                                   [0, rows[2] - 1]])  # C: zero before its first row
    np.testing.assert_array_equal(state[:, :, 1], -state[:, :, 0])
    # segments share one memory
    test.eval()
    np.testing.assert_array_equal(next(iter(test))["state"].numpy()[0, :, 0], [3, 4])
    test.clear_memory()
    assert not next(iter(train))["state"].numpy().any()
    assert ds.prepare("train")._store is train._store


def test_daily_memory_reads_the_days_before_the_horizon():
    ds = dataset(memory_mode="daily", horizon=1, seq_len=3)
    train, test = ds.prepare(["train", "test"])
    assert train._store.memory.shape == (8, 2)
    train.assign_data(np.arange(8), np.c_[np.arange(8) + 1.0, np.zeros(8)])
    test.eval()
    batches = list(test)
    # day d reads days d-4 .. d-2 (seq_len days ending horizon days before it)
    assert [b["state"].shape for b in batches] == [(1, 3, 2)] * 3
    np.testing.assert_array_equal(batches[0]["state"][0, :, 0].numpy(), [2, 3, 4])   # D5: D1..D3 (+1)
    train.eval()
    np.testing.assert_array_equal(list(train)[1]["state"][0, :, 0].numpy(), [0, 0, 0])  # D1: before D0


def test_input_size_reads_each_row_as_blocks():
    ds = dataset(n_feat=6, input_size=2, num_states=0)
    test = ds.prepare("test")
    test.eval()
    b = next(iter(test))
    assert b["data"].shape == (3, 3, 2) and (test.n_steps, test.n_features) == (3, 2)
    # A on D5: features 5, 1005, ..., 5005 read as 2 blocks of 3 steps, steps first (Qlib's reshape(2, -1).T)
    np.testing.assert_array_equal(b["data"][0].numpy(), [[5, 3005], [1005, 4005], [2005, 5005]])
    with pytest.raises(ConfigError, match="input_size=4 does not divide the 6 feature columns"):
        dataset(n_feat=6, input_size=4, num_states=0)


def test_with_history_covers_the_windows_memory():
    ds = dataset(seq_len=3, horizon=1)
    test = ds.prepare("test")
    ext = test.with_history()
    assert (ext.first, ext.last) == (3, 7)  # the stocks' two earlier rows: D3, D4
    daily = dataset(memory_mode="daily", seq_len=3, horizon=1).prepare("test").with_history()
    assert daily.first == 1  # D5 reads days D1..D3


def test_prepare_with_col_set_answers_as_datasett_h_and_pickling():
    ds = dataset()
    label = ds.prepare("test", col_set="label", data_key="raw")
    assert isinstance(label, pd.DataFrame) and len(label) == 9 and list(label.columns) == ["LABEL0"]
    seg = ds.prepare(slice(D[2], D[3]))
    assert isinstance(seg, MTSSegment) and seg.n_days == 2
    with pytest.raises(KeyError, match="unknown segment 'valid'"):
        ds.prepare("valid")
    # pickled without data it asks for setup_data; with dump_all the memory travels
    ds.assign_data([0], [[5.0, 6.0]])
    bare = pickle.loads(pickle.dumps(ds))
    with pytest.raises(AttributeError, match="setup_data"):
        bare.prepare("test")
    bare.setup_data()
    assert bare.prepare("test").n_rows == 9 and not bare._store.memory.any()
    ds.config(dump_all=True, recursive=True)
    full = pickle.loads(pickle.dumps(ds))
    assert full._store.memory[0].tolist() == [5.0, 6.0]


def test_qlib_module_path_resolves():
    from qexp.ext import init_instance_by_config
    handler = DataHandlerLP(data_loader=StaticDataLoader(frame()))
    ds = init_instance_by_config({"class": "MTSDatasetH", "module_path": "qlib.contrib.data.dataset",
                                  "kwargs": {"handler": handler, "segments": dict(SEGMENTS), "seq_len": 3,
                                             "horizon": 1, "num_states": 2}})
    assert type(ds) is MTSDatasetH and ds.batch_size == -1 and ds.memory_mode == "sample"


def test_horizon_is_read_from_the_label_expression(provider):
    from .test_dataset import handler_config
    cfg = handler_config()
    ds = MTSDatasetH(cfg, {"train": ("2020-01-08", "2020-01-31")}, seq_len=5, num_states=3)
    assert ds.horizon == 2  # Ref($close, -2)/Ref($close, -1) - 1


@pytest.mark.parametrize("kwargs, match", [
    ({"horizon": 0}, "num_states=2 needs horizon > 0"),
    ({"memory_mode": "weekly"}, "unknown memory_mode 'weekly'"),
    ({"memory_mode": "daily", "batch_size": 64}, "memory_mode 'daily' needs daily batches"),
    ({"batch_size": 0}, "batch_size must be a non-zero integer"),
    ({"seq_len": 0}, "seq_len must be an integer >= 1"),
    ({"horizon": 3, "seq_len": 3}, "horizon=3 leaves no memory"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        dataset(**kwargs)


def test_memory_needs_states():
    seg = dataset(num_states=0).prepare("train")
    with pytest.raises(ValueError, match="cannot assign the memory with num_states=0"):
        seg.assign_data([0], [[1.0]])
    with pytest.warns(UserWarning, match="n_samples is used with daily batches only"):
        dataset(batch_size=8, n_samples=2)
