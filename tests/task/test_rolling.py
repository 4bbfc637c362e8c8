"""``qexp rolling`` end to end on a tiny synthetic market, Qlib module paths in configs, bad input."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import qexp
from qexp import R
from qexp.cli.main import get_cli
from qexp.config import init_instance_by_config
from qexp.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "examples" / "rolling" / "workflow_config_lightgbm_Alpha158_rolling.yaml"
SIGNAL_KEYS = ["IC", "ICIR", "Rank IC", "Rank ICIR"]
PORT_KEYS = [f"1day.excess_return_{c}.{m}" for c in ("without_cost", "with_cost")
             for m in ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")]

TINY = [
    "data_handler_config.start_time=2018-01-01", "data_handler_config.end_time=2019-12-31",
    "data_handler_config.fit_start_time=2018-01-01", "data_handler_config.fit_end_time=2018-12-31",
    "task.dataset.kwargs.handler.kwargs.start_time=2018-01-01",
    "task.dataset.kwargs.handler.kwargs.end_time=2019-12-31",
    "task.dataset.kwargs.handler.kwargs.fit_start_time=2018-01-01",
    "task.dataset.kwargs.handler.kwargs.fit_end_time=2018-12-31",
    "task.dataset.kwargs.segments.train=[2018-01-01, 2018-12-31]",
    "task.dataset.kwargs.segments.valid=[2019-01-01, 2019-06-30]",
    "task.dataset.kwargs.segments.test=[2019-07-01, 2019-12-31]",
    "task.model.kwargs={loss: mse, num_boost_round: 15, early_stopping_rounds: 5, num_leaves: 8, "
    "min_data_in_leaf: 20, learning_rate: 0.1, num_threads: 1}",
    "task.record.2.kwargs.config.backtest.start_time=2019-07-01",
    "task.record.2.kwargs.config.backtest.end_time=2019-12-31",
    "task.record.2.kwargs.config.strategy.kwargs.topk=5",
    "task.record.2.kwargs.config.strategy.kwargs.n_drop=1",
]


def rolling(market, store, *extra):
    args = ["rolling", str(CONFIG), "--uri", str(store), "--set", f"qlib_init.provider_uri={market}"]
    for s in TINY:
        args += ["--set", s]
    return CliRunner().invoke(get_cli(), [*args, *extra], catch_exceptions=False)


def runs(exp):
    return list(R.list_recorders(experiment_name=exp).values())


def test_rolling_end_to_end(tiny_market, tmp_path, monkeypatch):
    from qexp_data.handler import DataHandlerLP
    loads = []
    real_setup = DataHandlerLP.setup_data

    def counting_setup(self, *a, **k):
        loads.append(type(self).__name__)
        return real_setup(self, *a, **k)

    monkeypatch.setattr(DataHandlerLP, "setup_data", counting_setup)
    store = tmp_path / "runs"
    result = rolling(tiny_market, store, "--step", "40", "--horizon", "1")
    assert result.exit_code == 0, result.output
    assert loads == ["Alpha158"]  # the features were computed once for all four windows
    assert "4 windows in experiment rolling_models" in result.output and "rolling/IC" in result.output

    qexp.init(uri=str(store), provider_uri=str(tiny_market))
    windows = sorted(runs("rolling_models"), key=lambda r: int(r.list_tags()["rolling.window"]))
    assert len(windows) == 4
    tests = []
    for w in windows:
        assert set(w.list_artifacts()) >= {"pred.pkl", "label.pkl", "params.pkl", "dataset", "task"}
        assert "sig_analysis" not in w.list_artifacts() and "IC" not in w.list_metrics()  # SignalRecord only
        task = w.load_object("task")
        assert task["record"] == ["qlib.workflow.record_temp.SignalRecord"]
        # the horizon's label and trunc_days = horizon + 1 before each test start
        assert task["dataset"]["kwargs"]["handler"]["class"] == "shared_handler"
        segs = task["dataset"]["kwargs"]["segments"]
        tests.append(segs["test"])
        cal = qexp.ext.get_provider().calendar()
        assert cal.get_loc(segs["valid"][1]) == cal.get_loc(segs["test"][0]) - 2
        assert w.list_tags()["train_status"] == "end_task_train"
    assert [str(t[0].date()) for t in tests] == ["2019-07-01", "2019-08-26", "2019-10-28", "2019-12-23"]
    assert tests[-1][1] is None  # the last window runs open past the calendar
    label_col = windows[0].load_object("label.pkl").columns[0]
    assert label_col == "Ref($close, -2) / Ref($close, -1) - 1"

    (combined,) = runs("rolling")
    tags, params, metrics = combined.list_tags(), combined.list_params(), combined.list_metrics()
    assert tags["qexp.rolling"] == "rolling_models" and params["exp_name"] == "rolling_models"
    assert params["rolling.window.0.test"] == "2019-07-01..2019-08-23" and params["rolling.window.3.test"] == \
        "2019-12-23..open"
    assert params["rolling.window.2.run_id"] == windows[2].id and params["rolling.step"] == "40"
    for key in SIGNAL_KEYS + PORT_KEYS:
        assert key in metrics and math.isfinite(metrics[key]), key
    history = combined.get_metric_history("rolling/IC")
    assert list(history["step"]) == [0, 1, 2, 3]
    pred = combined.load_object("pred.pkl")
    days = pred.index.get_level_values("datetime")
    assert not pred.index.duplicated().any() and str(days.min().date()) == "2019-07-01"
    assert days.max() == qexp.ext.get_provider().calendar()[-1]
    assert {"sig_analysis/ic.pkl", "portfolio_analysis/report_normal_1day.pkl"} <= \
        set(combined.list_artifacts(recursive=True))

    # a rerun needs no cleanup: new window runs and a new combined run beside the old ones
    result = rolling(tiny_market, store, "--step", "80", "--horizon", "1", "--rtype", "sliding")
    assert result.exit_code == 0, result.output
    qexp.init(uri=str(store))
    assert len(runs("rolling_models")) == 4 + 2 and len(runs("rolling")) == 2


def test_rolling_bad_input(tiny_market, tmp_path, monkeypatch):
    from qexp_data.handler import DataHandlerLP

    def no_features(self, *a, **k):
        raise AssertionError("features computed for a config that cannot roll")

    monkeypatch.setattr(DataHandlerLP, "setup_data", no_features)
    result = rolling(tiny_market, tmp_path / "runs", "--step", "0")
    assert result.exit_code == 1 and "step must be a positive" in result.output
    result = rolling(tiny_market, tmp_path / "runs", "--set", "task.dataset.kwargs.segments.test=[2030-01-01, 2030-06-30]")
    assert result.exit_code == 1 and "segments.test: starts 2030-01-01, after the last trading day" in result.output
    result = rolling(tiny_market, tmp_path / "runs", "--set", "task.dataset.kwargs.segments=__DROP__")
    assert result.exit_code == 1 and "task.dataset.kwargs.segments" in result.output
    assert "rolling_models" not in (qexp.init(uri=str(tmp_path / "runs")) or R.list_experiments())


def test_qlib_module_paths_resolve(calendar_provider):
    rg = init_instance_by_config({"class": "RollingGen", "module_path": "qlib.workflow.task.gen",
                                  "kwargs": {"step": 5, "rtype": "sliding"}})
    from qexp.task import RollingGen
    assert isinstance(rg, RollingGen) and rg.step == 5
    from qexp.config import get_callable_kwargs
    from qexp.ens import AverageEnsemble, RollingEnsemble
    from qexp.online import OnlineManager, OnlineToolR, PredUpdater
    from qexp.task import RecorderCollector, TaskManager
    from qexp.trainer import DelayTrainerRM, TrainerR
    for path, cls in [("qlib.model.trainer.TrainerR", TrainerR), ("qlib.model.trainer.DelayTrainerRM", DelayTrainerRM),
                      ("qlib.model.ens.ensemble.RollingEnsemble", RollingEnsemble),
                      ("qlib.model.ens.AverageEnsemble", AverageEnsemble),
                      ("qlib.workflow.online.manager.OnlineManager", OnlineManager),
                      ("qlib.workflow.online.utils.OnlineToolR", OnlineToolR),
                      ("qlib.workflow.online.update.PredUpdater", PredUpdater),
                      ("qlib.workflow.task.collect.RecorderCollector", RecorderCollector),
                      ("qlib.workflow.task.manage.TaskManager", TaskManager)]:
        assert get_callable_kwargs(path)[0] is cls, path
    ens = init_instance_by_config("qlib.model.ens.ensemble.RollingEnsemble")
    assert isinstance(ens, RollingEnsemble)
    trainer = init_instance_by_config({"class": "TrainerR", "module_path": "qlib.model.trainer",
                                       "kwargs": {"experiment_name": "x"}})
    assert isinstance(trainer, TrainerR) and trainer.experiment_name == "x"


def test_window_ic():
    from qexp.task.rolling import window_ic
    idx = pd.MultiIndex.from_product([pd.to_datetime(["2020-01-02", "2020-01-03"]), ["A", "B", "C"]],
                                     names=["datetime", "instrument"])
    pred = pd.DataFrame({"score": [1.0, 2.0, 3.0, 3.0, 2.0, 1.0]}, index=idx)
    label = pd.DataFrame({"LABEL0": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]}, index=idx)
    assert window_ic(pred, label) == pytest.approx(0.0)  # +1 on day one, -1 on day two
    assert window_ic(pred.iloc[:3], label) == pytest.approx(1.0)


def test_rolling_requires_a_positive_horizon_and_known_rtype(tmp_path):
    from qexp.task.rolling import Rolling
    with pytest.raises(ConfigError, match="horizon"):
        Rolling(CONFIG, horizon=-1)
    with pytest.raises(ConfigError, match="rtype"):
        Rolling(CONFIG, rtype="rolling")


def test_shared_handler_refits_on_a_moved_window(tiny_market, tmp_path):
    import copy

    from qexp.task.utils import forget_shared_handlers, share_handler, shared_handler

    from .tasks import HANDLER
    qexp.init(uri=str(tmp_path / "runs"), provider_uri=str(tiny_market))
    conf = copy.deepcopy(HANDLER)
    conf["kwargs"]["infer_processors"] = [{"class": "ZScoreNorm", "kwargs": {
        "fields_group": "feature", "fit_start_time": "2018-01-01", "fit_end_time": "2018-06-30"}}]
    handler = init_instance_by_config(conf)
    ref = share_handler(handler, "k1", tmp_path / "h.pkl", dump=True)
    assert (tmp_path / "h.pkl").exists()
    same = init_instance_by_config(ref)
    assert same is handler
    moved = shared_handler("k1", fit_start_time="2018-07-01", fit_end_time="2018-12-31")
    assert moved is not handler and moved._data is handler._data  # the raw features are shared
    assert pd.Timestamp(moved.infer_processors[0].fit_start_time) == pd.Timestamp("2018-07-01")
    assert pd.Timestamp(handler.infer_processors[0].fit_start_time) == pd.Timestamp("2018-01-01")
    a, b = handler.fetch(col_set="feature"), moved.fetch(col_set="feature")
    assert a.shape == b.shape and not a.equals(b)
    # another process (here: after forgetting) loads it once from the pickle
    forget_shared_handlers()
    loaded = init_instance_by_config(ref)
    assert loaded is not handler and loaded.fetch(col_set="feature").equals(a)
    assert init_instance_by_config(ref) is loaded
    forget_shared_handlers()
    with pytest.raises(ConfigError, match="not held by this process"):
        init_instance_by_config({**ref, "kwargs": {"key": "nope"}})


@pytest.mark.slow
def test_rolling_on_a_process_pool(tiny_market, tmp_path):
    from qexp.task.rolling import Rolling
    store = tmp_path / "runs"
    overrides = [f"qlib_init.provider_uri={tiny_market}", *TINY]
    rec = Rolling(CONFIG, exp_name="pp", horizon=1, step=40, executor="process://2", uri=str(store),
                  overrides=overrides).run()
    assert list((store / ".qexp" / "handlers").glob("*.pkl*")) == []  # the workers' pickle is gone after them
    local = Rolling(CONFIG, exp_name="loc", horizon=1, step=40, uri=str(store), overrides=overrides).run()
    a, b = rec.load_object("pred.pkl"), local.load_object("pred.pkl")
    pd.testing.assert_frame_equal(a, b)
    for key in SIGNAL_KEYS + PORT_KEYS:
        assert math.isfinite(rec.list_metrics()[key]), key


@pytest.mark.slow
def test_rolling_command_on_a_process_pool(tiny_market, tmp_path):
    import os
    store = tmp_path / "runs"
    pid_model = ["--set", "task.model.class=PidModel", "--set", "task.model.module_path=tests.task.helpers"]
    result = rolling(tiny_market, store, "--step", "80", "--horizon", "1", "--executor", "process://2", *pid_model)
    assert result.exit_code == 0, result.output
    assert "2 windows in experiment rolling_models" in result.output and "rolling/IC" in result.output
    qexp.init(uri=str(store))
    windows = runs("rolling_models")
    pids = {w.list_tags()["fit_pid"] for w in windows}
    assert len(windows) == 2 and str(os.getpid()) not in pids  # fitted in the pool's worker processes
    assert list((store / ".qexp" / "handlers").glob("*.pkl*")) == []
    (combined,) = runs("rolling")
    metrics = combined.list_metrics()
    for key in SIGNAL_KEYS + PORT_KEYS:
        assert math.isfinite(metrics[key]), key
    local = rolling(tiny_market, tmp_path / "local", "--step", "80", "--horizon", "1", *pid_model)
    assert local.exit_code == 0, local.output
    qexp.init(uri=str(tmp_path / "local"))
    (here,) = runs("rolling")
    assert {w.list_tags()["fit_pid"] for w in runs("rolling_models")} == {str(os.getpid())}
    pd.testing.assert_frame_equal(here.load_object("pred.pkl"), combined.load_object("pred.pkl"))


def test_roll_fit_window_tasks_refit_the_shared_handler(tiny_market, tmp_path):
    from qexp.task.rolling import Rolling
    from qexp.task.utils import forget_shared_handlers
    rolling = Rolling(CONFIG, horizon=1, step=80, uri=str(tmp_path / "runs"), roll_fit_window=True,
                      overrides=[f"qlib_init.provider_uri={tiny_market}", *TINY,
                                 "task.dataset.kwargs.handler.kwargs.infer_processors=[{class: RobustZScoreNorm, "
                                 "kwargs: {fields_group: feature, clip_outlier: true}}]"])
    tasks = rolling.get_task_list()
    assert len(tasks) == 2
    datasets = []
    for t in tasks:
        handler = t["dataset"]["kwargs"]["handler"]
        assert handler["class"] == "shared_handler"
        assert (handler["kwargs"]["fit_start_time"], handler["kwargs"]["fit_end_time"]) == \
            t["dataset"]["kwargs"]["segments"]["train"]
        datasets.append(init_instance_by_config(t["dataset"]))
    a, b = (d.handler for d in datasets)
    assert a._data is b._data  # one feature computation, two fit windows
    assert a.infer_processors[0].fit_end_time != b.infer_processors[0].fit_end_time
    assert not a.fetch(col_set="feature").equals(b.fetch(col_set="feature"))
    forget_shared_handlers()


def _synth(dst, seed):
    from qexp_data.synth import SynthParams, write_synth
    write_synth(dst, SynthParams(instruments=12, start="2018-01-01", end="2019-12-31", seed=seed))


def test_a_second_rolling_in_the_same_process_reads_the_data_as_it_is_then(tmp_path):
    """The shared handler was kept per process for good: a rolling after the data changed reused the old
    features (and labels) and gave the first run's results again."""
    from qexp.task.rolling import Rolling
    from qexp.task.utils import held_handler_keys
    market = tmp_path / "market"
    _synth(market, seed=11)
    overrides = [f"qlib_init.provider_uri={market}", *TINY]
    first = Rolling(CONFIG, exp_name="r1", horizon=1, step=60, uri=str(tmp_path / "runs"), overrides=overrides)
    first.run()
    assert held_handler_keys() == []  # released at the end of run()
    _synth(market, seed=12)  # the data is imported again over the same folder
    second = Rolling(CONFIG, exp_name="r2", horizon=1, step=60, uri=str(tmp_path / "runs"), overrides=overrides)
    second.run()
    assert len(first.window_ics) == len(second.window_ics) >= 2
    assert all(a != pytest.approx(b, abs=1e-9) for a, b in zip(first.window_ics, second.window_ics))


