"""The sweep space, in the format of W&B sweeps, checked against the workflow config before any trial runs.

::

    method: tpe                      # grid | random | tpe (bayes is an alias of tpe)
    metric: {name: IC, goal: maximize}
    run_cap: 20                      # trials, unless --trials says otherwise
    parameters:                      # keys: dotted paths into the config, as `qexp run --set` takes them
      task.model.kwargs.num_leaves: {values: [31, 63, 127]}
      task.model.kwargs.learning_rate: {distribution: log_uniform_values, min: 0.01, max: 0.3}
      task.model.kwargs.lambda_l1: {min: 0.0, max: 300.0}          # float min/max: uniform
      task.model.kwargs.max_depth: {min: 4, max: 10}               # int min/max: int_uniform
    early_terminate: {type: median, metric: l2.valid, min_iter: 10}

Distributions keep W&B's names and meanings. Note ``log_uniform``: its ``min``/``max`` are natural-log
EXPONENTS (values from e^min to e^max), as in W&B; ``log_uniform_values`` takes the values themselves.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from qexp.ext import ConfigError

METHODS = {"grid": "grid", "random": "random", "tpe": "tpe", "bayes": "tpe"}
GOALS = ("minimize", "maximize")
TOP_KEYS = {"method", "metric", "parameters", "early_terminate", "run_cap", "name", "description", "seed"}
IGNORED_TOP_KEYS = {"program", "command", "entity", "project", "controller", "job", "image_uri"}
PARAM_KEYS = {"values", "value", "distribution", "min", "max", "q", "mu", "sigma", "probabilities", "parameters"}
SUPPORTED = ("constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values",
             "q_log_uniform", "q_log_uniform_values", "inv_log_uniform", "inv_log_uniform_values")
UNSUPPORTED = ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta")
GRID_MAX_POINTS = 100_000


@dataclass
class Param:
    """One swept config key."""
    path: str
    distribution: str
    choices: list[Any] = field(default_factory=list)  # categorical / constant
    low: float = 0.0                                  # the range in VALUES (exponents already applied)
    high: float = 0.0
    q: float | None = None
    integer: bool = False

    @property
    def log(self) -> bool:
        return "log_uniform" in self.distribution

    def grid_values(self) -> list[Any]:
        if self.distribution in ("categorical", "constant"):
            return list(self.choices)
        if self.distribution == "int_uniform":
            return list(range(int(self.low), int(self.high) + 1))
        if self.distribution == "q_uniform" and self.q:
            n = int(math.floor((self.high - self.low) / self.q + 1e-9))
            return [_num(self.low + i * self.q, self.integer) for i in range(n + 1)]
        raise ConfigError(f"parameters.{self.path}: method grid needs a list of values (or int_uniform / q_uniform), "
                          f"not distribution {self.distribution}")


@dataclass
class Pruning:
    """``early_terminate``: prune a trial whose step metric is worse than the median of earlier trials."""
    type: str
    metric: str
    goal: str = "minimize"
    min_iter: int = 0
    max_iter: int | None = None
    eta: int = 3
    startup_trials: int = 5
    interval: int = 1


@dataclass
class Space:
    """A checked sweep space."""
    method: str
    metric: str
    goal: str
    params: list[Param]
    name: str = ""
    run_cap: int | None = None
    seed: int | None = None
    pruning: Pruning | None = None
    raw: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def digest(self) -> str:
        """A hash of the space, to tell on ``--resume`` that it did not change."""
        text = json.dumps({k: v for k, v in self.raw.items() if k not in ("run_cap", "description")},
                          sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def grid(self) -> list[dict[str, Any]]:
        """Every point of the grid, in a fixed order (the first parameter varies slowest)."""
        axes = [p.grid_values() for p in self.params]
        size = math.prod(len(a) for a in axes)
        if size > GRID_MAX_POINTS:
            raise ConfigError(f"the grid has {size} points; more than {GRID_MAX_POINTS} is not a grid search, use "
                              f"method: random or tpe with --trials")
        return [dict(zip((p.path for p in self.params), combo)) for combo in itertools.product(*axes)]


def _num(v: float, integer: bool) -> Any:
    return int(round(v)) if integer else float(round(v, 12))


def parse_space(raw: Any, config: dict, where: str = "the sweep space") -> Space:
    """Check ``raw`` (a space file's mapping, or a config's ``sweep:`` key) against ``config``; one clear
    :class:`ConfigError` naming the first problem (its key path), before any trial starts."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with 'method', 'metric' and 'parameters'")
    raw = copy.deepcopy(raw)
    notes = [f"{where}: '{k}' has no meaning for qexp sweep and is ignored" for k in sorted(set(raw) & IGNORED_TOP_KEYS)]
    unknown = sorted(set(raw) - TOP_KEYS - IGNORED_TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(TOP_KEYS))}")
    method = str(raw.get("method", "tpe")).lower()
    if method not in METHODS:
        raise ConfigError(f"{where}: method {raw.get('method')!r} is unknown; use one of grid, random, tpe "
                          f"(bayes is taken as tpe)")
    metric_name, goal = _metric(raw.get("metric"), where)
    params_raw = raw.get("parameters")
    if not isinstance(params_raw, dict) or not params_raw:
        raise ConfigError(f"{where}: 'parameters' must map dotted config paths to their values or distribution, "
                          f"e.g. task.model.kwargs.num_leaves: {{values: [31, 63]}}")
    try:
        params = [_param(path, spec, config) for path, spec in _flatten(params_raw, "")]
    except ConfigError as exc:  # say which space: a file, or a config's sweep key
        raise ConfigError(f"{where}: {exc}") from None
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or run_cap < 1):
        raise ConfigError(f"{where}: run_cap must be a positive integer, got {run_cap!r}")
    seed = raw.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise ConfigError(f"{where}: seed must be an integer, got {seed!r}")
    space = Space(METHODS[method], metric_name, goal, params, name=str(raw.get("name") or ""), run_cap=run_cap,
                  seed=seed, pruning=_pruning(raw.get("early_terminate"), where), raw=raw, notes=notes)
    if space.method == "grid":
        space.grid()  # every parameter has grid values, and the grid is not absurd
    return space


