"""`qexp run` end to end on a small synthetic market, config handling and `--dry-run` errors."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import qexp
from qexp import R
from qexp.cli.main import get_cli

from .conftest import SMALL

REPO = Path(__file__).resolve().parents[2]
LGB158 = REPO / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml"
ALSTM360 = REPO / "examples" / "benchmarks" / "ALSTM" / "workflow_config_alstm_Alpha360.yaml"
SIGNAL_KEYS = ["IC", "ICIR", "Rank IC", "Rank ICIR"]
PORT_KEYS = [f"1day.excess_return_{c}.{m}" for c in ("without_cost", "with_cost")
             for m in ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")]


def run(*args: str):
    return CliRunner().invoke(get_cli(), ["run", *args], catch_exceptions=False)


def small_args(market, store, *extra):
    args = ["--uri", str(store), "--set", f"qlib_init.provider_uri={market}"]
    for s in SMALL + list(extra):
        args += ["--set", s]
    return args


def only_run(store, exp="workflow"):
    qexp.init(uri=str(store))
    df = R.search_records([R.get_exp(experiment_name=exp, create=False).id])
    assert len(df) == 1
    return R.get_recorder(recorder_id=df["run_id"].iloc[0])


def check_full_run(rec):
    assert rec.status == "FINISHED"
    params = rec.list_params()
    assert params["dataset.class"] in ("DatasetH", "TSDatasetH") and "model.class" in params
    arts = set(rec.list_artifacts(recursive=True))
    for a in ("config", "task", "params.pkl", "dataset", "pred.pkl", "label.pkl", "sig_analysis/ic.pkl",
              "sig_analysis/ric.pkl", "portfolio_analysis/report_normal_1day.pkl",
              "portfolio_analysis/port_analysis_1day.pkl", "portfolio_analysis/positions_normal_1day.pkl",
              "portfolio_analysis/indicator_analysis_1day.pkl", "portfolio_analysis/report_1day.png",
              "sig_analysis/ic.png"):
        assert a in arts, a
    metrics = rec.list_metrics()
    for k in SIGNAL_KEYS + PORT_KEYS:
        assert k in metrics and math.isfinite(metrics[k]), k
    config = rec.load_object("config")
    assert "task" in config and "qlib_init" in config
    return metrics


def test_lightgbm_alpha158_end_to_end(small_market, tmp_path):
    store = tmp_path / "runs"
    r = run(str(LGB158), *small_args(small_market, store, "task.model.kwargs.num_boost_round=60"))
    assert r.exit_code == 0, r.output
    rec = only_run(store)
    metrics = check_full_run(rec)
    assert len(rec.get_metric_history("l2.valid")) >= 2  # per-iteration metrics from the model
    assert rec.load_object("config")["task"]["model"]["kwargs"]["num_boost_round"] == 60  # --set is recorded
    assert f"run id:   {rec.id}" in r.output and "IC" in r.output and "report_1day.png" in r.output
    assert metrics["IC"] > 0  # the synthetic market carries real (weak) predictability


def test_alstm_alpha360_end_to_end(small_market, tmp_path):
    store = tmp_path / "runs"
    r = run(str(ALSTM360), *small_args(small_market, store, "task.model.kwargs.n_epochs=2",
                                       "task.model.kwargs.hidden_size=8", "task.model.kwargs.batch_size=256",
                                       "task.model.kwargs.GPU=-1", "task.model.kwargs.seed=0"),
            "--experiment-name", "alstm")
    assert r.exit_code == 0, r.output
    rec = only_run(store, "alstm")
    check_full_run(rec)
    assert len(rec.get_metric_history("train_loss")) == 2


def test_exception_mid_run_leaves_failed_run(small_market, tmp_path):
    store = tmp_path / "runs"
    # an exchange setting the backtest refuses fails inside PortAnaRecord, after the model and signal were saved
    # (a benchmark without prices is caught before training now: tests/safety/test_dry_run.py)
    r = CliRunner().invoke(get_cli(), ["run", str(LGB158), *small_args(
        small_market, store, "task.model.kwargs.num_boost_round=5",
        "task.record.2.kwargs.config.backtest.exchange_kwargs.volume_threshold=1")])
    assert r.exit_code != 0
    assert "volume_threshold" in r.output
    rec = only_run(store)
    assert rec.status == "FAILED"
    arts = set(rec.list_artifacts(recursive=True))
    assert {"params.pkl", "pred.pkl", "sig_analysis/ic.pkl", "config"} <= arts  # the config is kept
    assert "IC" in rec.list_metrics()
    assert "volume_threshold" in rec.list_tags()["qexp.failure_reason"]


def test_set_and_base_config_with_drop(small_market, tmp_path):
    base = yaml.safe_load(LGB158.read_text())
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    child = tmp_path / "child.yaml"
    child.write_text(textwrap.dedent("""
        BASE_CONFIG_PATH: base.yaml
        experiment_name: from_yaml
        task:
            model:
                kwargs:
                    num_leaves: 16
                    lambda_l1: __DROP__
            record: __DROP__
    """))
    from qexp.workflow import load_workflow
    wf = load_workflow(child, ["task.model.kwargs.learning_rate=0.05", "extra.list=[1, 2]"])
    kw = wf.config["task"]["model"]["kwargs"]
    assert kw["num_leaves"] == 16 and "lambda_l1" not in kw and kw["learning_rate"] == 0.05
    assert kw["lambda_l2"] == 580.9768 and "record" not in wf.config["task"]
    assert wf.config["extra"]["list"] == [1, 2] and wf.experiment_name == "from_yaml"
    assert load_workflow(child, [], "cli_name").experiment_name == "cli_name"  # the flag wins
    store = tmp_path / "runs"
    args = ["--uri", str(store), "--set", f"qlib_init.provider_uri={small_market}",
            "--set", "task.model.kwargs.num_boost_round=5"]
    for s in SMALL:
        if not s.startswith("task.record"):  # the records were dropped
            args += ["--set", s]
    r = run(str(child), *args)
    assert r.exit_code == 0, r.output
    rec = only_run(store, "from_yaml")
    assert rec.list_params()["model.kwargs.num_leaves"] == "16" and "pred.pkl" not in rec.list_artifacts()


def test_jinja_renders_environment(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("experiment_name: {{ EXP_FROM_ENV }}\ntask: {model: {class: X}, dataset: {class: Y}}\n")
    monkeypatch.setenv("EXP_FROM_ENV", "rendered")
    from qexp.workflow import load_workflow
    assert load_workflow(cfg).experiment_name == "rendered"


@pytest.mark.parametrize("override,expect", [
    ("task.model.class=NoSuchModel", "task.model: cannot resolve class 'NoSuchModel'"),
    ("task.record.0.class=NoSuchRecord", "task.record.0: cannot resolve class 'NoSuchRecord'"),
    ("task.record.2.kwargs.config.strategy.class=NoSuchStrategy",
     "task.record.2.kwargs.config.strategy: cannot resolve class 'NoSuchStrategy'"),
    ("task.record.0.kwargs.model=<MODDEL>", "task.record.0.kwargs.model: placeholder <MODDEL>"),
    ("task.dataset.kwargs.segments.valid=[2017-06-01, 2018-12-31]", "task.dataset.kwargs.segments.valid: starts"),
    ("task.dataset.kwargs.segments.test=[2019-12-31, 2019-01-01]", "task.dataset.kwargs.segments.test: start"),
    ("qlib_init.provider_uri=/no/such/qlib_data", "qlib_init.provider_uri"),
])
def test_dry_run_names_the_key_path(small_market, tmp_path, override, expect):
    args = small_args(small_market, tmp_path / "runs", override)
    r = CliRunner().invoke(get_cli(), ["run", str(LGB158), "--dry-run", *args])
    assert r.exit_code != 0
    assert expect in r.output, r.output
    assert not (tmp_path / "runs").exists()  # a dry run records nothing


def test_dry_run_ok_prints_task(small_market, tmp_path):
    r = CliRunner().invoke(get_cli(), ["run", str(LGB158), "--dry-run", *small_args(small_market, tmp_path / "r")])
    assert r.exit_code == 0, r.output
    assert "LGBModel" in r.output and "experiment_name: workflow" in r.output


def test_missing_data_folder_fails_in_run_with_the_create_command(tmp_path):
    r = CliRunner().invoke(get_cli(), ["run", str(LGB158), "--uri", str(tmp_path / "r"),
                                       "--set", "qlib_init.provider_uri=/no/such/qlib_data"])
    assert r.exit_code != 0
    assert "/no/such/qlib_data" in r.output and "qexp data" in r.output


def test_python_m_qexp_and_qrun_behave_the_same(tmp_path):
    bin_dir = Path(sys.executable).parent
    a = subprocess.run([sys.executable, "-m", "qexp", "run", "--help"], capture_output=True, text=True, timeout=60)
    b = subprocess.run([str(bin_dir / "qrun"), "--help"], capture_output=True, text=True, timeout=60)
    c = subprocess.run([str(bin_dir / "qexp"), "run", "--help"], capture_output=True, text=True, timeout=60)
    assert a.returncode == b.returncode == c.returncode == 0
    assert "--dry-run" in a.stdout and a.stdout.split("\n", 1)[1] == c.stdout.split("\n", 1)[1]
    assert "--dry-run" in b.stdout
