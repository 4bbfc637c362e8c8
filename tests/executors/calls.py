"""Calls the executor tests submit: module-level, so every kind of worker (spawned, Dask) imports them."""
from __future__ import annotations

import os
import signal
import time

import qexp
from qexp import R


def noop() -> None:
    return None


def square(x: int) -> int:
    return x * x


def whoami() -> tuple[int, dict]:
    return os.getpid(), qexp.get_settings()


def fail(message: str) -> None:
    raise ValueError(message)


def log_run(name: str, value: float, experiment: str = "calls") -> str:
    with R.start(experiment_name=experiment, recorder_name=name):
        R.log_metrics(v=value)
        return R.get_recorder().id


def noop_run(experiment: str = "noop") -> None:
    """The smallest real run: started and ended through R (the executor overhead benchmark uses it)."""
    with R.start(experiment_name=experiment):
        pass


def leave_open(name: str, experiment: str = "calls") -> str:
    """Starts a run and never ends it: the worker must."""
    R.start_exp(experiment_name=experiment, recorder_name=name)
    return R.get_recorder().id


def where() -> str:
    """Which worker serves this call: a Dask worker's address, else this process's pid."""
    try:
        from distributed import get_worker
        return str(get_worker().address)
    except (ImportError, ValueError):  # ValueError: not in a Dask worker
        return str(os.getpid())


def meet(folder: str, n: int, timeout: float = 60) -> str:
    """Wait until ``n`` calls of this function run at once (each leaves a file in ``folder``); return
    :func:`where` it ran. ``n`` calls on a pool of ``n`` workers thus name every worker."""
    me = where()
    with open(os.path.join(folder, me.replace("/", "_").replace(":", "_")), "w") as f:
        f.write(me)
    deadline = time.time() + timeout
    while len(os.listdir(folder)) < n:
        if time.time() > deadline:
            raise TimeoutError(f"only {os.listdir(folder)} of {n} calls met")
        time.sleep(0.05)
    return me


def die_once(marker: str, name: str, experiment: str = "calls") -> str:
    """Dies by SIGKILL inside its run the first time (the marker file says which worker died: :func:`where`),
    then works and returns which worker served it."""
    with R.start(experiment_name=experiment, recorder_name=name):
        R.log_metrics(v=1.0)
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(where())
            time.sleep(0.5)  # mid-run: the worker has reported the run it opened
            os.kill(os.getpid(), signal.SIGKILL)
        R.log_metrics(v=2.0)
    return where()


def always_die(name: str, experiment: str = "calls") -> None:
    with R.start(experiment_name=experiment, recorder_name=name):
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)


def hold(path: str, seconds: float) -> None:
    """Write when it holds its resource, sleep, write when it lets go (to check that holders never overlap)."""
    with open(path, "a") as f:
        f.write(f"start {time.time()}\n")
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(f"end {time.time()}\n")


def busy_run(name: str, marker: str, seconds: float, experiment: str = "calls") -> str:
    """A run that writes a metric every 0.1 s for ``seconds`` (the marker file appears once it runs)."""
    with R.start(experiment_name=experiment, recorder_name=name):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        end = time.time() + seconds
        step = 0
        while time.time() < end:
            time.sleep(0.1)
            R.log_metrics(step=step, x=float(step))
            step += 1
        return R.get_recorder().id
