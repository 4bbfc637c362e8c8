"""Fixtures of the executor tests: qexp's executor plugins loaded (here and in worker processes), tiny
synthetic markets. The Dask cluster (``dask_cluster``: a scheduler and two workers started as separate
processes) is in tests/conftest.py, shared with the sweep tests."""
from __future__ import annotations

import os

import pytest

from .helpers import PLUGINS, make_market


def load_executor_plugins() -> None:
    import qexp_dask.plugin
    import qexp_executors.plugin
    import qexp_sweep.plugin
    from qexp.ext import get_plugin, load_plugins, register_plugin
    load_plugins()
    for name, module in (("executors", qexp_executors.plugin), ("dask", qexp_dask.plugin),
                         ("sweep", qexp_sweep.plugin)):
        if get_plugin(name) is None:
            register_plugin(module, name=name)


@pytest.fixture(autouse=True)
def _executor_plugins(monkeypatch):
    """The suite's QEXP_LOAD_PLUGINS leaves the executor plugins out; register them, and let spawned
    workers load them through their entry points."""
    load_executor_plugins()
    loaded = [n for n in os.environ.get("QEXP_LOAD_PLUGINS", "").split(",") if n]
    if loaded:
        monkeypatch.setenv("QEXP_LOAD_PLUGINS", ",".join(dict.fromkeys([*loaded, *PLUGINS])))
    yield


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory):
    return make_market(tmp_path_factory.mktemp("tiny") / "market")


@pytest.fixture(scope="session")
def task_market(tmp_path_factory):
    """The task tests' market (12 stocks, 2018-2019), which their small tasks and rolling config fit."""
    from tests.task.tasks import write_market
    return write_market(tmp_path_factory.mktemp("task_market") / "synth")