def _metric(metric: Any, where: str) -> tuple[str, str]:
    if isinstance(metric, str):
        metric = {"name": metric}
    if not isinstance(metric, dict) or not metric.get("name"):
        raise ConfigError(f"{where}: metric must name the metric to optimise, e.g. metric: {{name: IC, goal: maximize}}")
    unknown = sorted(set(metric) - {"name", "goal", "target"})
    if unknown:
        raise ConfigError(f"{where}: metric has unknown key(s) {', '.join(unknown)}; known: name, goal")
    goal = str(metric.get("goal", "minimize")).lower()
    if goal not in GOALS:
        raise ConfigError(f"{where}: metric.goal {metric.get('goal')!r} must be minimize or maximize")
    return str(metric["name"]), goal


def _flatten(params: dict, prefix: str) -> list[tuple[str, Any]]:
    """W&B nests parameters with ``parameters:``; nested keys extend the dotted path."""
    out = []
    for key, spec in params.items():
        path = f"{prefix}{key}"
        if isinstance(spec, dict) and "parameters" in spec:
            extra = sorted(set(spec) - {"parameters"})
            if extra or not isinstance(spec["parameters"], dict):
                raise ConfigError(f"parameters.{path}: a nested 'parameters' mapping stands alone (found "
                                  f"{', '.join(extra) or type(spec['parameters']).__name__})")
            out += _flatten(spec["parameters"], f"{path}.")
        else:
            out.append((path, spec))
    return out


def _param(path: str, spec: Any, config: dict) -> Param:
    where = f"parameters.{path}"
    check_path(config, path)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: give {{values: [...]}}, {{value: x}} or {{distribution: ..., min: ..., max: ...}}, "
                          f"not {spec!r}")
    unknown = sorted(set(spec) - PARAM_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(PARAM_KEYS))}")
    dist = spec.get("distribution")
    if dist is None:  # W&B's inference
        dist = ("categorical" if "values" in spec else "constant" if "value" in spec
                else "int_uniform" if isinstance(spec.get("min"), int) and isinstance(spec.get("max"), int)
                and not isinstance(spec.get("min"), bool) else "uniform")
    dist = str(dist)
    if dist in UNSUPPORTED:
        raise ConfigError(f"{where}: distribution {dist} is not supported (Optuna's samplers take ranges); use "
                          f"uniform or log_uniform_values with min and max")
    if dist not in SUPPORTED:
        raise ConfigError(f"{where}: distribution {dist!r} is unknown; W&B's names: {', '.join(SUPPORTED)}")
    if "probabilities" in spec:
        raise ConfigError(f"{where}: probabilities are not supported (Optuna samples categories itself); drop them")
    if dist == "constant":
        if "value" not in spec:
            raise ConfigError(f"{where}: distribution constant needs 'value'")
        return Param(path, dist, [spec["value"]])
    if dist == "categorical":
        values = spec.get("values")
        if not isinstance(values, list):
            raise ConfigError(f"{where}: values must be a list, e.g. values: [31, 63, 127]")
        if not values:
            raise ConfigError(f"{where}: values is empty; give at least one value")
        return Param(path, dist, list(values))
    return _range_param(path, where, dist, spec)


