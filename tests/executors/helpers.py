"""Shared by the executor and sweep tests: a tiny LightGBM workflow config on a synthetic market, and the
Dask processes started from the command line."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLUGINS = ("executors", "dask", "sweep")


def tiny_config(market: Path, **model_kwargs) -> dict:
    """Alpha158 + LightGBM on ``market`` (30 stocks, 2016-2018), few rounds, one thread, IC records only."""
    kwargs = {"loss": "mse", "learning_rate": 0.1, "num_leaves": 15, "num_threads": 1, "num_boost_round": 20,
              "early_stopping_rounds": 10, "seed": 1, "deterministic": True, "force_col_wise": True}
    kwargs.update(model_kwargs)
    return {
        "qlib_init": {"provider_uri": str(market), "region": "cn"},
        "experiment_name": "tiny",
        "task": {
            "model": {"class": "LGBModel", "kwargs": kwargs},
            "dataset": {"class": "DatasetH", "kwargs": {
                "handler": {"class": "Alpha158", "kwargs": {
                    "start_time": "2016-01-01", "end_time": "2018-12-31", "fit_start_time": "2016-01-01",
                    "fit_end_time": "2017-06-30", "instruments": "all"}},
                "segments": {"train": ["2016-01-01", "2017-06-30"], "valid": ["2017-07-01", "2017-12-31"],
                             "test": ["2018-01-01", "2018-12-31"]}}},
            "record": [
                {"class": "SignalRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
                {"class": "SigAnaRecord", "kwargs": {"ana_long_short": False, "ann_scaler": 252, "plot": False}},
            ],
        },
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_market(dst: Path, seed: int = 3) -> Path:
    from qexp_data.synth import SynthParams, write_synth
    write_synth(dst, SynthParams(instruments=30, start="2016-01-01", end="2018-12-31", seed=seed))
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment of worker processes: the repo importable (the test calls live in it), qexp's plugins."""
    env = dict(os.environ)
    loaded = [n for n in env.get("QEXP_LOAD_PLUGINS", "").split(",") if n]
    if loaded:
        env["QEXP_LOAD_PLUGINS"] = ",".join(dict.fromkeys([*loaded, *PLUGINS]))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


class DaskProcesses:
    """``dask scheduler`` and ``dask worker`` started as separate processes on 127.0.0.1."""

    def __init__(self, workdir: Path, n_workers: int = 2, env: dict[str, str] | None = None,
                 worker_prefix: list[str] | None = None, nthreads: int = 1) -> None:
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.env = env or child_env()
        self.workdir = workdir
        logs = workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.scheduler = subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard",
             "--dashboard-address", "127.0.0.1:0"],
            cwd=workdir, env=self.env, stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "w"))
        self.workers = [
            subprocess.Popen([*(worker_prefix or []), str(BIN / "dask"), "worker", self.address, "--nthreads", str(nthreads),
                              "--no-dashboard", "--host", "127.0.0.1"],
                             cwd=workdir, env=self.env, stdout=subprocess.DEVNULL,
                             stderr=open(logs / f"worker{i}.log", "w"))
            for i in range(n_workers)]

    def wait(self, n_workers: int, timeout: float = 90) -> None:
        from distributed import Client
        deadline = time.time() + timeout
        while True:
            try:
                with Client(self.address, timeout=5, set_as_default=False) as c:
                    c.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.time()))
                return
            except (OSError, TimeoutError):
                if time.time() > deadline:
                    raise RuntimeError(f"the Dask processes did not start; see {self.workdir / 'logs'}") from None
                time.sleep(0.5)

    def stop(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
