"""Test-wide setup: only the built-in plugins load (never stray installed ones), stores live in tmp dirs,
and R's state is reset between tests."""
from __future__ import annotations

import os
from pathlib import Path

# before qexp is imported anywhere: tests see exactly the built-in plugins
os.environ["QEXP_LOAD_PLUGINS"] = "file,data,records,models,mlflow,wandb"
os.environ.setdefault("QEXP_AUTOLOG_GIT", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QEXP_SHARED", REPO.parent / "shared"))
SP500_DIR = Path(os.environ.get("QEXP_SHARED_DATA", SHARED / "data" / "sp500_5yr"))


@pytest.fixture(autouse=True)
def _isolate_qexp(tmp_path, monkeypatch):
    """Each test gets its own cache and default store, and leaves no active run behind."""
    monkeypatch.setenv("QEXP_CACHE_DIR", os.environ.get("QEXP_TEST_CACHE_DIR", str(tmp_path / "cache")))
    monkeypatch.setenv("QEXP_URI", str(tmp_path / "default_store"))
    yield
    from qexp.api import R, _stack
    from qexp.settings import clear_mirrors
    try:
        R._end_all_open("FINISHED")
    finally:
        _stack.set(())
        clear_mirrors()


@pytest.fixture
def sp500_dir() -> Path:
    if not SP500_DIR.is_dir() or not any(SP500_DIR.glob("*.csv")):
        pytest.skip(f"the S&P 500 sample data is not at {SP500_DIR} (set QEXP_SHARED_DATA to its folder)")
    return SP500_DIR


@pytest.fixture(scope="session")
def _dask_processes(tmp_path_factory):
    """A ``dask scheduler`` and two single-thread ``dask worker`` processes on 127.0.0.1, for the session."""
    pytest.importorskip("distributed")
    from tests.executors.helpers import DaskProcesses, child_env
    work = tmp_path_factory.mktemp("dask")
    procs = DaskProcesses(work, n_workers=2, env=child_env(QEXP_CACHE_DIR=str(work / "cache")))
    try:
        procs.wait(2)
        yield procs
    finally:
        procs.stop()


@pytest.fixture
def dask_cluster(_dask_processes):
    """The session's Dask cluster (executor and sweep tests) with both workers up: a worker a test killed is
    restarted by its nanny under a new address, and the next test waits for it."""
    _dask_processes.wait(2)
    return _dask_processes
