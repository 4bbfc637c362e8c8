"""Stores for the UI tests, filled the way users fill them: two LightGBM workflow runs (``qexp run`` on a
tiny synthetic market, with backtests), a sweep-like parent with 30 trial children, a real ``qexp rolling``
(4 windows), runs with markup in their names and params and non-finite metric values, and (started by the
tests) a running run that logs metrics without calling flush() and a killed run."""
from __future__ import annotations

import atexit
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import qexp
import qexp.ext
from qexp import R

REPO = Path(__file__).resolve().parents[2]
LGB158 = REPO / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml"
WRITER = Path(__file__).with_name("live_writer.py")
PLUGINS = "file,data,records,models,mlflow,wandb,ui"

# the LightGBM example moved onto a 30-stock market of 2016-2019, trained briefly on one thread
SMALL = [
    "data_handler_config.start_time=2016-01-01", "data_handler_config.end_time=2019-12-31",
    "data_handler_config.fit_start_time=2016-01-01", "data_handler_config.fit_end_time=2017-12-31",
    "task.dataset.kwargs.handler.kwargs.start_time=2016-01-01",
    "task.dataset.kwargs.handler.kwargs.end_time=2019-12-31",
    "task.dataset.kwargs.handler.kwargs.fit_start_time=2016-01-01",
    "task.dataset.kwargs.handler.kwargs.fit_end_time=2017-12-31",
    "task.dataset.kwargs.segments.train=[2016-01-01, 2017-12-31]",
    "task.dataset.kwargs.segments.valid=[2018-01-01, 2018-12-31]",
    "task.dataset.kwargs.segments.test=[2019-01-01, 2019-12-31]",
    "task.record.2.kwargs.config.backtest.start_time=2019-01-01",
    "task.record.2.kwargs.config.backtest.end_time=2019-12-31",
    "task.record.2.kwargs.config.strategy.kwargs.topk=8",
    "task.record.2.kwargs.config.strategy.kwargs.n_drop=2",
    "task.model.kwargs.num_boost_round=30", "task.model.kwargs.num_threads=1",
    "task.model.kwargs.lambda_l1=1.0", "task.model.kwargs.lambda_l2=1.0",
]
LGB_VARIANTS = {"lgb-fast": ["task.model.kwargs.learning_rate=0.2", "task.model.kwargs.num_leaves=31"],
                "lgb-slow": ["task.model.kwargs.learning_rate=0.05", "task.model.kwargs.num_leaves=7"]}


def make_market(folder: Path) -> Path:
    from qexp_data.synth import SynthParams, write_synth
    write_synth(folder, SynthParams(instruments=30, start="2016-01-01", end="2019-12-31", seed=7))
    return folder


def workflow_runs(uri: str, market: Path) -> dict[str, str]:
    """Two ``qexp run`` workflows (LightGBM + Alpha158 + signal/portfolio records) -> {name: run id}."""
    from click.testing import CliRunner

    from qexp.cli.main import get_cli
    ids = {}
    for name, extra in LGB_VARIANTS.items():
        args = ["run", str(LGB158), "--uri", uri, "--experiment-name", "workflow",
                "--set", f"qlib_init.provider_uri={market}"]
        for s in SMALL + extra:
            args += ["--set", s]
        res = CliRunner().invoke(get_cli(), args, catch_exceptions=False)
        assert res.exit_code == 0, res.output[-3000:]
        run_id = next(line.split()[2] for line in res.output.splitlines() if line.startswith("run id:"))
        qexp.ext.create_manager(uri).get_recorder_by_id(run_id).set_tags(**{"mlflow.runName": name})
        ids[name] = run_id
    return ids


def sweep_runs(uri: str, n: int = 30) -> tuple[str, list[str]]:
    """A sweep as the sweep engine records it: parent ``sweep-lgb`` tagged ``qexp.sweep_id``, one child per
    trial with the sampled params, its objective (IC) and a short validation-loss history."""
    qexp.init(uri=uri)
    rng = random.Random(3)
    sweep_id = "sw-lgb-0001"
    children = []
    with R.start(experiment_name="sweep", recorder_name="sweep-lgb"):
        parent = R.get_recorder()
        R.set_tags(**{"qexp.sweep_id": sweep_id, "qexp.sweep.metric": "IC", "qexp.sweep.goal": "maximize",
                      "qexp.sweep.method": "tpe"})
        best = -1.0
        for i in range(n):
            lr = 10 ** rng.uniform(-2.3, -0.5)
            leaves = rng.choice([7, 15, 31, 63])
            l1 = rng.uniform(0, 300)
            state = "FAIL" if i == 17 else ("PRUNED" if i in (5, 22) else "COMPLETE")
            try:
                with R.start(recorder_name=f"trial-{i}"):
                    rec = R.get_recorder()
                    R.log_params(**{"model.kwargs.learning_rate": round(lr, 5), "model.kwargs.num_leaves": leaves,
                                    "model.kwargs.lambda_l1": round(l1, 2), "model.class": "LGBModel"})
                    R.set_tags(**{"qexp.sweep_id": sweep_id, "qexp.trial": i, "qexp.trial_state": state})
                    for step in range(10):
                        R.log_metrics(step=step, **{"l2.valid": 1.0 - 0.002 * step * (1 + lr) + rng.gauss(0, 1e-4)})
                    if state == "FAIL":
                        raise FloatingPointError("trial diverged: l2.valid is NaN")
                    ic = 0.045 - 0.012 * abs(math.log10(lr) + 1.2) - 0.00004 * l1 + 0.002 * (leaves == 31)
                    ic += rng.gauss(0, 0.002)
                    R.log_metrics(IC=ic, ICIR=ic * 9.5)
                    best = max(best, ic)
            except FloatingPointError:
                pass  # the trial's run ends FAILED, the sweep goes on
            R.log_metrics(step=i, **{"best/IC": best})
            children.append(rec.id)
    return parent.id, children