def test_workers_reload_a_rewritten_handler_pickle_and_drop_a_removed_one(tiny_market, tmp_path):
    import copy
    import os

    from qexp.task import utils
    from qexp.task.utils import forget_shared_handlers, held_handler_keys, share_handler, shared_handler

    from .tasks import HANDLER
    qexp.init(uri=str(tmp_path / "runs"), provider_uri=str(tiny_market))
    path = tmp_path / "h.pkl"
    h1 = init_instance_by_config(copy.deepcopy(HANDLER))
    ref = share_handler(h1, "k", path, dump=True)
    forget_shared_handlers()  # from here on this process plays a worker: it loads the pickle
    loaded = shared_handler(**ref["kwargs"])
    assert shared_handler(**ref["kwargs"]) is loaded and held_handler_keys() == ["k"]
    assert utils._watcher is not None and utils._watcher.is_alive()  # it will notice the pickle go
    # the driver builds the handler again (other data) and rewrites the pickle under the same key
    conf = copy.deepcopy(HANDLER)
    conf["kwargs"]["end_time"] = "2019-06-30"
    h2 = init_instance_by_config(conf)
    share_handler(h2, "other", path, dump=True, overwrite=True)
    os.utime(path, ns=(1, 1))  # a rewrite within the clock's resolution still changes the size
    again = shared_handler(**ref["kwargs"])
    assert again is not loaded and again.fetch().shape == h2.fetch().shape != loaded.fetch().shape
    path.unlink()  # the driver is done with it
    with utils._shared_lock:
        assert utils.drop_stale_handlers() == ["k"]
    assert "k" not in held_handler_keys()
    forget_shared_handlers()
