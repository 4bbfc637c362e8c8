"""The sweep space: W&B's format and meanings, and every bad input a clear error naming it, before any trial."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from qexp.ext import ConfigError
from qexp_sweep.metrics import check_metric, expected_metrics
from qexp_sweep.space import parse_space

GOOD = {"method": "tpe", "metric": {"name": "IC", "goal": "maximize"},
        "parameters": {"task.model.kwargs.num_leaves": {"values": [7, 15]}}}


def space(cfg, **params):
    return parse_space({**GOOD, "parameters": params}, cfg)


def test_wandb_distributions_keep_their_meanings(tiny_cfg):
    _, cfg = tiny_cfg
    s = space(cfg, **{
        "task.model.kwargs.num_leaves": {"values": [7, 15]},
        "task.model.kwargs.learning_rate": {"distribution": "log_uniform", "min": -4, "max": -1},
        "task.model.kwargs.lambda_l1": {"min": 0.0, "max": 3.0},
        "task.model.kwargs.max_depth": {"min": 3, "max": 6},
        "task.model.kwargs.lambda_l2": {"distribution": "inv_log_uniform", "min": 1, "max": 2},
        "task.model.kwargs.seed": {"value": 3},
    })
    by = {p.path.rsplit(".", 1)[-1]: p for p in s.params}
    assert by["num_leaves"].distribution == "categorical" and by["num_leaves"].choices == [7, 15]
    # log_uniform takes natural-log exponents, as in W&B
    assert (by["learning_rate"].low, by["learning_rate"].high) == pytest.approx((math.exp(-4), math.exp(-1)))
    assert by["learning_rate"].log
    assert by["lambda_l1"].distribution == "uniform" and by["max_depth"].distribution == "int_uniform"
    assert (by["lambda_l2"].low, by["lambda_l2"].high) == pytest.approx((math.exp(-2), math.exp(-1)))
    assert by["seed"].distribution == "constant"
    assert s.method == "tpe" and s.goal == "maximize"


def test_nested_parameters_extend_the_path_and_grid_points(tiny_cfg):
    _, cfg = tiny_cfg
    s = parse_space({"method": "grid", "metric": "IC", "parameters": {"task": {"parameters": {"model": {
        "parameters": {"kwargs": {"parameters": {"num_leaves": {"values": [7, 15]},
                                                 "max_depth": {"distribution": "int_uniform", "min": 3, "max": 5}}}}}}}}},
                    cfg)
    assert [p.path for p in s.params] == ["task.model.kwargs.num_leaves", "task.model.kwargs.max_depth"]
    assert len(s.grid()) == 6 and s.goal == "minimize"  # W&B's default goal


@pytest.mark.parametrize("params, expect", [
    ({"task.model.kwarg.num_leaves": {"values": [1]}}, "parameters.task.model.kwarg.num_leaves: the config has no key 'kwarg'"),
    ({"task.dataset.kwargs.handler.kwargs.nope.x": {"values": [1]}}, "no key 'nope'"),
    ({"task.model.kwargs.num_leaves": {"values": []}}, "parameters.task.model.kwargs.num_leaves: values is empty"),
    ({"task.model.kwargs.learning_rate": {"min": 0.3, "max": 0.01}}, "learning_rate: min 0.3 is greater than max 0.01"),
    ({"task.model.kwargs.learning_rate": {"distribution": "loguniform", "min": 0.01, "max": 0.3}},
     "distribution 'loguniform' is unknown"),
    ({"task.model.kwargs.learning_rate": {"distribution": "normal", "mu": 0.1, "sigma": 0.01}}, "not supported"),
    ({"task.model.kwargs.learning_rate": {"distribution": "log_uniform_values", "min": 0, "max": 1}}, "needs min > 0"),
    ({"task.model.kwargs.learning_rate": {"min": 0.01}}, "needs min and max"),
    ({"task.model.kwargs.learning_rate": {"values": [0.1], "step": 2}}, "unknown key(s) step"),
])
def test_bad_parameters_name_the_key(tiny_cfg, params, expect):
    _, cfg = tiny_cfg
    with pytest.raises(ConfigError) as err:
        space(cfg, **params)
    assert expect in str(err.value)


@pytest.mark.parametrize("raw, expect", [
    ({**GOOD, "method": "bayesian"}, "method 'bayesian' is unknown"),
    ({**GOOD, "metric": {"goal": "maximize"}}, "metric must name the metric"),
    ({**GOOD, "metric": {"name": "IC", "goal": "up"}}, "metric.goal"),
    ({**GOOD, "paramters": {}}, "unknown key(s) paramters"),
    ({**GOOD, "method": "grid", "parameters": {"task.model.kwargs.learning_rate": {"min": 0.1, "max": 0.2}}},
     "method grid needs a list of values"),
    ({**GOOD, "early_terminate": {"type": "median"}}, "early_terminate.metric"),
])
def test_bad_spaces_name_the_key(tiny_cfg, raw, expect):
    _, cfg = tiny_cfg
    with pytest.raises(ConfigError) as err:
        parse_space(raw, cfg)
    assert expect in str(err.value)


def test_expected_metrics_of_known_components(tiny_cfg):
    _, cfg = tiny_cfg
    names, complete = expected_metrics(cfg["task"])
    assert complete and {"IC", "Rank ICIR", "l2.valid", "l2.train"} <= names
    assert check_metric(cfg["task"], "IC", "metric")
    with pytest.raises(ConfigError, match=r"metric 'Sharpe': no trial would log it; .* IC, ICIR"):
        check_metric(cfg["task"], "Sharpe", "metric")
    task = {**cfg["task"], "record": [{"class": "MyRecord"}]}
    assert check_metric(task, "Sharpe", "metric") is False  # unknown record: checked on the first trial


def _sweep(args):
    from qexp.cli.main import get_cli
    return CliRunner().invoke(get_cli(), ["sweep", *args])


@pytest.mark.parametrize("bad, expect", [
    ({"parameters": {"task.model.kwargs.nonexistent.x": {"values": [1]}}}, "no key 'nonexistent'"),
    ({"parameters": {"task.model.kwargs.num_leaves": {"values": []}}}, "values is empty"),
    ({"parameters": {"task.model.kwargs.learning_rate": {"min": 1.0, "max": 0.5}}}, "min 1.0 is greater than max 0.5"),
    ({"parameters": {"task.model.kwargs.learning_rate": {"distribution": "gaussian", "min": 0, "max": 1}}},
     "distribution 'gaussian' is unknown"),
    ({"metric": {"name": "Sharpe", "goal": "maximize"}}, "metric 'Sharpe': no trial would log it"),
    ({"parameters": {"task.model.kwargs.learnin_rate": {"values": [0.1]}}}, "not a LightGBM parameter"),
])
def test_bad_input_fails_before_any_trial(tiny_cfg, tmp_path, bad, expect):
    cfg_path, _ = tiny_cfg
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump({**GOOD, "run_cap": 2, **bad}))
    store = tmp_path / "store"
    r = _sweep([str(cfg_path), "--space", str(space_file), "--uri", str(store)])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("Error: ") and expect in r.output, r.output
    assert not (store / ".qexp" / "sweeps.sqlite").exists()  # no study, no trial
    assert not list(Path(store).glob("*/*/meta.json"))      # and no run


def test_the_space_can_sit_in_the_config(tiny_cfg, tmp_path):
    cfg_path, cfg = tiny_cfg
    cfg["sweep"] = {**GOOD, "parameters": {"task.model.kwargs.num_leaves": {"values": []}}}
    cfg_path.write_text(yaml.safe_dump(cfg))
    r = _sweep([str(cfg_path), "--uri", str(tmp_path / "store")])
    assert r.exit_code == 1 and "sweep: " in r.output and "values is empty" in r.output, r.output
    r = _sweep([str(Path(cfg_path).with_name("missing.yaml")), "--uri", str(tmp_path / "store")])
    assert r.exit_code == 1 and "does not exist" in r.output


def test_the_examples_spaces_fit_their_configs():
    from qexp.ext import load_workflow
    from qexp_sweep.driver import check_trial_config, load_space
    from tests.executors.helpers import REPO
    example = REPO / "examples" / "sweep"
    wf = load_workflow(example / "lgb_alpha158_sweep.yaml")
    s = load_space(None, wf.config, "lgb_alpha158_sweep.yaml")
    check_trial_config(wf.config, s)
    assert s.method == "tpe" and s.pruning is not None and s.run_cap == 20 and "sweep" not in wf.config
    base = load_workflow(REPO / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml")
    grid = load_space(str(example / "space_grid.yaml"), base.config, "x")
    check_trial_config(base.config, grid)
    check_metric(base.config["task"], grid.metric, "metric")
    assert len(grid.grid()) == 6


def _with_model(cfg, model):
    task = dict(cfg["task"])
    task["model"] = model
    return task


def test_a_metric_no_model_or_record_logs_is_refused_for_any_model(tiny_cfg):
    """It held only for LGBModel: other models now either declare their metrics (logged_metrics) or are taken
    to log per-set metrics (train/valid/test) only, so a typo of a record metric fails before any trial."""
    _, cfg = tiny_cfg
    linear = _with_model(cfg, {"class": "LinearModel", "module_path": "qlib.contrib.model.linear",
                               "kwargs": {"estimator": "ols"}})
    assert check_metric(linear, "Rank IC", "metric")
    for typo in ("IC_typo", "Rank_IC", "1day.excess_return_with_cost.sharpe"):
        with pytest.raises(ConfigError, match=rf"metric '{typo}': no trial would log it;.*LinearModel does not "
                                              r"declare what it logs"):
            check_metric(linear, typo, "metric")
    # what such a model may log itself is left to the first trial
    assert check_metric(linear, "valid_loss", "metric") is False
    assert check_metric(linear, "anything", "early_terminate.metric", step=True) is False
    # a model that declares its metrics is held to them
    lgb = _with_model(cfg, {"class": "LGBModel", "kwargs": {"metric": "l1"}})
    assert check_metric(lgb, "l1.valid", "metric")
    with pytest.raises(ConfigError, match=r"early_terminate.metric 'l2.valid': no trial would log it"):
        check_metric(lgb, "l2.valid", "early_terminate.metric", step=True)
    # PortAnaRecord's names come from its kwargs
    port = dict(cfg["task"], record=[{"class": "PortAnaRecord", "kwargs": {"config": {
        "executor": {"class": "SimulatorExecutor", "kwargs": {"time_per_step": "day"}}}}}])
    assert check_metric(port, "1day.excess_return_with_cost.information_ratio", "metric")
    with pytest.raises(ConfigError, match="no trial would log it"):
        check_metric(port, "1week.excess_return_with_cost.information_ratio", "metric")


def test_a_third_party_model_declares_its_metrics(tiny_cfg):
    from qexp.ext import register_plugin, unregister_plugin
    _, cfg = tiny_cfg

    class Declared:
        @classmethod
        def logged_metrics(cls, kwargs):
            return {f"{kwargs.get('name', 'loss')}.valid"}

    class Plugin:
        from qexp.ext import hookimpl

        @hookimpl
        def register_models(self, register):
            register(Declared, "DeclaredModel", module_paths=["thirdparty.models"])

    name = register_plugin(Plugin(), name="test-declared-model")
    try:
        task = _with_model(cfg, {"class": "DeclaredModel", "module_path": "thirdparty.models",
                                 "kwargs": {"name": "huber"}})
        assert check_metric(task, "huber.valid", "metric")
        with pytest.raises(ConfigError, match=r"'loss.valid': no trial would log it; .*huber.valid"):
            check_metric(task, "loss.valid", "metric")
    finally:
        unregister_plugin(name)
