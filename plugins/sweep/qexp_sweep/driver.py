"""``qexp sweep``'s driver: a parent run, an Optuna study kept in a durable store, and one child run per
trial on any executor (ask, submit, tell). ``--resume`` continues a sweep whose driver stopped: finished
trials are never run again, and a trial that was running is run again as a new trial."""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from qexp.ext import (
    ConfigError,
    Executor,
    QexpError,
    R,
    apply_sys,
    check_config,
    check_data,
    get_executor,
    init,
    init_settings,
    load_workflow,
    mask_uri,
    set_by_path,
)

from .metrics import check_metric
from .space import Space, parse_space
from .study import (
    default_study_uri,
    direction,
    grid_point,
    optuna_module,
    point_key,
    pruner,
    sampler,
    storage,
    study_file,
    suggest,
)
from .trial import COMPLETE, FAIL, PRUNED, TAG_STATE, TAG_SWEEP, TAG_TRIAL, TrialSpec, release_sweep, run_trial

logger = logging.getLogger("qexp.sweep")
ATTR = "qexp"                   # study user attr: what --resume needs
A_VALUES, A_RUN, A_ERROR, A_INTERRUPTED = "qexp.values", "qexp.run_id", "qexp.error", "qexp.interrupted"
A_REUSED, A_PRUNED_AT = "qexp.dataset_reused", "qexp.pruned_at"


@dataclass
class TrialRow:
    """One trial as the report shows it."""
    number: int
    state: str
    value: float | None
    values: dict[str, Any]
    run_id: str = ""
    error: str = ""
    dataset_reused: bool = False
    pruned_at: int | None = None


@dataclass
class SweepResult:
    sweep_id: str
    experiment: str
    parent_run_id: str
    study_uri: str
    space: Space
    config: dict
    config_path: str
    trials: list[TrialRow] = field(default_factory=list)
    ran: int = 0               # trials this driver ran
    best: TrialRow | None = None
    study: Any = None


def load_space(space_path: str | None, config: dict, config_path: str) -> Space:
    """The space from ``--space`` or from the config's ``sweep:`` key (removed from the config either way:
    the trials train the config without it)."""
    inline = config.pop("sweep", None)
    if space_path:
        p = Path(space_path)
        if not p.is_file():
            raise ConfigError(f"space file {space_path!r} does not exist")
        try:
            raw = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{space_path}: invalid YAML: {exc}") from None
        return parse_space(raw, config, where=str(space_path))
    if inline is None:
        raise ConfigError(f"no sweep space: give --space SPACE.yaml, or put the space under a 'sweep:' key of "
                          f"{config_path}")
    return parse_space(inline, config, where=f"{config_path}: sweep")


def check_trial_config(config: dict, space: Space) -> None:
    """``qexp run``'s config check on the config with each swept key at a sample value; a warning about a
    swept key (a parameter the model would ignore) is an error here, since every trial would waste it."""
    sample = copy.deepcopy(config)
    for p in space.params:
        set_by_path(sample, p.path, p.choices[0] if p.choices else (p.low if not p.integer else int(p.low)))
    problems, notes = check_config(sample)
    swept = {p.path.rsplit(".", 1)[-1]: p.path for p in space.params}
    for note in notes:
        hit = next((path for key, path in swept.items() if f"'{key}'" in note), None)
        if hit is not None:
            problems.append(f"parameters.{hit}: {note}")
    if problems:
        raise ConfigError("the config cannot run with the sweep's values:\n  " + "\n  ".join(problems))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:40] or "sweep"


