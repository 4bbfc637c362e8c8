"""The Optuna side of a sweep: where the study is kept, samplers, pruners, and turning a trial into config
values (``Space`` parameters -> ``trial.suggest_*``)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

from qexp.ext import local_path, qexp_home, require_extra, sqlite_path, uri_scheme

from .space import Param, Pruning, Space

STUDY_FILE = os.path.join(".qexp", "sweeps.sqlite")


def optuna_module() -> Any:
    optuna = require_extra("optuna", "optuna", "qexp sweep")
    optuna.logging.set_verbosity(logging.WARNING)  # qexp prints one line per trial itself
    return optuna


def default_study_uri(tracking_uri: str) -> str:
    """A file store DIR keeps its sweeps in ``DIR/.qexp/sweeps.sqlite``; any other store in a SQLite file
    under the user's qexp folder named by a hash of the tracking URI."""
    folder = local_path(tracking_uri)
    if folder is not None:
        return "sqlite:///" + os.path.join(folder, STUDY_FILE)
    digest = hashlib.sha1(tracking_uri.encode()).hexdigest()[:16]
    return "sqlite:///" + os.path.join(qexp_home(), "sweeps", f"{digest}.sqlite")


def study_file(study_uri: str) -> str | None:
    """The file of a ``sqlite:///`` study URI (absolute), else None (a server)."""
    return sqlite_path(study_uri) if uri_scheme(study_uri) == "sqlite" else None


def storage(study_uri: str) -> Any:
    optuna = optuna_module()
    path = study_file(study_uri)
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # trials report from several processes: wait for SQLite's lock instead of failing at once
        return optuna.storages.RDBStorage(study_uri, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(sqlalchemy_url(study_uri))


_DRIVERS = {"postgresql": (("psycopg", ""), ("psycopg2", "+psycopg2")), "mysql": (("MySQLdb", ""), ("pymysql", "+pymysql"))}


def sqlalchemy_url(uri: str) -> str:
    """A bare ``postgresql://`` or ``mysql://`` names the driver that is installed (SQLAlchemy would pick
    psycopg 3 or mysqlclient, which the postgres and mlflow extras do not bring)."""
    scheme, sep, rest = uri.partition("://")
    for module, suffix in _DRIVERS.get(scheme, ()):
        try:
            __import__(module)
        except ImportError:
            continue
        return f"{scheme}{suffix}{sep}{rest}"
    return uri


def sampler(space: Space, parallel: int, seed: int | None) -> Any:
    optuna = optuna_module()
    seed = space.seed if seed is None else seed
    if space.method == "tpe":
        # the constant liar keeps parallel trials from all sampling the same point
        return optuna.samplers.TPESampler(seed=seed, constant_liar=parallel > 1)
    return optuna.samplers.RandomSampler(seed=seed)  # random; grid points are enqueued by the driver


def pruner(pruning: Pruning | None) -> Any:
    optuna = optuna_module()
    if pruning is None:
        return optuna.pruners.NopPruner()
    if pruning.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, pruning.min_iter),
                                              max_resource=pruning.max_iter or "auto",
                                              reduction_factor=pruning.eta)
    # trials report only every `interval` steps already, so the pruner checks at every report
    return optuna.pruners.MedianPruner(n_startup_trials=pruning.startup_trials, n_warmup_steps=pruning.min_iter,
                                       interval_steps=1)


def direction(goal: str) -> str:
    return "maximize" if goal == "maximize" else "minimize"


# ---- parameters <-> Optuna ----------------------------------------------------------------------------------
def encode(v: Any) -> Any:
    """Optuna's categories are None, bool, int, float or str; a list or mapping travels as JSON text."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return "json:" + json.dumps(v, sort_keys=True, default=str)


def decode(v: Any, choices: list[Any]) -> Any:
    for c in choices:
        if encode(c) == v:
            return c
    return v


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """The config values of one trial, by dotted path."""
    return {p.path: _suggest(trial, p) for p in space.params}


def _suggest(trial: Any, p: Param) -> Any:
    d = p.distribution
    if d == "constant":
        return p.choices[0]
    if d == "categorical":
        return decode(trial.suggest_categorical(p.path, [encode(c) for c in p.choices]), p.choices)
    if d == "int_uniform":
        return trial.suggest_int(p.path, int(p.low), int(p.high))
    if d == "q_uniform":
        if p.integer:
            return trial.suggest_int(p.path, int(p.low), int(p.high), step=int(p.q or 1))
        return trial.suggest_float(p.path, p.low, p.high, step=p.q)
    if d == "uniform":
        return trial.suggest_float(p.path, p.low, p.high)
    # the log-uniform family: Optuna has no log scale with a step, so q rounds the sampled value
    v = trial.suggest_float(p.path, p.low, p.high, log=True)
    if p.q:
        v = round(v / p.q) * p.q
        return int(round(v)) if float(p.q).is_integer() else v
    return v


def grid_point(point: dict[str, Any]) -> dict[str, Any]:
    """A grid point as Optuna's fixed parameters (categories encoded)."""
    return {k: encode(v) for k, v in point.items()}


def point_key(point: dict[str, Any]) -> str:
    return json.dumps({k: encode(v) for k, v in sorted(point.items())}, sort_keys=True, default=str)
