"""Many workflow configs at once on an executor: one run each, their progress, then one metrics table.

:func:`run_many` loads every config in the driver (a config that does not load fails alone), checks that
the executor's workers reach each config's store and data, submits one call per config and follows them:
queued, running, finished or failed. A failed config never stops the others.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .api import R
from .exceptions import QexpError
from .executor import Executor, get_executor, worker_settings
from .workflow import Workflow, init_settings, load_workflow, run_workflow

logger = logging.getLogger("qexp.multirun")

QUEUED, RUNNING, FINISHED, FAILED, CANCELLED = "queued", "running", "finished", "failed", "cancelled"
HEADLINE = (("IC", "IC"), ("ICIR", "ICIR"), ("Rank IC", "Rank IC"), ("Rank ICIR", "Rank ICIR"),
            ("1day.excess_return_with_cost.annualized_return", "ann.ret (cost)"),
            ("1day.excess_return_with_cost.information_ratio", "IR (cost)"),
            ("1day.excess_return_with_cost.max_drawdown", "max DD (cost)"))
"""Metric keys shown in the final table (when some run logged them), with their column titles."""
MAX_EXIT_CODE = 100
"""The exit status is the number of failed configs, capped here (shells keep 126+ for their own meanings)."""


@dataclass(eq=False)
class ConfigRun:
    """One config of a multi-run: where it stands and what came out."""
    name: str
    path: Path
    workflow: Workflow | None = None
    state: str = QUEUED
    future: cf.Future | None = None
    run_id: str | None = None
    experiment: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    started: float | None = None
    ended: float | None = None

    def refresh(self) -> str:
        """Update ``state`` from the future (a call begins on a worker without telling the driver otherwise)."""
        if self.state == QUEUED and self.future is not None and self.future.running():
            self.state, self.started = RUNNING, time.time()
        return self.state


def run_config(config: dict, path: str, experiment_name: str, uri: str | None) -> dict:
    """One workflow run (in a worker): what ``qexp run`` does, returning the run's id and metrics."""
    wf = Workflow(config, Path(path), experiment_name)
    try:
        rec = run_workflow(wf, uri)
    except Exception as exc:
        if wf.recorder is not None:  # the failed run, for the driver's table
            exc.qexp_run_id = wf.recorder.id  # type: ignore[attr-defined]
        raise
    return {"run_id": rec.id, "status": rec.status, "metrics": rec.list_metrics(), "store": R.get_uri()}


def _run_config_settings(config: dict, path: str, experiment_name: str, uri: str | None) -> dict:
    return init_settings(config, uri)


# the worker applies the config's qexp.init settings around the call (its session gate), so two configs with
# other stores or data never run at once in one worker process: the store and the provider are process-wide
run_config.qexp_call_settings = _run_config_settings  # type: ignore[attr-defined]


def load_configs(paths: list[str], overrides: list[str], experiment_name: str | None) -> list[ConfigRun]:
    """Load each config; one that does not load is FAILED with its error, the others go on."""
    runs: list[ConfigRun] = []
    seen: dict[str, int] = {}
    for p in paths:
        name = str(p)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        run = ConfigRun(name, Path(p))
        try:
            run.workflow = load_workflow(p, list(overrides), experiment_name)
            run.experiment = run.workflow.experiment_name
        except QexpError as exc:
            run.state, run.error = FAILED, str(exc)
        runs.append(run)
    return runs


def run_many(paths: list[str], executor: str | Executor | None = None, *, experiment_name: str | None = None,
             uri: str | None = None, overrides: list[str] | None = None, max_parallel: int | None = None,
             retries: int = 2, progress: Callable[[list[ConfigRun]], Any] | None = None) -> list[ConfigRun]:
    """Run every config in ``paths`` once on ``executor``; return each one's outcome, in order.

    ``max_parallel`` caps how many are submitted at a time (default: all, the executor queues them);
    ``retries`` is how many more times a config whose worker died is tried. ``progress(runs)`` is called
    from a watcher thread whenever a config changes state.
    """
    runs = load_configs(paths, overrides or [], experiment_name)
    todo = [r for r in runs if r.workflow is not None]
    ex = get_executor(executor)
    owned = not isinstance(executor, Executor)
    watcher = _Watcher(runs, progress)
    try:
        _check_reach(ex, todo, uri)
        watcher.start()
        _submit_and_wait(ex, todo, uri, max_parallel, retries, watcher)
    except BaseException as exc:
        for r in runs:
            if r.state in (QUEUED, RUNNING):
                r.state, r.error = (CANCELLED, f"not finished: the driver stopped ({type(exc).__name__})")
        if owned:
            ex.__exit__(type(exc), exc, exc.__traceback__)
            owned = False
        raise
    finally:
        watcher.stop()
        if owned:
            ex.shutdown(wait=True)
    return runs


def _check_reach(ex: Executor, runs: list[ConfigRun], uri: str | None) -> None:
    done: list[dict] = []
    for r in runs:
        assert r.workflow is not None
        settings = worker_settings({**init_settings(r.workflow.config, uri)})
        if settings not in done:
            ex.check_reach(settings)
            done.append(settings)


