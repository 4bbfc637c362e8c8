"""Every benchmark config under examples/benchmarks is dry-run by a test.

The per-model modules (test_benchmark_yamls_gbdt, _torch, _tra) dry-run the configs of their folders; this
module dry-runs every other one (LightGBM, Linear and ALSTM today, and any config a new folder brings), as
shipped and on the tiny synthetic market (20 stocks x ~300 days) the other modules use, and runs them for
real there: one epoch or a few boosting rounds, Linear's OLS as it is. LightGBM's multi-frequency copy needs
1-minute data, which qexp does not serve: its run stops with that clear error."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from qexp.cli.main import get_cli

from . import (
    test_benchmark_yamls_gbdt as gbdt_yamls,
    test_benchmark_yamls_torch as torch_yamls,
    test_benchmark_yamls_tra as tra_yamls,
)
from .yaml_runs import assert_headline_metrics, finished_run, market_args, run_cli

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "examples" / "benchmarks"
ALL = sorted(BENCHMARKS.rglob("*.yaml"))


def _dry_run_params(module) -> set[Path]:
    """The configs a module's ``test_dry_run_as_shipped`` is parametrized over."""
    marks = getattr(module.test_dry_run_as_shipped, "pytestmark", [])
    return {p for m in marks if m.name == "parametrize" and m.args[0] == "config" for p in m.args[1]}


ELSEWHERE = {name: _dry_run_params(m) for name, m in
             (("gbdt", gbdt_yamls), ("torch", torch_yamls), ("tra", tra_yamls))}
HERE = [p for p in ALL if not any(p in configs for configs in ELSEWHERE.values())]
IDS = [f"{p.parent.name}/{p.name}" for p in HERE]
MULTI_FREQ = BENCHMARKS / "LightGBM" / "workflow_config_lightgbm_Alpha158_multi_freq.yaml"

# the tiny market has csi300 and SH000300 only (the csi500 copies, and the S&P one's "all" / null benchmark)
TINY = gbdt_yamls.TINY
MODEL = "task.model.kwargs"
QUICK = {  # a few boosting rounds or one epoch of a small network; Linear's OLS as shipped
    # Qlib's L1/L2 penalties suit 300 stocks; on 20 they leave every tree a single leaf (constant scores)
    "LightGBM": ["num_boost_round=15", "num_threads=1", "lambda_l1=1", "lambda_l2=1"],
    "ALSTM": ["n_epochs=1", "hidden_size=8", "num_layers=1", "batch_size=256", "GPU=-1"],
    "Linear": [],
}


def test_every_benchmark_config_is_dry_run_by_a_test() -> None:
    for name, configs in ELSEWHERE.items():
        assert configs, f"test_benchmark_yamls_{name}.test_dry_run_as_shipped is no longer parametrized by config"
        assert configs <= set(ALL), f"{name}: {sorted(configs - set(ALL))}"
    covered = set(HERE).union(*ELSEWHERE.values())
    assert covered == set(ALL)
    # what nothing else dry-runs: LightGBM beyond Alpha158, ALSTM on Alpha158, and Linear
    assert [f"{p.parent.name}/{p.name}" for p in HERE] == [
        "ALSTM/workflow_config_alstm_Alpha158.yaml", "ALSTM/workflow_config_alstm_Alpha360.yaml",
        "LightGBM/workflow_config_lightgbm_Alpha158.yaml", "LightGBM/workflow_config_lightgbm_Alpha158_csi500.yaml",
        "LightGBM/workflow_config_lightgbm_Alpha158_multi_freq.yaml",
        "LightGBM/workflow_config_lightgbm_Alpha158_sp500.yaml", "LightGBM/workflow_config_lightgbm_Alpha360.yaml",
        "LightGBM/workflow_config_lightgbm_Alpha360_csi500.yaml",
        "Linear/workflow_config_linear_Alpha158.yaml", "Linear/workflow_config_linear_Alpha158_csi500.yaml"]


def _tiny_args(config: Path, store: Path, market: Path, extra: Sequence[str] = ()) -> list[str]:
    return market_args(store, market, [*TINY, *extra])


MINUTE_DATA = "freq.feature: frequency '1min' is not supported: qexp's data provider serves daily data"
"""What the dry run says of the multi-frequency copy: its features are 1-minute bars, which qexp does not serve."""


