"""Issue 13 item 8: files follow the umask (probe 57: meta.json, store.json and every artifact were 0600 and
data folders 0700 whatever the umask, so a teammate sharing a store or ~/.qlib could not read them)."""
from __future__ import annotations

import os
import stat

import pytest

import qexp
from qexp import R


@pytest.fixture(params=[0o022, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_store_files_and_artifacts_follow_the_umask(tmp_path, umask):
    qexp.init(uri=str(tmp_path / "store"))
    with R.start(experiment_name="perm"):
        R.log_params(a=1)
        R.log_metrics(m=1.0)
        R.save_objects(**{"obj.pkl": {"x": 1}})
        R.get_recorder().log_text("hello", "notes/readme.txt")
        run_dir = R.get_recorder().get_local_dir()
    files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "store") for f in fs
             if not f.endswith((".lock", "-wal", "-shm")) and f != "lock"]
    assert any(f.endswith("meta.json") for f in files) and any(f.endswith("obj.pkl") for f in files)
    for f in files:
        if os.path.basename(f) == "index.sqlite":
            continue  # SQLite chooses its own mode
        assert mode(f) == 0o666 & ~umask, (f, oct(mode(f)))
    assert mode(os.path.join(run_dir, "artifacts", "notes")) == 0o777 & ~umask


def test_data_folders_follow_the_umask(tmp_path, umask):
    from qexp_data.synth import SynthParams, write_synth
    root = write_synth(tmp_path / "data", SynthParams(instruments=3, start="2020-01-01", end="2020-02-28"))
    assert mode(root) == 0o777 & ~umask
    assert mode(root / "calendars" / "day.txt") == 0o666 & ~umask
    assert all(mode(d) == 0o777 & ~umask for d in (root / "features").iterdir())


def test_dataset_cache_entries_follow_the_umask(tmp_path, umask):
    import pandas as pd

    from qexp.cache import write_frame_dir
    idx = pd.MultiIndex.from_product([pd.date_range("2020-01-01", periods=3), ["A", "B"]],
                                     names=["datetime", "instrument"])
    df = pd.DataFrame({"f": range(6)}, index=idx, dtype="float32")
    entry = tmp_path / "cache" / "entry"
    assert write_frame_dir(entry, df)
    assert mode(entry) == 0o777 & ~umask
    assert mode(entry / "values.npy") == 0o666 & ~umask