ROLLING_CONFIG = REPO / "examples" / "rolling" / "workflow_config_lightgbm_Alpha158_rolling.yaml"
# tests/task/test_rolling.py's tiny rolling: 2018 train, 2019H1 valid, 2019H2 test rolled every 40 days
ROLLING_TINY = [
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
    "task.record.2.kwargs.config.strategy.kwargs.topk=8",
    "task.record.2.kwargs.config.strategy.kwargs.n_drop=2",
]


def rolling_run(uri: str, market: Path) -> dict:
    """A real ``qexp rolling`` on the tiny market: 4 window runs in experiment ``rolling_models`` and the
    combined run in ``rolling`` -> {"rolling": combined run id, "windows": [window run ids], "rolling_ic": IC}."""
    from click.testing import CliRunner

    from qexp.cli.main import get_cli
    args = ["rolling", str(ROLLING_CONFIG), "--uri", uri, "--step", "40", "--horizon", "1",
            "--set", f"qlib_init.provider_uri={market}"]
    for item in ROLLING_TINY:
        args += ["--set", item]
    res = CliRunner().invoke(get_cli(), args, catch_exceptions=False)
    assert res.exit_code == 0, res.output[-3000:]
    m = qexp.ext.create_manager(uri)
    combined = m.search_rows(None, filter_string="tags.`qexp.rolling` = 'rolling_models'")
    assert len(combined) == 1, combined
    row = combined[0]
    windows = [row["params"][f"rolling.window.{i}.run_id"] for i in range(int(row["params"]["rolling.windows"]))]
    return {"rolling": row["run_id"], "windows": windows, "rolling_ic": row["metrics"]["IC"]}


ODD_NAME = 'odd <!--<script> "run" </script><b>x</b>'


def odd_runs(uri: str) -> dict:
    """Runs whose names, params and metric keys hold markup, and metrics whose values are NaN or infinite."""
    qexp.init(uri=uri)
    ids = []
    for i in range(2):
        with R.start(experiment_name="odd", recorder_name=f"{ODD_NAME} {i}"):
            R.log_params(**{"note": "<!--<script>alert(1)</script>", "kind": f"<b>k{i}</b>", "lr": 0.1 * (i + 1)})
            markup_keys = not qexp.ext.uri_scheme(uri).startswith("sqlite")  # MLflow refuses '<' in a name
            for step in range(12):
                v = math.inf if step == 4 else (-math.inf if step == 7 else (math.nan if step == 9 else step * (i + 1.0)))
                R.log_metrics(step=step, curve=v, **({"k<i>": float(step)} if markup_keys else {}))
            R.log_metrics(last_nan=math.nan, up=math.inf)
            ids.append(R.get_recorder().id)
    return {"odd": ids}


def build(uri: str, market: Path) -> dict:
    """Everything but the live and killed runs."""
    info: dict = {"workflow": workflow_runs(uri, market)}
    info["sweep"], info["trials"] = sweep_runs(uri)
    info.update(rolling_run(uri, market))
    info.update(odd_runs(uri))
    return info


_CACHE_DIR: str | None = None


def cache_dir_for_tests() -> str:
    """One temporary QEXP_CACHE_DIR for every process the UI tests start (removed at exit): nothing they do
    reads or writes the user's ~/.cache/qexp."""
    global _CACHE_DIR
    if _CACHE_DIR is None:
        _CACHE_DIR = tempfile.mkdtemp(prefix="qexp-ui-tests-cache-")
        atexit.register(shutil.rmtree, _CACHE_DIR, True)
    return _CACHE_DIR


def writer_env(**extra: str) -> dict[str, str]:
    """The environment of the processes the tests start: the UI's plugins, a fast heartbeat, no git
    autologging, and a temporary cache folder."""
    env = dict(os.environ)
    env.update({"QEXP_LOAD_PLUGINS": PLUGINS, "QEXP_HEARTBEAT_INTERVAL": "0.3", "QEXP_AUTOLOG_GIT": "0",
                "PYTHONPATH": str(REPO), "QEXP_CACHE_DIR": cache_dir_for_tests()}, **extra)
    return env


def start_writer(uri: str, folder: Path, mode: str) -> tuple[subprocess.Popen, str]:
    """A process that records a run in experiment ``live``: ``mode`` = "live" keeps logging, "kill" waits
    to be killed. Returns the process and the run id (once its first metrics are in the store)."""
    folder.mkdir(parents=True, exist_ok=True)
    ready = folder / f"{mode}.ready"
    proc = subprocess.Popen([sys.executable, str(WRITER), uri, str(folder), mode], env=writer_env(),
                            stdout=subprocess.DEVNULL, stderr=open(folder / f"{mode}.log", "w"))
    deadline = time.time() + 120
    while not ready.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"the {mode} writer did not start: {(folder / f'{mode}.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return proc, ready.read_text().strip()


if __name__ == "__main__":  # python tests/ui/stores.py URI MARKET_DIR: build a store, print its ids as JSON
    import json
    folder = Path(sys.argv[2])
    if not (folder / "calendars").exists():
        make_market(folder)
    print("QEXP-UI-STORE " + json.dumps(build(sys.argv[1], folder)))