def _range_param(path: str, where: str, dist: str, spec: dict) -> Param:
    if "min" not in spec or "max" not in spec:
        raise ConfigError(f"{where}: distribution {dist} needs min and max")
    lo, hi = spec["min"], spec["max"]
    for name, v in (("min", lo), ("max", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{where}: {name} must be a number, got {v!r}")
    if lo > hi:
        raise ConfigError(f"{where}: min {lo} is greater than max {hi}")
    q = spec.get("q")
    if dist.startswith("q_"):
        q = 1 if q is None else q
        if isinstance(q, bool) or not isinstance(q, (int, float)) or q <= 0:
            raise ConfigError(f"{where}: q must be a positive number, got {q!r}")
    integer = dist == "int_uniform" or (dist == "q_uniform" and all(isinstance(v, int) for v in (lo, hi, q)))
    if dist == "int_uniform" and not (isinstance(lo, int) and isinstance(hi, int)):
        raise ConfigError(f"{where}: int_uniform needs integer min and max, got {lo!r} and {hi!r}")
    if dist in ("log_uniform", "q_log_uniform"):       # W&B: min/max are natural-log exponents
        lo, hi = math.exp(lo), math.exp(hi)
    elif dist == "inv_log_uniform":                      # W&B: 1/X is log-uniform with exponents min/max
        lo, hi = math.exp(-hi), math.exp(-lo)
    elif "log_uniform" in dist and lo <= 0:              # *_log_uniform_values
        raise ConfigError(f"{where}: {dist} needs min > 0 (the values are sampled on a log scale), got {lo}")
    return Param(path, dist, low=float(lo), high=float(hi), q=float(q) if q is not None else None, integer=integer)


def _pruning(spec: Any, where: str) -> Pruning | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: early_terminate must be a mapping, e.g. {{type: median, metric: l2.valid}}")
    known = {"type", "metric", "goal", "min_iter", "max_iter", "eta", "s", "strict", "startup_trials", "interval"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"{where}: early_terminate has unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}")
    kind = str(spec.get("type", "median")).lower()
    if kind not in ("median", "hyperband"):
        raise ConfigError(f"{where}: early_terminate.type {spec.get('type')!r} is unknown; use median or hyperband")
    if not spec.get("metric"):
        raise ConfigError(f"{where}: early_terminate.metric must name a metric logged at every step, e.g. l2.valid "
                          f"(LGBModel's validation loss per iteration)")
    goal = str(spec.get("goal", "minimize")).lower()
    if goal not in GOALS:
        raise ConfigError(f"{where}: early_terminate.goal must be minimize or maximize")
    ints = {}
    for key, default in (("min_iter", 0), ("eta", 3), ("startup_trials", 5), ("interval", 1)):
        v = spec.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (key in ("eta", "interval") and v < 1):
            raise ConfigError(f"{where}: early_terminate.{key} must be a {'positive' if key in ('eta', 'interval') else 'non-negative'} integer, got {v!r}")
        ints[key] = v
    max_iter = spec.get("max_iter")
    if max_iter is not None and (not isinstance(max_iter, int) or max_iter < 1):
        raise ConfigError(f"{where}: early_terminate.max_iter must be a positive integer")
    return Pruning(kind, str(spec["metric"]), goal, ints["min_iter"], max_iter, ints["eta"], ints["startup_trials"],
                   ints["interval"])


def check_path(config: dict, path: str) -> None:
    """A swept key must exist in the config, except a new keyword argument directly under a ``kwargs``
    mapping (a model parameter the config leaves at its default)."""
    where = f"parameters.{path}"
    parts = path.split(".")
    cur: Any = config
    for i, part in enumerate(parts):
        here = ".".join(parts[:i]) or "the config"
        last = i == len(parts) - 1
        if isinstance(cur, dict):
            if part in cur:
                cur = cur[part]
                continue
            if last and parts[i - 1:i] == ["kwargs"]:
                return
            keys = ", ".join(map(str, list(cur)[:12])) or "nothing"
            raise ConfigError(f"{where}: the config has no key {part!r} at {here} (it has: {keys}); name an "
                              f"existing key by its dotted path, e.g. task.model.kwargs.learning_rate")
        if isinstance(cur, list):
            if part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
                continue
            raise ConfigError(f"{where}: {here} is a list of {len(cur)}; {part!r} is not an index into it")
        raise ConfigError(f"{where}: {here} is a {type(cur).__name__}, not a mapping; {part!r} cannot be under it")
