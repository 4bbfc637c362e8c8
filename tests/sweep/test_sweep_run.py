"""Sweeps on a tiny synthetic market: child runs under a parent run, pruning, failures, grid, resume."""
from __future__ import annotations

import concurrent.futures as cf
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import qexp
from qexp import R
from qexp.ext import Executor
from qexp_sweep.driver import run_sweep
from tests.executors.helpers import REPO, child_env
from tests.services import import_client, service_missing
from tests.sweep.spaces import GRID_2X3, RANDOM, TPE, write_space

pytest.importorskip("optuna")


def sweep_runs(store, experiment="tiny"):
    qexp.init(uri=str(store))
    exp = R.get_exp(experiment_name=experiment, create=False)
    df = R.search_records([exp.id])
    return [R.get_recorder(recorder_id=rid) for rid in df["run_id"]]


def split(recs):
    parents = [r for r in recs if "qexp.trial" not in r.list_tags()]
    children = [r for r in recs if "qexp.trial" in r.list_tags()]
    return parents, children


@pytest.mark.slow
def test_twelve_tpe_trials_in_worker_processes(tiny_cfg, tmp_path):
    cfg_path, _ = tiny_cfg
    space = write_space(tmp_path, **TPE)
    store = tmp_path / "store"
    r = CliRunner().invoke(_cli(), ["sweep", str(cfg_path), "--space", space, "--trials", "12", "--executor",
                                    "process://2", "--uri", str(store)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "best trial" in r.output and re.search(r"top \d+ trials by IC", r.output) and "reproduce: qexp run" in r.output
    assert "parameter importance" in r.output
    parents, children = split(sweep_runs(store))
    assert len(parents) == 1 and len(children) == 12
    parent = parents[0]
    sweep_id = parent.list_tags()["qexp.sweep_id"]
    assert parent.status == "FINISHED" and parent.list_tags()["qexp.sweep.best_run_id"] in {c.id for c in children}
    assert sorted(int(c.list_tags()["qexp.trial"]) for c in children) == list(range(12))
    for c in children:
        tags = c.list_tags()
        assert tags["mlflow.parentRunId"] == parent.id and tags["qexp.sweep_id"] == sweep_id
        assert c.status == "FINISHED" and tags["qexp.trial_state"] in ("COMPLETE", "PRUNED")
    assert (store / ".qexp" / "sweeps.sqlite").is_file()
    assert "best/IC" in parent.list_metrics()


def test_grid_runs_every_point_once_and_reuses_the_dataset(tiny_cfg, tmp_path):
    cfg_path, _ = tiny_cfg
    space = write_space(tmp_path, **GRID_2X3)
    store = tmp_path / "store"
    result = run_sweep(str(cfg_path), space, uri=str(store))
    assert result.ran == 6 and len(result.trials) == 6
    points = sorted((t.values["task.model.kwargs.num_leaves"], t.values["task.model.kwargs.learning_rate"])
                    for t in result.trials)
    assert points == [(3, 0.05), (3, 0.1), (3, 0.2), (7, 0.05), (7, 0.1), (7, 0.2)]
    assert [t.dataset_reused for t in sorted(result.trials, key=lambda t: t.number)] == [False] + [True] * 5
    _, children = split(sweep_runs(store))
    assert len(children) == 6 and all(c.status == "FINISHED" for c in children)
    params = {(c.list_params()["model.kwargs.num_leaves"], c.list_params()["model.kwargs.learning_rate"])
              for c in children}
    assert len(params) == 6  # each trial trained its own point
    again = run_sweep(str(cfg_path), space, uri=str(store), resume=result.sweep_id)
    assert again.ran == 0  # every point ran: nothing is run twice


def test_pruned_trials_finish_and_only_exceptions_fail(tiny_cfg, tmp_path):
    cfg_path, _ = tiny_cfg
    # a tiny learning rate keeps the training loss high at every step: the median pruner stops that trial
    space = write_space(tmp_path, method="grid", metric={"name": "IC", "goal": "maximize"},
                        parameters={"task.model.kwargs.learning_rate": {"values": [0.3, 0.0001]},
                                    "task.model.kwargs.early_stopping_rounds": {"value": 100}},
                        early_terminate={"type": "median", "metric": "l2.train", "startup_trials": 1, "min_iter": 3})
    store = tmp_path / "store"
    result = run_sweep(str(cfg_path), space, uri=str(store))
    states = {t.values["task.model.kwargs.learning_rate"]: t for t in result.trials}
    assert states[0.3].state == "COMPLETE" and states[0.0001].state == "PRUNED"
    assert states[0.0001].pruned_at is not None and states[0.0001].pruned_at >= 3
    assert states[0.0001].dataset_reused  # a pruned trial reused the dataset too (it said False: reported after the fit)
    bad = write_space(tmp_path, method="grid", metric={"name": "IC", "goal": "maximize"},
                      parameters={"task.model.kwargs.loss": {"values": ["mse", "huber"]}})
    failed = run_sweep(str(cfg_path), bad, uri=str(store))
    by_loss = {t.values["task.model.kwargs.loss"]: t for t in failed.trials}
    assert by_loss["mse"].state == "COMPLETE" and by_loss["huber"].state == "FAIL"
    assert "unknown loss 'huber'" in by_loss["huber"].error
    runs = {r.list_tags().get("qexp.trial_state"): r for r in split(sweep_runs(store))[1]}
    assert runs["PRUNED"].status == "FINISHED"
    # the pruned fit stopped where it was pruned (it trained all its rounds and was pruned afterwards)
    steps = runs["PRUNED"].get_metric_history("l2.train")["step"].tolist()
    assert steps == list(range(states[0.0001].pruned_at + 1)) and len(steps) < 20  # num_boost_round 20
    assert runs["FAIL"].status == "FAILED" and "huber" in runs["FAIL"].list_tags()["qexp.failure_reason"]


@pytest.mark.slow
def test_resume_after_a_killed_driver_runs_only_the_missing_trials(tiny_cfg, tmp_path):
    import optuna
    cfg_path, _ = tiny_cfg
    space = write_space(tmp_path, **RANDOM)
    store = tmp_path / "store"
    driver = subprocess.Popen([sys.executable, "-m", "qexp", "sweep", str(cfg_path), "--space", space, "--trials",
                               "6", "--uri", str(store)], cwd=REPO, env=child_env(QEXP_HOME=str(tmp_path / "home")),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = f"sqlite:///{store}/.qexp/sweeps.sqlite"
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and driver.poll() is None:
        time.sleep(0.5)
        try:
            (summary,) = optuna.get_all_study_summaries(db)
            study = optuna.load_study(study_name=summary.study_name, storage=db)
            done = sum(t.state.is_finished() for t in study.trials)
        except Exception:
            continue
        if done >= 2:
            break
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert 2 <= done < 6, done
    before = {t.number: t.user_attrs.get("qexp.run_id") for t in study.get_trials() if t.state.is_finished()}
    result = run_sweep(str(cfg_path), space, trials=6, uri=str(store), resume=summary.study_name)
    counted = result.trials
    # only the missing trials ran (one that finished just as the driver died is kept, not run again)
    assert len(counted) == 6 and 0 < result.ran <= 6 - len(before)
    assert {t.number: t.run_id for t in counted if t.number in before} == before  # never run again
    _, children = split(sweep_runs(store))
    finished = [c for c in children if c.status == "FINISHED"]
    assert len(finished) == 6
    assert len({c.list_tags()["qexp.trial"] for c in finished}) == 6
    assert all(c.status in ("FINISHED", "FAILED") for c in children)  # none left RUNNING
    for c in children:
        if c.status == "FAILED":
            assert "driver stopped" in c.list_tags()["qexp.failure_reason"] or "stopped without" in \
                c.list_tags()["qexp.failure_reason"]


def test_study_location(tmp_path, monkeypatch):
    from qexp_sweep.study import default_study_uri
    assert default_study_uri(str(tmp_path / "runs")) == f"sqlite:///{tmp_path / 'runs'}/.qexp/sweeps.sqlite"
    monkeypatch.setenv("QEXP_HOME", str(tmp_path / "home"))
    uri = default_study_uri("postgresql://u@db/runs")
    assert uri.startswith(f"sqlite:///{tmp_path / 'home'}/sweeps/") and uri.endswith(".sqlite")
    assert uri != default_study_uri("postgresql://u@db/other")


def _cli():
    from qexp.cli.main import get_cli
    return get_cli()


@pytest.mark.services
def test_the_study_can_live_in_postgresql(tiny_cfg, tmp_path):
    import optuna
    import_client("psycopg2")
    from qexp_sweep.study import storage
    study_uri = "postgresql://postgres@127.0.0.1:5432/test"
    try:  # only a server that is down counts as missing; any other error of the storage (driver, URL, login) fails
        socket.create_connection(("127.0.0.1", 5432), timeout=3).close()
    except OSError as exc:
        service_missing(f"PostgreSQL is not running on 127.0.0.1:5432 ({exc})")
    store = storage(study_uri)
    cfg_path, _ = tiny_cfg
    space = write_space(tmp_path, method="random", metric={"name": "IC", "goal": "maximize"},
                        parameters={"task.model.kwargs.num_leaves": {"values": [3, 7, 15]}})
    result = run_sweep(str(cfg_path), space, trials=2, uri=str(tmp_path / "store"), study_uri=study_uri)
    try:
        assert result.ran == 2 and not (tmp_path / "store" / ".qexp" / "sweeps.sqlite").exists()
        again = run_sweep(str(cfg_path), space, trials=3, uri=str(tmp_path / "store"), study_uri=study_uri,
                          resume=result.sweep_id)
        assert again.ran == 1 and len(again.trials) == 3
        assert optuna.load_study(study_name=result.sweep_id, storage=store).user_attrs["qexp"]["trials"] == 3
        assert run_sweep(str(cfg_path), space, uri=str(tmp_path / "store"), study_uri=study_uri,
                         resume=result.sweep_id).ran == 0  # the count now is 3, all done
    finally:
        optuna.delete_study(study_name=result.sweep_id, storage=store)


class _Eager(Executor):
    """Runs each call when it is submitted: every trial is done before the driver looks, as when several
    finish in the same moment on a pool."""

    uri = "eager"

    @property
    def max_workers(self) -> int:
        return 2

    def submit(self, fn, /, *args, resources=None, retries=0, key=None, **kwargs):
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def test_a_trial_that_finished_before_ctrl_c_is_kept(tiny_cfg, tmp_path):
    """Ctrl-C while the driver reported one finished trial marked the other finished one interrupted, so
    --resume ran it again."""
    import optuna
    cfg_path, _ = tiny_cfg
    space = write_space(tmp_path, method="grid", metric={"name": "IC", "goal": "maximize"},
                        parameters={"task.model.kwargs.num_leaves": {"values": [3, 7]}})
    store = tmp_path / "store"

    def echo(line):
        if line.startswith("[1/"):
            raise KeyboardInterrupt  # Ctrl-C while the first result is printed

    with pytest.raises(KeyboardInterrupt):
        run_sweep(str(cfg_path), space, uri=str(store), executor=_Eager(), echo=echo)
    db = f"sqlite:///{store}/.qexp/sweeps.sqlite"
    (summary,) = optuna.get_all_study_summaries(db)
    trials = optuna.load_study(study_name=summary.study_name, storage=db).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert not any(t.user_attrs.get("qexp.interrupted") for t in trials)
    again = run_sweep(str(cfg_path), space, uri=str(store), resume=summary.study_name)
    assert again.ran == 0 and len(again.trials) == 2


def test_a_sweeps_datasets_are_held_only_for_that_sweep(tiny_cfg, tmp_path):
    from qexp_sweep import trial
    cfg_path, cfg = tiny_cfg
    space = write_space(tmp_path, method="grid", metric={"name": "IC", "goal": "maximize"},
                        parameters={"task.model.kwargs.num_leaves": {"values": [3, 7]}})
    result = run_sweep(str(cfg_path), space, uri=str(tmp_path / "store"))
    assert [t.dataset_reused for t in result.trials] == [False, True]
    assert trial.held_sweeps() == []  # the driver's process (local executor) let go at the end
    qexp.init(uri=str(tmp_path / "store"), provider_uri=cfg["qlib_init"]["provider_uri"])
    ds_conf = cfg["task"]["dataset"]
    a, hit = trial._dataset(ds_conf, "sweep-a")
    assert not hit and trial._dataset(ds_conf, "sweep-a") == (a, True)
    trial._preparation("sweep-a")["x"] = 1
    b, hit = trial._dataset(ds_conf, "sweep-b")  # a new sweep in this worker: the old one's data goes
    assert not hit and b is not a and trial.held_sweeps() == ["sweep-b"]
    assert trial._preparation("sweep-b") == {}
    assert trial._watcher is not None and trial._watcher.is_alive()
    trial._caches["sweep-b"].used -= trial.IDLE_S + 1  # no trial of it came for IDLE_S seconds
    trial._expire()
    assert trial.held_sweeps() == []
