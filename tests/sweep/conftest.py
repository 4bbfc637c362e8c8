"""Fixtures of the sweep tests: the sweep and executor plugins loaded, a tiny synthetic market, and a tiny
LightGBM config on it."""
from __future__ import annotations

import os

import pytest

from tests.executors.helpers import PLUGINS, make_market, tiny_config, write_config


@pytest.fixture(autouse=True)
def _sweep_plugins(monkeypatch, tmp_path):
    import qexp_dask.plugin
    import qexp_executors.plugin
    import qexp_sweep.plugin
    from qexp.ext import get_plugin, load_plugins, register_plugin
    load_plugins()
    for name, module in (("executors", qexp_executors.plugin), ("dask", qexp_dask.plugin),
                         ("sweep", qexp_sweep.plugin)):
        if get_plugin(name) is None:
            register_plugin(module, name=name)
    from qexp.cli.main import cli
    if "sweep" not in cli.commands:  # the CLI may have been built before the plugin was registered
        qexp_sweep.plugin.register_commands(cli)
    loaded = [n for n in os.environ.get("QEXP_LOAD_PLUGINS", "").split(",") if n]
    if loaded:
        monkeypatch.setenv("QEXP_LOAD_PLUGINS", ",".join(dict.fromkeys([*loaded, *PLUGINS])))
    monkeypatch.setenv("QEXP_HOME", str(tmp_path / "qexp_home"))
    yield


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory):
    return make_market(tmp_path_factory.mktemp("tiny") / "market")


@pytest.fixture
def tiny_cfg(tiny_market, tmp_path):
    """The path of a tiny LightGBM config (and its dict)."""
    cfg = tiny_config(tiny_market)
    return write_config(tmp_path / "tiny.yaml", cfg), cfg
