"""Rolling LightGBM trained by `qexp worker` processes pulling one task pool (Qlib's TrainerRM with workers).

    python examples/rolling/trainer_rm_workers.py [--uri ./qexp_runs] [--workers 2] [--step 60]

The driver rolls the task of the Alpha158 example (workflow_config_lightgbm_Alpha158_rolling.yaml, the built-in
synthetic market), puts the window tasks into the pool "rolling_rm" of the task store beside the tracking store
(DIR/.qexp/tasks.sqlite, no server needed) and waits. It starts the workers itself here; by hand it is

    qexp worker --pool rolling_rm --uri DIR        # in as many terminals (or machines) as you like
    qexp tasks stat --pool rolling_rm --uri DIR    # waiting / running / done

Each task is fetched by exactly one worker; a worker killed mid-task gives its task back when its 30 s lease ends,
Ctrl-C gives it back at once. On several machines, point every worker and the driver at one PostgreSQL task store
(--tasks-uri postgresql://USER@HOST:5432/DB, or $QEXP_TASKS_URI) and a tracking store they all reach.
The windows' predictions are joined with RollingEnsemble, as `qexp rolling` does.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).parent / "workflow_config_lightgbm_Alpha158_rolling.yaml"
POOL = "rolling_rm"


def main(uri: str, workers: int = 2, config: str = str(CONFIG), extra: list[str] | None = None, step: int = 60):
    import qexp
    from qexp.ens import RollingEnsemble
    from qexp.task import RecorderCollector, RollingGen, TaskManager, task_generator
    from qexp.task.rolling import window_ic
    from qexp.trainer import TrainerRM
    from qexp.workflow import init_settings, load_workflow

    wf = load_workflow(config, extra or [])
    qexp.init(**init_settings(wf.config, uri))
    tasks = task_generator(wf.config["task"], RollingGen(step=step, trunc_days=2))
    for t in tasks:
        t["record"] = ["qlib.workflow.record_temp.SignalRecord"]  # the analysis runs on the joined predictions
    print(f"{len(tasks)} window tasks into pool {POOL!r} of {TaskManager(POOL).uri}")

    settings = qexp.get_settings()
    cmd = [sys.executable, "-m", "qexp", "worker", "--pool", POOL, "--uri", settings["uri"]]
    if settings.get("provider_uri"):
        cmd += ["--provider-uri", str(settings["provider_uri"])]
    if settings.get("region"):
        cmd += ["--region", str(settings["region"])]
    # the tasks are in the pool before the workers start (the trainer only waits: skip_run_task)
    TaskManager(POOL).create_task(tasks)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(workers)]
    recs = TrainerRM(experiment_name=POOL, skip_run_task=True)(tasks)
    outs = [p.communicate()[0] for p in procs]
    for i, (p, out) in enumerate(zip(procs, outs)):
        if p.returncode != 0:
            raise SystemExit(f"worker {i} failed:\n{out}")
        print(f"worker {i}: {out.strip().splitlines()[-1]}")

    parts = RecorderCollector(experiment=lambda: recs, artifacts_key=["pred", "label"],
                              artifacts_path={"pred": "pred.pkl", "label": "label.pkl"}).collect()
    pred = RollingEnsemble()(parts["pred"])
    label = RollingEnsemble()(parts["label"])
    for i, r in enumerate(recs):
        test = r.load_object("task")["dataset"]["kwargs"]["segments"]["test"]
        print(f"window {i}: test {test[0].date()}..{test[1].date() if test[1] is not None else 'open'}  "
              f"IC {window_ic(parts['pred'][r.id], parts['label'][r.id]):.4f}  run {r.id}")
    ic = window_ic(pred, label)
    print(f"joined predictions: {len(pred)} rows, IC {ic:.4f}")
    return recs, pred, ic


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", default=os.environ.get("QEXP_URI", "./qexp_runs"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--step", type=int, default=60)
    a = ap.parse_args()
    main(os.path.abspath(a.uri), a.workers, step=a.step)