def run_sweep(config_path: str, space_path: str | None = None, *, trials: int | None = None,
              executor: str | Executor | None = None, experiment_name: str | None = None, uri: str | None = None,
              resume: str | None = None, study_uri: str | None = None, overrides: list[str] | None = None,
              max_parallel: int | None = None, retries: int = 2, seed: int | None = None,
              echo: Callable[[str], Any] = logger.info) -> SweepResult:
    """Run (or with ``resume``, continue) a sweep; see the module docstring."""
    optuna = optuna_module()
    wf = load_workflow(config_path, list(overrides or []), experiment_name)
    config = wf.config
    space = load_space(space_path, config, config_path)
    for note in space.notes:
        logger.warning("%s", note)
    check_trial_config(config, space)
    metric_known = check_metric(config["task"], space.metric, "metric")
    if space.pruning is not None:
        check_metric(config["task"], space.pruning.metric, "early_terminate.metric", step=True)
    # on --resume the sweep's own count holds unless --trials changes it
    n_trials = trials or (None if resume else space.run_cap or (len(space.grid()) if space.method == "grid" else None))
    if n_trials is None and not resume:
        raise ConfigError("how many trials? give --trials N, or run_cap in the space")
    apply_sys(config, wf.path.parent)
    init(**init_settings(config, uri))
    problems = check_data(config)
    if problems:
        raise ConfigError("the config does not fit the data (checked before any trial):\n  " + "\n  ".join(problems))
    study_uri = study_uri or default_study_uri(R.get_uri())
    ex = get_executor(executor)
    owned = not isinstance(executor, Executor)
    try:
        folder = study_file(study_uri)
        # every worker must reach the store, the data and (to report steps for pruning) the study
        ex.check_reach(paths=[os.path.dirname(os.path.abspath(folder))] if folder and space.pruning else [])
        parallel = max(1, max_parallel or ex.max_workers)
        result = _sweep(optuna, ex, wf, space, config, study_uri, resume, n_trials, parallel, retries, seed,
                        metric_known, echo)
    except BaseException as exc:
        if owned:
            ex.__exit__(type(exc), exc, exc.__traceback__)
            owned = False
        raise
    finally:
        if owned:
            ex.shutdown(wait=True)
    return result


def _sweep(optuna: Any, ex: Executor, wf: Any, space: Space, config: dict, study_uri: str, resume: str | None,
           n_trials: int | None, parallel: int, retries: int, seed: int | None, metric_known: bool,
           echo: Callable[[str], Any]) -> SweepResult:
    store = storage(study_uri)
    name = space.name or wf.path.stem
    if resume:
        study, info = _load(optuna, store, resume, study_uri, space, wf.experiment_name, parallel, seed)
        sweep_id, experiment, parent_id = resume, info["experiment"], info["parent_run_id"]
        start: dict[str, Any] = {"experiment_name": experiment, "recorder_id": parent_id, "resume": True}
        if n_trials is not None and n_trials != info.get("trials"):
            study.set_user_attr(ATTR, {**info, "trials": n_trials})
        n_trials = n_trials or int(info.get("trials") or 0)
    else:
        assert n_trials is not None
        sweep_id, experiment, parent_id = f"{_slug(name)}-{uuid.uuid4().hex[:8]}", wf.experiment_name, ""
        study = optuna.create_study(storage=store, study_name=sweep_id, direction=direction(space.goal),
                                    sampler=sampler(space, parallel, seed), pruner=pruner(space.pruning))
        start = {"experiment_name": experiment, "recorder_name": f"sweep-{_slug(name)}"}
    result = SweepResult(sweep_id, experiment, parent_id, study_uri, space, config, str(wf.path), study=study)
    try:
        _run_parent(optuna, ex, study, result, start, resume, n_trials, parallel, retries, metric_known, wf, echo)
    finally:
        release_sweep(sweep_id)  # trials that ran in this process (local executor) keep their datasets no longer
    return result


def _run_parent(optuna: Any, ex: Executor, study: Any, result: SweepResult, start: dict, resume: str | None,
                n_trials: int, parallel: int, retries: int, metric_known: bool, wf: Any,
                echo: Callable[[str], Any]) -> None:
    space, sweep_id, experiment = result.space, result.sweep_id, result.experiment
    with R.start(**start):
        parent = R.get_recorder()
        result.parent_run_id = str(parent.id)
        echo(f"sweep {sweep_id}: {space.method} over {len(space.params)} parameter(s), {n_trials} trial(s), "
             f"{space.metric} ({space.goal}); parent run {result.parent_run_id[:8]} in experiment {experiment!r}; "
             f"study in {_masked(result.study_uri)}")
        try:
            if not resume:
                _describe_parent(parent, study, result, n_trials)
            else:
                if "qexp.failure_reason" in parent.list_tags():  # it stopped before; now it goes on
                    parent.delete_tags("qexp.failure_reason")
                _reconcile(study, result, echo)
            _loop(optuna, ex, study, result, parent, n_trials, parallel, retries, metric_known, wf, echo)
        except BaseException as exc:
            what = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
            parent.set_tags(**{"qexp.failure_reason": f"sweep stopped: {what}"[:4000]})
            raise
        _finish(parent, study, result)


