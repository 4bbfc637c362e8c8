"""Sweeps on a real Dask cluster (``dask_cluster``: a scheduler and two single-thread workers started as
separate processes on 127.0.0.1): TPE trials, a killed driver resumed, a grid run once; every run in the
experiment ``--experiment-name`` names."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import qexp
from qexp import R
from tests.executors.helpers import REPO, child_env, write_config
from tests.sweep.spaces import GRID_2X3, RANDOM, TPE, write_space

pytest.importorskip("optuna")
pytest.importorskip("distributed")

EXPERIMENT = "dask_sweep"


def dask_uri(cluster) -> str:
    return f"dask://127.0.0.1:{cluster.port}?timeout=30"


def sweep(*args: str):
    from qexp.cli.main import get_cli
    return CliRunner().invoke(get_cli(), ["sweep", *args], catch_exceptions=False)


def experiment_runs(store, experiment=EXPERIMENT) -> tuple[list, list]:
    """The parent runs and the trial runs of ``experiment``."""
    qexp.init(uri=str(store))
    exp = R.get_exp(experiment_name=experiment, create=False)
    recs = [R.get_recorder(recorder_id=rid) for rid in R.search_records([exp.id])["run_id"]]
    return ([r for r in recs if "qexp.trial" not in r.list_tags()],
            [r for r in recs if "qexp.trial" in r.list_tags()])


def no_runs_in(store, experiment: str) -> bool:
    qexp.init(uri=str(store))
    return experiment not in R.list_experiments() or not R.list_recorders(experiment_name=experiment)


def study(store, sweep_id: str):
    import optuna
    return optuna.load_study(study_name=sweep_id, storage=f"sqlite:///{store}/.qexp/sweeps.sqlite")


def sweep_id_of(output: str) -> str:
    m = re.search(r"sweep (\S+): ", output)
    assert m, output
    return m.group(1)


@pytest.mark.slow
def test_tpe_trials_on_the_cluster(dask_cluster, tiny_cfg, tmp_path):
    cfg_path, _ = tiny_cfg
    n = 12
    space = write_space(tmp_path, **TPE)
    store = tmp_path / "store"
    r = sweep(str(cfg_path), "--space", space, "--trials", str(n), "--executor", dask_uri(dask_cluster),
              "--experiment-name", EXPERIMENT, "--uri", str(store))
    assert r.exit_code == 0, r.output
    assert "best trial" in r.output and re.search(r"top \d+ trials by IC", r.output)
    parents, children = experiment_runs(store)
    assert len(parents) == 1 and len(children) == n
    assert no_runs_in(store, "tiny")  # the config's own experiment_name gave way to --experiment-name
    parent = parents[0]
    tags = parent.list_tags()
    sweep_id = tags["qexp.sweep_id"]
    assert parent.status == "FINISHED" and tags["qexp.sweep.trials"] == str(n)
    assert sorted(int(c.list_tags()["qexp.trial"]) for c in children) == list(range(n))
    for c in children:
        ctags = c.list_tags()
        assert ctags["mlflow.parentRunId"] == parent.id and ctags["qexp.sweep_id"] == sweep_id
        assert c.status == "FINISHED" and ctags["qexp.trial_state"] in ("COMPLETE", "PRUNED")
    # the best trial is reported: on the parent (tags, metric) and in the output, and it is the study's best
    best = study(store, sweep_id).best_trial
    assert tags["qexp.sweep.best_trial"] == str(best.number)
    assert tags["qexp.sweep.best_run_id"] == best.user_attrs["qexp.run_id"] in {c.id for c in children}
    assert parent.list_metrics()["best/IC"] == pytest.approx(best.value)
    assert f"best trial {best.number} (run {best.user_attrs['qexp.run_id'][:8]}): IC = {best.value:.6g}" in r.output
    # the trials ran in the two worker processes: each built the dataset once, every other trial reused it
    trials = study(store, sweep_id).trials
    assert sum(not t.user_attrs.get("qexp.dataset_reused") for t in trials) == 2


@pytest.mark.slow
def test_resume_after_the_driver_is_killed(dask_cluster, tiny_cfg, tmp_path):
    import optuna
    _, cfg = tiny_cfg
    n = 6
    gate = tmp_path / "gate"  # trials 0 and 1 pass; later ones wait in their open run until gate/go exists
    cfg["task"]["record"].insert(0, {"class": "Gate", "module_path": "tests.sweep.gate",
                                     "kwargs": {"folder": str(gate), "free": 2}})
    cfg_path = write_config(tmp_path / "gated.yaml", cfg)
    space = write_space(tmp_path, **RANDOM)
    store = tmp_path / "store"
    driver = subprocess.Popen([sys.executable, "-m", "qexp", "sweep", str(cfg_path), "--space", space, "--trials",
                               str(n), "--executor", dask_uri(dask_cluster), "--experiment-name", EXPERIMENT,
                               "--uri", str(store)], cwd=REPO, env=child_env(QEXP_HOME=str(tmp_path / "home")),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db = f"sqlite:///{store}/.qexp/sweeps.sqlite"
    deadline = time.time() + 240
    done, sweep_id = 0, None
    try:  # killed once two trials finished and two more wait in their runs, one on each worker
        while time.time() < deadline and driver.poll() is None:
            time.sleep(0.3)
            try:
                (summary,) = optuna.get_all_study_summaries(db)
                trials = optuna.load_study(study_name=summary.study_name, storage=db).trials
            except Exception:  # the study is not made yet
                continue
            sweep_id = summary.study_name
            done = sum(t.state.is_finished() for t in trials)
            if done >= 2 and (gate / "ticket3").exists():
                break
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        err = driver.communicate()[1]
    assert sweep_id is not None and done == 2 and (gate / "ticket3").exists(), (done, err)
    before = {t.number: t.user_attrs.get("qexp.run_id") for t in study(store, sweep_id).trials
              if t.state.is_finished()}
    assert len(before) == 2
    _, children = experiment_runs(store)
    held = {int(c.list_tags()["qexp.trial"]): c.id for c in children if c.status == "RUNNING"}
    assert len(held) == 2 and not set(held) & set(before)  # open when the driver died

    (gate / "go").touch()  # the held trials go on in the workers (to their next write) and the new ones pass
    r = sweep(str(cfg_path), "--space", space, "--resume", sweep_id, "--executor", dask_uri(dask_cluster),
              "--uri", str(store))
    assert r.exit_code == 0, r.output
    trials = study(store, sweep_id).trials
    assert {t.number: t.user_attrs.get("qexp.run_id") for t in trials if t.number in before} == before  # not rerun
    assert {t.number for t in trials if t.user_attrs.get("qexp.interrupted")} == set(held)
    parents, children = experiment_runs(store)
    assert len(parents) == 1 and parents[0].status == "FINISHED"
    assert "qexp.failure_reason" not in parents[0].list_tags()
    assert all(c.list_tags()["mlflow.parentRunId"] == parents[0].id for c in children)
    finished = [c for c in children if c.status == "FINISHED"]
    assert len(finished) == n  # as many as asked, over both drivers
    assert len({c.list_tags()["qexp.trial"] for c in finished}) == n
    failed = {int(c.list_tags()["qexp.trial"]): c.id for c in children if c.status == "FAILED"}
    assert failed == held
    assert len(children) == n + 2  # none left RUNNING
    time.sleep(2)  # the workers let go of the held trials: nothing turns back to RUNNING or FINISHED
    for c in children:
        if c.id in held.values():  # each interrupted run stays FAILED and says why
            c.refresh()
            reason = c.list_tags().get("qexp.failure_reason", "")
            assert c.status == "FAILED" and c.list_tags()["qexp.trial_state"] == "FAIL", c
            assert "cancelled by its driver" in reason or "sweep driver stopped" in reason, reason
    assert no_runs_in(store, "tiny")


def test_a_grid_runs_every_point_once_and_a_resume_runs_none(dask_cluster, tiny_cfg, tmp_path):
    cfg_path, _ = tiny_cfg
    space = write_space(tmp_path, **GRID_2X3)
    store = tmp_path / "store"
    r = sweep(str(cfg_path), "--space", space, "--executor", dask_uri(dask_cluster), "--experiment-name", EXPERIMENT,
              "--uri", str(store))
    assert r.exit_code == 0, r.output
    sweep_id = sweep_id_of(r.output)
    parents, children = experiment_runs(store)
    assert len(parents) == 1 and len(children) == 6 and all(c.status == "FINISHED" for c in children)
    assert no_runs_in(store, "tiny")
    points = sorted((int(c.list_params()["model.kwargs.num_leaves"]), float(c.list_params()["model.kwargs.learning_rate"]))
                    for c in children)
    assert points == [(3, 0.05), (3, 0.1), (3, 0.2), (7, 0.05), (7, 0.1), (7, 0.2)]  # each point exactly once
    assert sorted(int(c.list_tags()["qexp.trial"]) for c in children) == list(range(6))

    again = sweep(str(cfg_path), "--space", space, "--resume", sweep_id, "--executor", dask_uri(dask_cluster),
                  "--uri", str(store))
    assert again.exit_code == 0, again.output
    assert "6 trial(s) already done, 0 to run" in again.output
    parents, children = experiment_runs(store)
    assert len(parents) == 1 and len(children) == 6  # the resume ran nothing
    assert len(study(store, sweep_id).trials) == 6
