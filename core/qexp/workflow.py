"""``qexp run``: Qlib's qrun pipeline on qexp.

render (jinja, environment) -> YAML -> BASE_CONFIG_PATH merge (``__DROP__``) -> ``--set`` overrides ->
``sys`` paths -> ``qexp.init(**qlib_init)`` -> ``task_train(task)`` -> the merged config saved as ``config``.
"""
from __future__ import annotations

import copy
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import registry
from .config import find_placeholders, get_callable_kwargs, get_item_from_obj, set_by_path, update_config
from .exceptions import ConfigError, QexpError
from .plugins import load_plugins
from .session import init
from .trainer import task_train

DEFAULT_EXPERIMENT = "workflow"
KNOWN_PLACEHOLDERS = {"<MODEL>", "<DATASET>", "<PRED>"}


@dataclass
class Workflow:
    """A loaded config: the merged dict, where it came from, and the experiment name to use."""
    config: dict
    path: Path
    experiment_name: str
    notes: list[str] = field(default_factory=list)


def render(text: str, path: Path) -> str:
    """Jinja-render ``text`` with the environment variables it names (unset ones render empty, with a warning)."""
    import jinja2
    from jinja2 import meta
    env = jinja2.Environment()
    try:
        names = meta.find_undeclared_variables(env.parse(text))
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: template syntax error: {exc.message}") from None
    missing = sorted(n for n in names if n not in os.environ)
    if missing:
        warnings.warn(f"{path}: environment variable(s) {', '.join(missing)} are not set and render as empty "
                      f"strings", stacklevel=3)
    return env.from_string(text).render({n: os.environ[n] for n in names if n in os.environ})


def load_yaml(text: str, path: Path) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a workflow config must be a mapping with at least a 'task' key")
    return data


def parse_set(items: list[str]) -> list[tuple[str, Any]]:
    """``["task.model.kwargs.lr=0.1", "x=[1, 2]"]`` -> dotted paths with YAML-typed values."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. task.model.kwargs.num_leaves=64")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML: {exc}") from None
        out.append((key.strip(), value))
    return out


def load_workflow(path: str | os.PathLike, overrides: list[str] | None = None,
                  experiment_name: str | None = None) -> Workflow:
    """Read, render and merge a workflow config; apply ``--set`` overrides."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    config = load_yaml(render(p.read_text(), p), p)
    base_path = config.pop("BASE_CONFIG_PATH", None)
    if base_path:
        candidates = [Path(base_path), p.parent / base_path]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ConfigError(f"BASE_CONFIG_PATH {base_path!r} not found (looked at {', '.join(map(str, candidates))})")
        # the base is plain YAML, not rendered, and its own BASE_CONFIG_PATH is not followed (as in Qlib)
        base = load_yaml(found.read_text(), found)
        base.pop("BASE_CONFIG_PATH", None)
        config = update_config(base, config)
    for key, value in parse_set(overrides or []):
        set_by_path(config, key, value)
    name = experiment_name or config.get("experiment_name") or DEFAULT_EXPERIMENT
    return Workflow(config, p, name)


def apply_sys(config: dict, config_dir: Path) -> None:
    section = config.get("sys") or {}
    paths = section.get("path", [])
    for entry in [paths] if isinstance(paths, str) else paths:
        if entry not in sys.path:
            sys.path.append(str(entry))
    rel = section.get("rel_path", [])
    for entry in [rel] if isinstance(rel, str) else rel:
        full = str((config_dir / entry).resolve())
        if full not in sys.path:
            sys.path.append(full)


def init_settings(config: dict, uri: str | None) -> dict:
    """The keyword arguments for ``qexp.init`` from ``qlib_init`` (and ``--uri``)."""
    settings = dict(config.get("qlib_init") or {})
    if not isinstance(settings, dict):
        raise ConfigError("qlib_init: must be a mapping (provider_uri, region, ...)")
    if uri:
        settings.pop("exp_manager", None)
        settings["uri"] = uri
    return settings