def _describe_parent(parent: Any, study: Any, result: SweepResult, n_trials: int) -> None:
    space = result.space
    parent.set_tags(**{TAG_SWEEP: result.sweep_id, "qexp.sweep.method": space.method, "qexp.sweep.metric": space.metric,
                       "qexp.sweep.goal": space.goal, "qexp.sweep.trials": str(n_trials),
                       "qexp.sweep.study": _masked(result.study_uri)})
    parent.log_text(yaml.safe_dump(space.raw, sort_keys=False), "sweep.yaml")
    parent.save_objects(config=result.config)
    study.set_user_attr(ATTR, {"experiment": result.experiment, "parent_run_id": parent.id,
                               "space_digest": space.digest(), "trials": n_trials, "config": result.config_path,
                               "tracking_uri": R.get_uri()})


def _masked(uri: str) -> str:
    return mask_uri(uri)


def _load(optuna: Any, store: Any, sweep_id: str, study_uri: str, space: Space, experiment_name: str,
          parallel: int, seed: int | None) -> tuple[Any, dict]:
    try:
        study = optuna.load_study(study_name=sweep_id, storage=store, sampler=sampler(space, parallel, seed),
                                  pruner=pruner(space.pruning))
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(store)]
        raise ConfigError(f"--resume {sweep_id}: no such sweep in {_masked(study_uri)} (it has: "
                          f"{', '.join(known[-10:]) or 'none'}); give the --uri (or --study-uri) the sweep used") from None
    info = study.user_attrs.get(ATTR) or {}
    if not info.get("parent_run_id"):
        raise ConfigError(f"--resume {sweep_id}: the study was not made by qexp sweep")
    if info.get("space_digest") != space.digest():
        raise ConfigError(f"--resume {sweep_id}: the space differs from the one the sweep started with; resume with "
                          f"the same space, or start a new sweep")
    if info.get("tracking_uri") and info["tracking_uri"] != R.get_uri():
        raise ConfigError(f"--resume {sweep_id}: the sweep's runs are in {info['tracking_uri']}, not {R.get_uri()}; "
                          f"give --uri {info['tracking_uri']}")
    return study, info


def _reconcile(study: Any, result: SweepResult, echo: Callable[[str], Any]) -> None:
    """Settle the trials the stopped driver left open: a trial whose run finished is told from its run;
    any other is marked failed (interrupted) and its run, if still RUNNING, FAILED with the reason."""
    optuna = optuna_module()
    open_states = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    for t in study.get_trials(deepcopy=False, states=open_states):
        if t.state == optuna.trial.TrialState.WAITING:
            t_live = study.ask()  # an enqueued grid point the driver never started: drop it
            t_live.set_user_attr(A_INTERRUPTED, True)
            study.tell(t_live, state=optuna.trial.TrialState.FAIL)
            continue
        run = _trial_run(result, t.number)
        tags = run.list_tags() if run is not None else {}
        if run is not None and run.status == "FINISHED" and tags.get(TAG_STATE) in (COMPLETE, PRUNED):
            value = run.list_metrics().get(result.space.metric)
            optuna.trial.Trial(study, t._trial_id).set_user_attr(A_RUN, run.id)
            if tags[TAG_STATE] == PRUNED:
                study.tell(t.number, state=optuna.trial.TrialState.PRUNED)
            elif value is not None and math.isfinite(value):
                study.tell(t.number, value)
            else:
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            echo(f"trial {t.number}: its run {run.id[:8]} finished before the driver stopped; kept")
            continue
        if run is not None and run.status == "RUNNING":
            run.set_tags(**{"qexp.failure_reason": f"the sweep driver stopped while trial {t.number} ran; "
                                                   f"--resume runs a new trial in its place"})
            run.end_run("FAILED")
        optuna.trial.Trial(study, t._trial_id).set_user_attr(A_INTERRUPTED, True)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        echo(f"trial {t.number}: interrupted when the driver stopped; a new trial takes its place")