def _submit_and_wait(ex: Executor, runs: list[ConfigRun], uri: str | None, max_parallel: int | None,
                     retries: int, watcher: _Watcher) -> None:
    queue = deque(runs)
    limit = max_parallel or len(runs) or 1
    in_flight: dict[cf.Future, ConfigRun] = {}
    while queue or in_flight:
        while queue and len(in_flight) < limit:
            r = queue.popleft()
            assert r.workflow is not None
            wf = r.workflow
            try:
                r.future = ex.submit(run_config, wf.config, str(wf.path.resolve()), wf.experiment_name, uri,
                                     key=Path(r.name).stem, retries=retries)
            except QexpError as exc:
                r.state, r.error = FAILED, str(exc)
                watcher.changed()
                continue
            in_flight[r.future] = r
        if not in_flight:
            continue
        done, _ = ex.wait(list(in_flight))
        for future in done:
            _settle(in_flight.pop(future), future)
        watcher.changed()


def _settle(r: ConfigRun, future: cf.Future) -> None:
    r.ended = time.time()
    r.started = r.started or r.ended
    if future.cancelled():
        r.state, r.error = CANCELLED, "cancelled"
        return
    exc = future.exception()
    if exc is None:
        out = future.result()
        r.state, r.run_id, r.metrics = FINISHED, out["run_id"], dict(out.get("metrics") or {})
        return
    r.state, r.error = FAILED, f"{type(exc).__name__}: {exc}"
    failed_run = getattr(exc, "qexp_run_id", None)
    if failed_run:
        r.run_id = failed_run


class _Watcher:
    """Calls ``progress`` when a config changes state; polls futures, because a worker does not announce
    the start of a call to the driver."""

    def __init__(self, runs: list[ConfigRun], progress: Callable[[list[ConfigRun]], Any] | None) -> None:
        self.runs = runs
        self.progress = progress
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: list[str] = []

    def start(self) -> None:
        if self.progress is None:
            return
        self._thread = threading.Thread(target=self._loop, name="qexp-multirun-progress", daemon=True)
        self._thread.start()

    def changed(self) -> None:
        self._dirty.set()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join()
        self._emit()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(0.25)
            self._dirty.clear()
            self._emit()

    def _emit(self) -> None:
        if self.progress is None:
            return
        states = [r.refresh() for r in self.runs]
        if states != self._last:
            self._last = states
            try:
                self.progress(self.runs)
            except Exception as exc:  # a display problem must not stop the runs
                logger.warning("progress display failed: %s", exc)


# ---- display --------------------------------------------------------------------------------------------
def counts(runs: list[ConfigRun]) -> dict[str, int]:
    out = {s: 0 for s in (QUEUED, RUNNING, FINISHED, FAILED, CANCELLED)}
    for r in runs:
        out[r.state] += 1
    return out


def progress_rows(runs: list[ConfigRun]) -> list[list[Any]]:
    now = time.time()
    rows = []
    for r in runs:
        took = (r.ended or now) - r.started if r.started else None
        rows.append([r.name, r.state, f"{took:.0f} s" if took is not None else "",
                     (r.run_id or "")[:8], r.error.splitlines()[0][:80] if r.error else ""])
    return rows


def metrics_table(runs: list[ConfigRun]) -> tuple[list[str], list[list[Any]]]:
    """The final table: one row per config, the headline metrics any run logged."""
    shown = [(k, title) for k, title in HEADLINE if any(k in r.metrics for r in runs)]
    cols = ["config", "status", "run", "experiment"] + [t for _, t in shown] + ["error"]
    rows = []
    for r in runs:
        rows.append([r.name, r.state, (r.run_id or "")[:8], r.experiment]
                    + [r.metrics.get(k) for k, _ in shown]
                    + [r.error.splitlines()[0][:100] if r.error else ""])
    return cols, rows


def exit_code(runs: list[ConfigRun]) -> int:
    """How many configs did not finish, capped at :data:`MAX_EXIT_CODE`."""
    return min(MAX_EXIT_CODE, sum(1 for r in runs if r.state != FINISHED))


def plain_progress(stream: Any = None) -> Callable[[list[ConfigRun]], None]:
    """A progress callback printing one line per change of state (for logs: no terminal)."""
    last: dict[int, str] = {}
    stream = stream or sys.stderr

    def show(runs: list[ConfigRun]) -> None:
        c = counts(runs)
        total = len(runs)
        for i, r in enumerate(runs):
            if last.get(i) == r.state:
                continue
            last[i] = r.state
            extra = f" (run {r.run_id[:8]})" if r.run_id and r.state == FINISHED else ""
            extra += f": {r.error.splitlines()[0][:200]}" if r.error and r.state in (FAILED, CANCELLED) else ""
            print(f"[{c[FINISHED] + c[FAILED] + c[CANCELLED]}/{total} done] {r.name}: {r.state}{extra}",
                  file=stream, flush=True)
    return show