# ---- validation (--dry-run) -----------------------------------------------------------------------
def validate(config: dict) -> list[str]:
    """Every problem found in the config, each naming its key path; empty when it is runnable."""
    problems: list[str] = []
    task = config.get("task")
    if not isinstance(task, dict):
        return ["task: missing; a workflow needs task.model, task.dataset and usually task.record"]
    for key in ("model", "dataset"):
        if key not in task:
            problems.append(f"task.{key}: missing")
    problems += _check_classes(task, "task")
    for path, ph in find_placeholders(task):
        if ph in KNOWN_PLACEHOLDERS:
            continue
        try:
            get_item_from_obj(task, ph[1:-1])
        except (KeyError, IndexError, ValueError, AttributeError, TypeError):
            problems.append(f"task.{path}: placeholder {ph} does not resolve (known: "
                            f"{', '.join(sorted(KNOWN_PLACEHOLDERS))} or a <dotted.path> inside task)")
    problems += _check_segments(task)
    return problems


def _check_classes(node: Any, path: str) -> list[str]:
    problems = []
    if isinstance(node, dict):
        if isinstance(node.get("class"), str):
            try:
                get_callable_kwargs(node, where=path)
            except QexpError as exc:
                problems.append(str(exc).split(". Registered classes")[0])
        for k, v in node.items():
            problems += _check_classes(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, str) and path.endswith(".record"):
                problems += _check_classes({"class": v}, f"{path}.{i}")
            problems += _check_classes(v, f"{path}.{i}")
    return problems


def _check_segments(task: dict) -> list[str]:
    import pandas as pd
    ds = (task.get("dataset") or {}).get("kwargs") or {}
    segments = ds.get("segments")
    if segments is None:
        return []
    if not isinstance(segments, dict):
        return ["task.dataset.kwargs.segments: must map segment names to [start, end]"]
    problems, bounds = [], {}
    for name, seg in segments.items():
        where = f"task.dataset.kwargs.segments.{name}"
        if not isinstance(seg, (list, tuple)) or len(seg) != 2:
            problems.append(f"{where}: must be [start, end], got {seg!r}")
            continue
        try:
            start, end = (pd.Timestamp(x) if x is not None else None for x in seg)
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}: not a date: {exc}")
            continue
        if start is not None and end is not None and start > end:
            problems.append(f"{where}: start {seg[0]} is after end {seg[1]}")
        bounds[name] = (start, end)
    order = [n for n in ("train", "valid", "test") if n in bounds]
    for a, b in zip(order, order[1:]):
        if bounds[a][1] is not None and bounds[b][0] is not None and bounds[a][1] >= bounds[b][0]:
            problems.append(f"task.dataset.kwargs.segments.{b}: starts {bounds[b][0].date()} on or before "
                            f"{a} ends ({bounds[a][1].date()}); segments must be ordered train < valid < test")
    handler = ds.get("handler")
    if isinstance(handler, dict):
        hk = handler.get("kwargs") or {}
        h_start, h_end = hk.get("start_time"), hk.get("end_time")
        for name, (start, end) in bounds.items():
            if h_start is not None and start is not None and start < pd.Timestamp(h_start):
                problems.append(f"task.dataset.kwargs.segments.{name}: starts before the handler's start_time "
                                f"{h_start}")
            if h_end is not None and end is not None and end > pd.Timestamp(h_end):
                problems.append(f"task.dataset.kwargs.segments.{name}: ends after the handler's end_time {h_end}")
    return problems


def check_provider(settings: dict) -> list[str]:
    """The data provider named by ``qlib_init.provider_uri`` can be opened (no run is started)."""
    uri = settings.get("provider_uri")
    if uri is None:
        return []
    load_plugins()
    if isinstance(uri, dict):
        uri = uri.get("day") or next(iter(uri.values()))
    try:
        registry.data_providers.create(os.path.expanduser(str(uri)))
    except Exception as exc:  # the provider's own message says what is wrong and how to fix it
        return [f"qlib_init.provider_uri: {exc}"]
    return []


def run_workflow(wf: Workflow, uri: str | None = None) -> Any:
    """Initialise qexp from the config, train the task and save the merged config as artifact ``config``."""
    problems = validate(wf.config)
    if problems:
        raise ConfigError("invalid workflow config:\n  " + "\n  ".join(problems))
    apply_sys(wf.config, wf.path.parent)
    init(**init_settings(wf.config, uri))
    recorder = task_train(copy.deepcopy(wf.config["task"]), experiment_name=wf.experiment_name)
    recorder.save_objects(config=wf.config)
    return recorder
