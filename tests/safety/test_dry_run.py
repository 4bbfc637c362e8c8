"""Issue 13 item 4: `--dry-run` catches what the run would hit (probes 52-54: `LinearModel(alpah=1)`, a
benchmark without prices, `num_leavs` silently dropped by LightGBM all said "config OK")."""
from __future__ import annotations

import qexp
from qexp import R

from .conftest import cli, workflow_config, write_config


def dry(cfg, *sets):
    args = ["run", str(cfg), "--dry-run"]
    for s in sets:
        args += ["--set", s]
    return cli(*args)


def test_an_unknown_constructor_keyword_is_named(tiny_market, tmp_path):
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market))
    r = dry(cfg, "task.model={class: LinearModel, kwargs: {alpah: 1}}")
    assert r.exit_code == 1
    assert "task.model.kwargs.alpah: LinearModel takes no argument 'alpah'; did you mean 'alpha'?" in r.output
    r = dry(cfg, "task.record.1.kwargs.ana_long_shrt=true")
    assert r.exit_code == 1 and "task.record.1.kwargs.ana_long_shrt: SigAnaRecord takes no argument" in r.output


def test_lightgbm_parameters_are_checked_against_lightgbm(tiny_market, tmp_path):
    lgb = {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
           "kwargs": {"loss": "mse", "num_leavs": 64, "eta": 0.1, "colsample_bytree": 0.8}}
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market, model=lgb))
    r = dry(cfg)
    assert r.exit_code == 0, r.output  # a warning: LightGBM itself would only ignore it
    assert "'num_leavs' is not a LightGBM parameter and would be ignored; did you mean 'num_leaves'?" in r.stderr
    assert "eta" not in r.stderr and "colsample_bytree" not in r.stderr  # aliases and real names pass


def test_benchmark_and_instruments_are_checked_against_the_data(tiny_market, tmp_path):
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market, benchmark="NOPE"))
    r = dry(cfg)
    assert r.exit_code == 1
    assert ("task.record.2.kwargs.config.backtest.benchmark: ['NOPE'] has no prices in" in r.output
            and "between 2019-07-01 and 2019-12-30" in r.output and "SH600000" in r.output)
    r = dry(cfg, "task.record.2.kwargs.config.backtest.benchmark=SH000300",
            "task.dataset.kwargs.handler.kwargs.instruments=[SH600000, NOSUCH1]")
    assert r.exit_code == 1 and "instruments: 'NOSUCH1' is not in" in r.output and "SH600000'" not in r.output
    r = dry(cfg, "task.record.2.kwargs.config.backtest.benchmark=SH000300",
            "task.dataset.kwargs.handler.kwargs.instruments=nosuchmarket")
    assert r.exit_code == 1 and "instruments: 'nosuchmarket'" in r.output


def test_the_real_run_checks_the_data_before_training(tiny_market, tmp_path):
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market, benchmark="NOPE"))
    store = tmp_path / "runs"
    r = cli("run", str(cfg), "--uri", str(store))
    assert r.exit_code == 1 and "checked before training" in r.output and "NOPE" in r.output
    qexp.init(uri=str(store))
    assert len(R.search_records()) == 0  # no fit, no run


def test_a_malformed_store_uri_is_a_dry_run_problem(tiny_market, tmp_path):
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market))
    r = cli("run", str(cfg), "--dry-run", "--uri", "sqlite:/bad")
    assert r.exit_code == 1, r.output
    assert "qlib_init.uri (or --uri)" in r.output and "sqlite:/bad" in r.output
    # a store that does not exist yet is fine, and the dry run does not create it
    r = cli("run", str(cfg), "--dry-run", "--uri", f"sqlite:///{tmp_path}/new.db")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "new.db").exists()