def _folder_of(config: Path, monkeypatch) -> None:
    if "module_path: features_sample.py" in config.read_text():
        monkeypatch.chdir(config.parent)  # Qlib reads a relative .py module_path from the working directory


@pytest.mark.parametrize("config", HERE, ids=IDS)
def test_dry_run_as_shipped(config, shared_cache, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QEXP_CACHE_DIR", str(shared_cache))
    monkeypatch.setenv("HOME", str(tmp_path))  # Qlib's ~/.qlib data folders are not there, on any machine
    _folder_of(config, monkeypatch)
    r = run_cli(str(config), "--dry-run", "--uri", str(tmp_path / "runs"))
    if (yaml.safe_load(config.read_text())["qlib_init"] or {}).get("provider_uri"):
        # Qlib's cn_data (csi500 copies) or the imported S&P folder: a clear error naming the folder
        folder = "cn_data" if "csi500" in config.name else "sp500"
        assert r.exit_code != 0 and "qlib_init.provider_uri" in r.output and folder in r.output, r.output
    elif config == MULTI_FREQ:
        assert r.exit_code != 0 and MINUTE_DATA in r.output, r.output
    else:
        assert r.exit_code == 0, r.output
        assert "config OK" in r.output
    assert "unknown argument" not in r.output and "warning: task.model" not in r.output, r.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("config", HERE, ids=IDS)
def test_dry_run_on_the_tiny_market(config, tiny_market, tmp_path, monkeypatch) -> None:
    _folder_of(config, monkeypatch)
    r = run_cli(str(config), "--dry-run", *_tiny_args(config, tmp_path / "runs", tiny_market))
    if config == MULTI_FREQ:
        assert r.exit_code != 0 and MINUTE_DATA in r.output, r.output
    else:
        assert r.exit_code == 0, r.output
        assert "config OK" in r.output
    assert "unknown argument" not in r.output and "warning: task.model" not in r.output, r.output


def test_multi_freq_copy_away_from_its_folder_names_the_missing_file(shared_cache, tmp_path, monkeypatch) -> None:
    """Its processor's module_path (features_sample.py) is read from the working directory, as in Qlib:
    run from elsewhere, the dry run says which file is missing and where it looked, in one line."""
    monkeypatch.setenv("QEXP_CACHE_DIR", str(shared_cache))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(get_cli(), ["run", str(MULTI_FREQ), "--dry-run", "--uri", str(tmp_path / "runs")])
    assert r.exit_code != 0
    line = next(line for line in r.output.splitlines() if "Resample1minProcessor" in line)
    assert f"no file {tmp_path / 'features_sample.py'}" in line and "working directory" in line, r.output
    assert "Traceback" not in r.output and "unexpected" not in r.output, r.output


def test_multi_freq_copy_stops_at_the_minute_data(shared_cache, tmp_path, monkeypatch) -> None:
    """As shipped (the built-in synthetic market, run from its folder): 1-minute features are a clear error
    at the config check, before any data is read or any run is made."""
    monkeypatch.setenv("QEXP_CACHE_DIR", str(shared_cache))
    monkeypatch.chdir(MULTI_FREQ.parent)
    store = tmp_path / "runs"
    r = CliRunner().invoke(get_cli(), ["run", str(MULTI_FREQ), "--uri", str(store)])
    assert r.exit_code != 0
    assert MINUTE_DATA in r.output, r.output
    assert "Traceback" not in r.output, r.output
    assert not store.exists()


REAL = [p for p in HERE if p != MULTI_FREQ]


@pytest.mark.parametrize("config", REAL, ids=[f"{p.parent.name}/{p.name}" for p in REAL])
def test_runs_on_the_tiny_market(config, tiny_market, tmp_path) -> None:
    store = tmp_path / "runs"
    quick = [f"{MODEL}.{s}" for s in QUICK[config.parent.name]]
    r = run_cli(str(config), *_tiny_args(config, store, tiny_market, quick))
    assert r.exit_code == 0, r.output
    rec = finished_run(store)
    metrics = rec.list_metrics()
    assert_headline_metrics(metrics)
    model = rec.load_object("params.pkl")
    assert type(model).__name__ == {"LightGBM": "LGBModel", "ALSTM": "ALSTM", "Linear": "LinearModel"}[
        config.parent.name]
    if config.parent.name == "Linear":  # Qlib's Linear configs analyse the long-short spread too
        assert math.isfinite(metrics["Long-Short Ann Return"]), sorted(metrics)
