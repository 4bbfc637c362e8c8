"""What ``qexp sweep`` prints at the end: the best trial's config, the top trials, parameter importance."""
from __future__ import annotations

import shlex
from typing import Any, Callable

import yaml

from qexp.ext import print_table

from .driver import SweepResult, TrialRow
from .study import optuna_module
from .trial import COMPLETE, FAIL, PRUNED

TOP = 10


def short_names(paths: list[str]) -> dict[str, str]:
    """Column titles: the last key of each dotted path, longer where two would clash."""
    out: dict[str, str] = {}
    for path in paths:
        parts = path.split(".")
        n = 1
        while n < len(parts) and sum(1 for p in paths if p.split(".")[-n:] == parts[-n:]) > 1:
            n += 1
        out[path] = ".".join(parts[-n:])
    return out


def top_rows(result: SweepResult, n: int = TOP) -> list[TrialRow]:
    sign = 1.0 if result.space.goal == "minimize" else -1.0
    done = [(sign * r.value, r) for r in result.trials if r.state == COMPLETE and r.value is not None]
    done.sort(key=lambda pair: pair[0])
    return [r for _, r in done[:n]]


def importance(result: SweepResult) -> tuple[list[tuple[str, float]], str]:
    """(param, importance) rows by Optuna's fANOVA evaluator, or why there are none."""
    optuna = optuna_module()
    complete = [r for r in result.trials if r.state == COMPLETE]
    varied = [p.path for p in result.space.params if len({repr(r.values.get(p.path)) for r in complete}) > 1]
    if len(complete) < 3 or not varied:
        return [], (f"parameter importance needs at least 3 finished trials with varied values (have {len(complete)} "
                    f"finished, {len(varied)} varied parameter(s))")
    try:
        imp = optuna.importance.get_param_importances(result.study)
    except Exception as exc:  # fANOVA cannot fit every study; say why instead of failing the sweep
        return [], f"parameter importance is not available: {type(exc).__name__}: {exc}"
    return [(k, float(v)) for k, v in imp.items()], ""


def print_report(result: SweepResult, echo: Callable[[str], Any]) -> None:
    space = result.space
    states = [r.state for r in result.trials]
    echo(f"sweep {result.sweep_id} in experiment {result.experiment!r}: {states.count(COMPLETE)} complete, "
         f"{states.count(PRUNED)} pruned, {states.count(FAIL)} failed; parent run {result.parent_run_id[:8]} "
         f"(resume with --resume {result.sweep_id})")
    best = result.best
    if best is None:
        echo(f"no trial finished with a value of {space.metric!r}")
    else:
        echo(f"best trial {best.number} (run {best.run_id[:8]}): {space.metric} = {best.value:.6g} ({space.goal})")
        echo(yaml.safe_dump(best.values, sort_keys=False, default_flow_style=False).rstrip())
        sets = " ".join(f"--set {shlex.quote(f'{k}={_yaml_value(v)}')}" for k, v in best.values.items())
        echo(f"reproduce: qexp run {shlex.quote(result.config_path)} {sets}")
    paths = [p.path for p in space.params if p.distribution != "constant"]
    names = short_names(paths)
    rows = [[r.number, r.value] + [r.values.get(p) for p in paths] + [r.run_id[:8]] for r in top_rows(result)]
    if rows:
        print_table(["trial", space.metric] + [names[p] for p in paths] + ["run"], rows,
                    title=f"top {len(rows)} trials by {space.metric} ({space.goal})")
    imp, why = importance(result)
    if imp:
        print_table(["parameter", "importance"], [[k, v] for k, v in imp], title="parameter importance (fANOVA)")
    else:
        echo(why)


def _yaml_value(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
