"""Qlib 0.9.7's own ``qlib.contrib.rolling`` on a qexp data folder, timed by phase (the peer of bench_rolling.py).

Runs in a separate Python that has pyqlib 0.9.7 installed (``--qlib-python`` of bench_rolling.py):

    python _qlib_rolling_peer.py DATA CONFIG STEP HORIZON WORKDIR OUT.json [TASK_EXT_JSON [TRAIN_START]]

DATA is a Qlib-format folder written by ``qexp data import-csv`` (calendars/, instruments/, features/*.day.bin),
which pyqlib reads as its own. CONFIG is the workflow YAML (copied into WORKDIR first: Qlib pickles its
handler cache beside the config and keeps mlruns in the working folder). TASK_EXT_JSON is merged into the task
(Qlib's ``task_ext_conf``), as qexp's ``--set`` items are on the other side. Prints nothing; writes OUT.json with
each task's segments, each window's IC, the combined run's metrics and the seconds of each phase.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path


def _seg(seg):  # noqa: ANN001, ANN202
    return [None if s is None else str(s)[:10] for s in seg]


def window_ic(pred, label) -> float:  # noqa: ANN001
    """Mean over days of the cross-sectional Pearson correlation (qexp's rolling/IC, Qlib's SigAnaRecord IC)."""
    import pandas as pd
    p = pred.iloc[:, 0] if isinstance(pred, pd.DataFrame) else pred
    lab = label.iloc[:, 0] if isinstance(label, pd.DataFrame) else label
    df = pd.concat([p.rename("pred"), lab.rename("label")], axis=1, join="inner").dropna()
    ic = df.groupby(level="datetime").apply(lambda x: x["pred"].corr(x["label"]))
    return float(ic.mean())


def main() -> int:
    data, config, step, horizon, workdir, out = sys.argv[1:7]
    task_ext = json.loads(sys.argv[7]) if len(sys.argv) > 7 and sys.argv[7] else None
    train_start = sys.argv[8] if len(sys.argv) > 8 and sys.argv[8] else None
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    conf = work / Path(config).name
    shutil.copy(config, conf)
    os.chdir(work)
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # Qlib 0.9.7 keeps its runs in ./mlruns files
    import qlib
    from qlib.contrib.model.gbdt import LGBModel
    from qlib.contrib.rolling.base import Rolling
    from qlib.workflow import R

    t_all = time.perf_counter()
    qlib.init(provider_uri=data, region="us", kernels=1,
              exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": "file:" + str(work / "mlruns"), "default_exp_name": "Experiment"}})
    init_s = time.perf_counter() - t_all
    fits: list[float] = []
    real_fit = LGBModel.fit

    def timed_fit(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        t0 = time.perf_counter()
        try:
            return real_fit(self, *args, **kwargs)
        finally:
            fits.append(time.perf_counter() - t0)

    LGBModel.fit = timed_fit
    rolling = Rolling(str(conf), exp_name="qlib_rolling", horizon=int(horizon), step=int(step),
                      task_ext_conf=task_ext, rolling_exp="qlib_rolling_models", train_start=train_start)
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    tasks = rolling.get_task_list()  # the handler is built and pickled here (Qlib's handler cache)
    phases["handler (features) + task list"] = time.perf_counter() - t0
    rolling.get_task_list = lambda: tasks  # the run below must not build it a second time
    t0 = time.perf_counter()
    rolling._train_rolling_tasks()
    phases["train the windows (datasets, fits, SignalRecord)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rolling._ens_rolling()
    phases["ensemble"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    records_error = None
    try:
        rolling._update_rolling_rec()
    except Exception as exc:  # a record Qlib cannot run here: the ICs are still compared
        records_error = f"{type(exc).__name__}: {exc}"
    phases["records on the combined run"] = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    recs = R.list_recorders(experiment_name="qlib_rolling_models")
    windows = []
    for rec in recs.values():
        task = rec.load_object("task")
        segs = task["dataset"]["kwargs"]["segments"]
        windows.append({"segments": {k: _seg(v) for k, v in segs.items()},
                        "ic": window_ic(rec.load_object("pred.pkl"), rec.load_object("label.pkl"))})
    windows.sort(key=lambda w: w["segments"]["test"][0])
    final = R.get_recorder(experiment_name="qlib_rolling", recorder_id=rolling._rid)
    metrics = {k: float(v) for k, v in final.list_metrics().items()}
    if "IC" not in metrics:  # SigAnaRecord did not run: the IC of the combined predictions, computed as it does
        metrics["IC"] = window_ic(final.load_object("pred.pkl"), final.load_object("label.pkl"))
    result = {"qlib_version": qlib.__version__, "tasks": [{k: _seg(v) for k, v in t["dataset"]["kwargs"]["segments"].items()}
                                                           for t in tasks],
              "windows": windows, "metrics": metrics, "init_s": init_s, "phases": phases, "fits": fits,
              "total": total, "records_error": records_error}
    Path(out).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
