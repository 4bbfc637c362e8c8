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
             if not f.endswith(".lock") and f != "lock"]
    assert any(f.endswith("meta.json") for f in files) and any(f.endswith("obj.pkl") for f in files)
    # SQLite's index and its -wal/-shm files too (SQLite made them 0644 whatever the umask)
    assert {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"} <= {os.path.basename(f) for f in files}
    for f in files:
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


def _as_nobody() -> list[str]:
    import shutil
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as a teammate without write access")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize("folder_writable", [True, False])
def test_a_teammate_who_cannot_write_the_index_never_deletes_it(folder_writable):
    """The index is another user's 0644 file (as SQLite made it whatever the umask): a teammate whose open
    meets a read-only error must neither delete the shared index (its folder writable) nor loop (not)."""
    import shutil
    import sqlite3
    import subprocess
    import sys
    import tempfile
    prefix = _as_nobody()
    shared = tempfile.mkdtemp(prefix="qexp-shared-", dir="/tmp")
    try:
        os.chmod(shared, 0o777)
        store = os.path.join(shared, "store")
        old = os.umask(0o000)
        try:
            qexp.init(uri=store)
            with R.start(experiment_name="team", recorder_name="mine"):
                R.log_metrics(m=1.0)
                rid = R.get_recorder().id
            R.exp_manager.store.index.close()
        finally:
            os.umask(old)
        index = os.path.join(store, ".qexp", "index.sqlite")
        with sqlite3.connect(index) as conn:       # in rollback-journal mode: opening it as WAL needs a write
            conn.execute("PRAGMA journal_mode=DELETE")
        conn.close()
        os.chmod(index, 0o644)
        os.chmod(os.path.dirname(index), 0o777 if folder_writable else 0o755)
        inode = os.stat(index).st_ino
        env = {**os.environ, "QEXP_CACHE_DIR": os.path.join(shared, "cache"), "HOME": shared}
        p = subprocess.run([*prefix, sys.executable, "-m", "qexp", "runs", "list", "--uri", store, "--json"],
                           env=env, capture_output=True, text=True, timeout=120)
        assert os.path.exists(index) and os.stat(index).st_ino == inode, p.stderr   # not deleted or replaced
        assert "Recursion" not in p.stderr and "unexpected" not in p.stderr, p.stderr
        if p.returncode == 0:
            assert rid in p.stdout and "read-only" in p.stderr   # read as it is
        else:
            assert "cannot open the run index" in p.stderr, p.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)