def _trial_run(result: SweepResult, number: int) -> Any:
    exp = R.get_exp(experiment_name=result.experiment, create=False)
    df = R.search_records([exp.id], filter_string=f"tags.`{TAG_SWEEP}` = '{result.sweep_id}' and "
                                                  f"tags.`{TAG_TRIAL}` = '{number}'")
    if df.empty:
        return None
    rec = R.get_recorder(recorder_id=str(df["run_id"].iloc[0]))
    rec.refresh()  # a dead owner's run turns FAILED here
    return rec


def _counted(t: Any) -> bool:
    """A trial that counts toward the total: finished, and not cut short by a stopped driver."""
    states = optuna_module().trial.TrialState
    if t.state in (states.COMPLETE, states.PRUNED):
        return True
    return t.state == states.FAIL and not t.user_attrs.get(A_INTERRUPTED)


def _loop(optuna: Any, ex: Executor, study: Any, result: SweepResult, parent: Any, n_trials: int, parallel: int,
          retries: int, metric_known: bool, wf: Any, echo: Callable[[str], Any]) -> None:
    space = result.space
    done = [t for t in study.get_trials(deepcopy=False) if _counted(t)]
    remaining = max(0, n_trials - len(done))
    points: list[dict] = []
    if space.method == "grid":
        seen = {point_key(t.user_attrs.get(A_VALUES) or {}) for t in done}
        points = [p for p in space.grid() if point_key(p) not in seen][:remaining]
        remaining = len(points)
    if done:
        echo(f"sweep {result.sweep_id}: {len(done)} trial(s) already done, {remaining} to run")
    sign = 1.0
    if space.pruning is not None:
        sign = 1.0 if space.pruning.goal == space.goal else -1.0
    pending: dict[Any, Any] = {}
    asked = 0
    try:
        while asked < remaining or pending:
            while asked < remaining and len(pending) < parallel:
                if points:
                    study.enqueue_trial(grid_point(points[asked]))
                trial = study.ask()
                values = suggest(trial, space)
                trial.set_user_attr(A_VALUES, json.loads(json.dumps(values, default=str)))
                cfg = copy.deepcopy(result.config)
                for path, v in values.items():
                    set_by_path(cfg, path, v)
                spec = TrialSpec(result.sweep_id, trial.number, trial._trial_id, result.experiment,
                                 result.parent_run_id, cfg, str(wf.path.parent.resolve()), values, space.metric,
                                 result.study_uri, space.pruning, sign)
                pending[ex.submit(run_trial, spec, key=f"trial-{trial.number}", retries=retries)] = (trial, values)
                asked += 1
            finished, _ = ex.wait(list(pending))
            for future in [f for f in pending if f in finished]:  # in submission order
                row = _settle(optuna, study, result, parent, pending, future)
                echo(_line(row, study, space, len(done) + result.ran, len(done) + remaining))
                if not metric_known and row.error == f"metric {space.metric!r} was not logged":
                    raise ConfigError(f"metric {space.metric!r}: trial {row.number} (run {row.run_id[:8]}) did not log "
                                      f"it; check metric.name in the space against `qexp runs show {row.run_id[:8]}`")
    except BaseException:
        # a trial that finished while the driver was stopping is kept (resume must not run it again); the
        # others are cancelled with the executor: not counted, --resume runs new trials in their place
        for future in list(pending):
            try:
                if future.done() and not future.cancelled() and future.exception() is None:
                    _settle(optuna, study, result, parent, pending, future)
            except Exception:
                pass
        for trial, _ in pending.values():
            try:
                trial.set_user_attr(A_INTERRUPTED, True)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except Exception:
                pass
        raise


def _settle(optuna: Any, study: Any, result: SweepResult, parent: Any, pending: dict, future: Any) -> TrialRow:
    """Tell the study the outcome of a finished trial's future and log it on the parent run."""
    trial, values = pending.pop(future)
    row = _tell(optuna, study, trial, values, future, result.space)
    result.trials.append(row)
    result.ran += 1
    if row.value is not None:
        parent.log_metrics(step=row.number, **{f"trial/{result.space.metric}": row.value})
    return row


def _tell(optuna: Any, study: Any, trial: Any, values: dict, future: Any, space: Space) -> TrialRow:
    states = optuna.trial.TrialState
    row = TrialRow(trial.number, FAIL, None, values)
    exc = future.exception()
    if exc is not None:
        row.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        trial.set_user_attr(A_ERROR, row.error)
        study.tell(trial, state=states.FAIL)
        return row
    out = future.result()
    row.run_id, row.dataset_reused, row.pruned_at = out["run_id"], bool(out.get("dataset_reused")), out.get("pruned_at")
    trial.set_user_attr(A_RUN, row.run_id)
    trial.set_user_attr(A_REUSED, row.dataset_reused)
    value = out.get("value")
    if out["state"] == PRUNED:
        row.state = PRUNED
        if row.pruned_at is not None:
            trial.set_user_attr(A_PRUNED_AT, row.pruned_at)
        study.tell(trial, state=states.PRUNED)
        return row
    if value is None or not math.isfinite(float(value)):
        row.error = f"metric {space.metric!r} " + ("was not logged" if value is None else f"is {value}")
        trial.set_user_attr(A_ERROR, row.error)
        study.tell(trial, state=states.FAIL)
        return row
    row.state, row.value = COMPLETE, float(value)
    study.tell(trial, row.value)
    return row


def _line(row: TrialRow, study: Any, space: Space, n: int, total: int) -> str:
    text = f"[{n}/{total}] trial {row.number} {row.state}"
    if row.value is not None:
        text += f" {space.metric}={row.value:.6g}"
    if row.pruned_at is not None:
        text += f" (pruned at step {row.pruned_at})"
    if row.error:
        text += f": {row.error}"
    try:
        best = study.best_trial
        text += f"; best {best.value:.6g} (trial {best.number})"
    except ValueError:
        pass
    if row.run_id:
        text += f"; run {row.run_id[:8]}"
    return text


def _finish(parent: Any, study: Any, result: SweepResult) -> None:
    result.trials = all_rows(study)
    try:
        best = study.best_trial
    except ValueError:
        return
    result.best = next((r for r in result.trials if r.number == best.number), None)
    tags = {"qexp.sweep.best_trial": str(best.number)}
    if best.user_attrs.get(A_RUN):
        tags["qexp.sweep.best_run_id"] = best.user_attrs[A_RUN]
    parent.set_tags(**tags)
    parent.log_metrics(**{f"best/{result.space.metric}": float(best.value)})
    best_config = copy.deepcopy(result.config)
    for path, v in (best.user_attrs.get(A_VALUES) or {}).items():
        set_by_path(best_config, path, v)
    parent.log_text(yaml.safe_dump(best_config, sort_keys=False, default_flow_style=None), "best_config.yaml")


def all_rows(study: Any) -> list[TrialRow]:
    """Every trial of the study, as report rows (interrupted ones left out)."""
    states = optuna_module().trial.TrialState
    names = {states.COMPLETE: COMPLETE, states.PRUNED: PRUNED, states.FAIL: FAIL}
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in names or t.user_attrs.get(A_INTERRUPTED):
            continue
        value = t.value if t.state == states.COMPLETE else None
        rows.append(TrialRow(t.number, names[t.state], value, dict(t.user_attrs.get(A_VALUES) or {}),
                             str(t.user_attrs.get(A_RUN, "")), str(t.user_attrs.get(A_ERROR, "")),
                             bool(t.user_attrs.get(A_REUSED)), t.user_attrs.get(A_PRUNED_AT)))
    return rows


__all__ = ["run_sweep", "SweepResult", "TrialRow", "all_rows", "load_space", "QexpError"]
