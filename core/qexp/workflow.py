"""``qexp run``: Qlib's qrun pipeline on qexp.

render (jinja, environment) -> YAML -> BASE_CONFIG_PATH merge (``__DROP__``) -> ``--set`` overrides ->
``sys`` paths -> ``qexp.init(**qlib_init)`` -> ``task_train(task)`` -> the merged config saved as ``config``.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import logging
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import registry
from .config import (
    fill_placeholder,
    find_placeholders,
    get_callable_kwargs,
    get_item_from_obj,
    init_instance_by_config,
    set_by_path,
    update_config,
)
from .exceptions import ConfigError, QexpError
from .hookspecs import hookimpl
from .plugins import call_init_hooks, load_plugins, register, unregister
from .progress import phase
from .session import init
from .trainer import task_train

log = logging.getLogger("qexp.workflow")

DEFAULT_EXPERIMENT = "workflow"
KNOWN_PLACEHOLDERS = {"<MODEL>", "<DATASET>", "<PRED>"}


@dataclass
class Workflow:
    """A loaded config: the merged dict, where it came from, and the experiment name to use."""
    config: dict
    path: Path
    experiment_name: str
    notes: list[str] = field(default_factory=list)
    recorder: Any = None
    """The run :func:`run_workflow` started (set as soon as it starts, so a failure can name it)."""


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
    settings.setdefault("capture_logs", True)  # qexp run keeps each run's log records as artifact logs/run.log
    return settings


# ---- validation (--dry-run) -----------------------------------------------------------------------
def validate(config: dict) -> list[str]:
    """Every problem found in the config, each naming its key path; empty when it is runnable."""
    return check_config(config)[0]


def check_config(config: dict) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` of a config, without data: classes resolve, constructors take the given
    keyword arguments (a ``**kwargs`` catch-all is asked through ``check_kwargs``), placeholders fill,
    segments are ordered."""
    problems: list[str] = []
    notes: list[str] = []
    task = config.get("task")
    if not isinstance(task, dict):
        return ["task: missing; a workflow needs task.model, task.dataset and usually task.record"], []
    for key in ("model", "dataset"):
        if key not in task:
            problems.append(f"task.{key}: missing")
    problems += _check_classes(task, "task", notes)
    for path, ph in find_placeholders(task):
        if ph in KNOWN_PLACEHOLDERS:
            continue
        try:
            get_item_from_obj(task, ph[1:-1])
        except (KeyError, IndexError, ValueError, AttributeError, TypeError):
            problems.append(f"task.{path}: placeholder {ph} does not resolve (known: "
                            f"{', '.join(sorted(KNOWN_PLACEHOLDERS))} or a <dotted.path> inside task)")
    problems += _check_segments(task)
    return problems, notes


def _check_classes(node: Any, path: str, notes: list[str] | None = None) -> list[str]:
    problems = []
    notes = [] if notes is None else notes
    if isinstance(node, dict):
        if isinstance(node.get("class"), str):
            try:
                cls, kwargs = get_callable_kwargs(node, where=path)
            except QexpError as exc:
                problems.append(str(exc).split(". Registered classes")[0])
            else:
                problems += _check_signature(cls, kwargs, path, notes)
        for k, v in node.items():
            problems += _check_classes(v, f"{path}.{k}", notes)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, str) and path.endswith(".record"):
                problems += _check_classes({"class": v}, f"{path}.{i}", notes)
            problems += _check_classes(v, f"{path}.{i}", notes)
    return problems


def _check_signature(cls: Any, kwargs: dict, path: str, notes: list[str]) -> list[str]:
    """The constructor takes ``kwargs`` (else a problem naming the key, with a near name); names a
    ``**kwargs`` catch-all would swallow go to ``cls.check_kwargs`` (warnings, in ``notes``), and a class
    with a ``dry_run_warnings(kwargs) -> list[str]`` classmethod adds its own warnings (in ``notes``), one
    with ``dry_run_problems(kwargs) -> list[str]`` its own problems (PortAnaRecord: the backtest keys)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # a builtin or C extension: nothing to check
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [n for n, p in params.items() if p.kind in kinds]
    catch_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    # a class registered under Qlib's name but defined under another (TCNTS for pytorch_tcn_ts.TCN) says so
    name = getattr(cls, "qlib_name", None) or getattr(cls, "__name__", str(cls))
    unknown = [k for k in kwargs if k not in named]
    problems = []
    if unknown and not catch_all:
        for k in unknown:
            near = difflib.get_close_matches(str(k), named, 1)
            problems.append(f"{path}.kwargs.{k}: {name} takes no argument {k!r}"
                            + (f"; did you mean {near[0]!r}?" if near else "")
                            + f" (it takes: {', '.join(named) or 'nothing'})")
    elif unknown:
        check = getattr(cls, "check_kwargs", None)
        if callable(check):
            try:
                notes += [f"{path}.kwargs: {name}: {m}" for m in check({k: kwargs[k] for k in unknown})]
            except Exception as exc:  # a checker that cannot run (library missing) must not stop the run
                notes.append(f"{path}.kwargs: {name}: could not check {', '.join(map(repr, unknown))} ({exc})")
    # a class may check what its signature cannot say (the keys of a record's nested config)
    check_more = getattr(cls, "dry_run_problems", None)
    if callable(check_more):
        try:
            problems += [f"{path}.kwargs: {m}" for m in check_more(dict(kwargs))]
        except Exception as exc:  # a checker that cannot run is a warning, never a stop
            notes.append(f"{path}.kwargs: {name}: could not check the arguments ({exc})")
    # a class may say what it would warn about when built (a pretrained model_path an earlier run writes)
    dry = getattr(cls, "dry_run_warnings", None)
    if callable(dry):
        try:
            notes += [f"{path}.kwargs: {m}" for m in dry(dict(kwargs))]
        except Exception as exc:  # as above: a warning, never a stop
            notes.append(f"{path}.kwargs: {name}: could not check the arguments ({exc})")
    # required arguments the config leaves out are not checked: handlers pass processors their fit times,
    # task_train passes records the recorder, model and dataset
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
        a_end, b_start = bounds[a][1], bounds[b][0]
        if a_end is not None and b_start is not None and a_end >= b_start:
            problems.append(f"task.dataset.kwargs.segments.{b}: starts {b_start.date()} on or before "
                            f"{a} ends ({a_end.date()}); segments must be ordered train < valid < test")
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


def check_store_uri(settings: dict) -> list[str]:
    """The tracking store opens as the run will open it, without creating anything: a store that does not
    exist yet is fine (the run creates it); a malformed URI, an unknown scheme or an unreachable server is a
    problem."""
    from .backends import create_manager
    from .exceptions import StoreNotFoundError
    from .session import _uri_from_exp_manager
    try:
        em_uri, _ = _uri_from_exp_manager(settings.get("exp_manager"))
        uri = settings.get("uri") or em_uri
        create_manager(uri, create=False)
    except StoreNotFoundError:
        return []
    except QexpError as exc:
        return [f"qlib_init.uri (or --uri): {exc}"]
    except Exception as exc:  # noqa: BLE001 - a backend's own error for a URI it cannot open
        first = (str(exc).strip().splitlines() or [""])[0]
        return [f"qlib_init.uri (or --uri): {type(exc).__name__}: {first}"]
    return []


INIT_ONLY = {"uri", "exp_manager", "default_exp_name", "mirrors", "skip_if_reg", "autolog", "artifact_root"}


def set_data_settings(settings: dict) -> None:
    """Hand ``qlib_init``'s plugin settings (``provider_uri``, ``region``, ...) to the plugins, as
    ``qexp.init`` does, without opening the tracking store (a dry run must not create it)."""
    load_plugins()
    call_init_hooks({k: v for k, v in settings.items() if k not in INIT_ONLY})


def check_data(config: dict) -> list[str]:
    """Problems the data would raise only after training: instrument lists that name nothing in the data,
    and a backtest benchmark without prices over the backtest range. Needs the data provider set."""
    from .data_api import get_provider, get_region, has_provider
    task = config.get("task")
    if not has_provider() or not isinstance(task, dict):
        return []
    provider = get_provider()
    problems: list[str] = []
    ds_kwargs = (task.get("dataset") or {}).get("kwargs") or {}
    handler = ds_kwargs.get("handler")
    if isinstance(handler, dict) and isinstance(handler.get("kwargs"), dict):
        hk = handler["kwargs"]
        if hk.get("instruments") is not None:
            problems += _check_instruments(provider, hk["instruments"], hk.get("start_time"), hk.get("end_time"),
                                           "task.dataset.kwargs.handler.kwargs.instruments")
    test = (ds_kwargs.get("segments") or {}).get("test") if isinstance(ds_kwargs.get("segments"), dict) else None
    records = task.get("record") or []
    for i, rec in enumerate([records] if isinstance(records, (dict, str)) else records):
        name = rec if isinstance(rec, str) else rec.get("class") if isinstance(rec, dict) else None
        if not isinstance(name, str) or not name.split(".")[-1] == "PortAnaRecord":
            continue
        cfg = (rec.get("kwargs") or {}).get("config") if isinstance(rec, dict) else None
        bt: dict = {}
        if cfg is None:  # PortAnaRecord's default config
            bench = "^gspc" if get_region() == "us" else "SH000300"
        elif isinstance(cfg, dict):
            bt = cfg.get("backtest") or {}
            bench = bt.get("benchmark", "SH000300")
        else:
            continue
        if bench is None or not isinstance(bench, (str, list, tuple)):
            continue
        start = bt.get("start_time") or (test[0] if isinstance(test, (list, tuple)) and test else None)
        end = bt.get("end_time") or (test[1] if isinstance(test, (list, tuple)) and len(test) > 1 else None)
        problems += _check_benchmark(provider, bench, start, end,
                                     f"task.record.{i}.kwargs.config.backtest.benchmark")
    return problems


def _check_instruments(provider: Any, instruments: Any, start: Any, end: Any, where: str) -> list[str]:
    try:
        codes = provider.list_instruments(instruments, start_time=start, end_time=end, as_list=True)
    except Exception as exc:
        return [f"{where}: {instruments!r} cannot be read from {provider.uri}: {exc}"]
    span = f" between {start} and {end}" if start or end else ""
    if isinstance(instruments, (list, tuple)):
        missing = [c for c in instruments if isinstance(c, str) and c not in set(codes)]
        if missing:
            return [f"{where}: {', '.join(map(repr, missing[:10]))} {'is' if len(missing) == 1 else 'are'} not in "
                    f"{provider.uri}{span}"]
    elif not codes:
        return [f"{where}: {instruments!r} holds no instrument in {provider.uri}{span}"]
    return []


def _check_benchmark(provider: Any, bench: Any, start: Any, end: Any, where: str) -> list[str]:
    codes = [bench] if isinstance(bench, str) else [str(c) for c in bench]
    span = f"between {start} and {end}" if start or end else "in its whole calendar"
    try:
        df = provider.features(codes, ["$close"], start, end)
        ok = len(df) > 0 and bool(df["$close"].notna().any())
    except Exception as exc:
        return [f"{where}: {codes} cannot be read from {provider.uri}: {exc}"]
    if ok:
        return []
    try:
        some = provider.list_instruments("all", as_list=True)[:5]
    except Exception:
        some = []
    hint = f" (instruments there: {', '.join(some)}, ...)" if some else ""
    return [f"{where}: {codes} has no prices in {provider.uri} {span}, so the backtest would fail after training."
            f" Use an instrument of that data{hint}, or benchmark: null for absolute returns"]


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


@dataclass
class DryRunReport:
    problems: list[str]
    warnings: list[str]


def dry_run(wf: Workflow, uri: str | None = None) -> DryRunReport:
    """Everything a run would check before training, without creating the store or a run: classes and
    constructor arguments, placeholders, segments, the store URI's scheme, the data folder, the instrument
    lists and the backtest benchmark's prices."""
    apply_sys(wf.config, wf.path.parent)
    problems, notes = check_config(wf.config)
    settings = init_settings(wf.config, uri)
    problems += check_store_uri(settings)
    provider_problems = check_provider(settings)
    problems += provider_problems
    if not provider_problems:
        set_data_settings(settings)
        problems += check_data(wf.config)
    return DryRunReport(problems, notes)


def run_name(task: dict) -> str | None:
    """A run name from the model and the data, e.g. ``LGBModel-Alpha158`` (Qlib names every run
    ``mlflow_recorder``)."""
    def short(cfg: Any) -> str | None:
        name = cfg.get("class") if isinstance(cfg, dict) else cfg if isinstance(cfg, str) else None
        return name.split(".")[-1] if isinstance(name, str) and name else None
    model = short(task.get("model"))
    ds = task.get("dataset")
    data = short(((ds.get("kwargs") or {}).get("handler")) if isinstance(ds, dict) else None) or short(ds)
    return "-".join(p for p in (model, data) if p) or None


class _RunWatcher:
    """Catches the run task_train starts in this thread, to save the config on it at once (a failed or
    killed run keeps it) and to name it when the run fails."""

    def __init__(self, config: dict):
        self.config = config
        self.thread = threading.get_ident()
        self.recorder: Any = None

    @hookimpl
    def recorder_started(self, recorder: Any) -> None:
        if self.recorder is None and threading.get_ident() == self.thread:
            self.recorder = recorder
            recorder.save_objects(config=self.config)


def run_workflow(wf: Workflow, uri: str | None = None) -> Any:
    """Initialise qexp from the config, check it against the data, train the task; the merged config is
    saved as artifact ``config`` when the run starts. A failure (an exception, Ctrl-C) ends the run FAILED
    with tag ``qexp.failure_reason`` and is re-raised; ``wf.recorder`` is the run."""
    problems, notes = check_config(wf.config)
    if problems:
        raise ConfigError("invalid workflow config:\n  " + "\n  ".join(problems))
    for note in notes:
        log.warning("%s", note)
    apply_sys(wf.config, wf.path.parent)
    init(**init_settings(wf.config, uri))
    problems = check_data(wf.config)
    if problems:
        raise ConfigError("the config does not fit the data (checked before training):\n  " + "\n  ".join(problems))
    watcher = _RunWatcher(wf.config)
    name = register(watcher, name=f"qexp-workflow-{id(watcher)}")
    task = copy.deepcopy(wf.config["task"])
    try:
        recorder = task_train(task, experiment_name=wf.experiment_name, recorder_name=run_name(task))
    except BaseException as exc:
        wf.recorder = watcher.recorder
        _record_failure(watcher.recorder, exc)
        raise
    finally:
        unregister(name)
    wf.recorder = recorder
    if watcher.recorder is None:  # no event reached the watcher: save the config now
        recorder.save_objects(config=wf.config)
    return recorder


def _record_failure(recorder: Any, exc: BaseException) -> None:
    if recorder is None:
        return
    reason = ("interrupted (KeyboardInterrupt, e.g. Ctrl-C)" if isinstance(exc, KeyboardInterrupt)
              else f"{type(exc).__name__}: {exc}")
    try:
        recorder.set_tags(**{"qexp.failure_reason": reason[:4000]})
    except Exception as tag_exc:  # the run is already FAILED; the original error matters more
        log.warning("could not tag run %s with its failure reason: %s", recorder.id, tag_exc)


def rerun_records(recorder: Any, records: list[str] | None = None) -> list[str]:
    """Generate the records of ``recorder``'s saved task again (all, or the classes named in ``records``) on
    its saved model: no new fit. The data settings come from the run's ``config``; the dataset is rebuilt
    from the task only when a record needs it. A FAILED run whose records now all succeed ends FINISHED.
    Returns the record class names generated."""
    try:
        task = recorder.load_object("task")
    except QexpError as exc:
        raise ConfigError(f"run {recorder.id} has no saved task to re-run records from ({exc})") from None
    try:
        config = recorder.load_object("config")
    except QexpError:
        config = {}
    set_data_settings({k: v for k, v in ((config or {}).get("qlib_init") or {}).items()})
    entries = task.get("record") or []
    entries = [entries] if isinstance(entries, (dict, str)) else list(entries)

    def cls_name(entry: Any) -> str:
        name = entry if isinstance(entry, str) else (entry or {}).get("class", "")
        return str(name).split(".")[-1]

    names = [cls_name(e) for e in entries]
    if records:
        unknown = [r for r in records if r not in names]
        if unknown:
            raise ConfigError(f"run {recorder.id}'s task has no record {', '.join(map(repr, unknown))}; its records "
                              f"are: {', '.join(names) or 'none'}")
        entries = [e for e in entries if cls_name(e) in records]
    placeholders = {ph for e in entries if isinstance(e, dict) for _, ph in find_placeholders(e)}
    needs_model = any(isinstance(e, str) for e in entries) or "<MODEL>" in placeholders
    needs_data = any(isinstance(e, str) for e in entries) or "<DATASET>" in placeholders
    model = recorder.load_object("params.pkl") if needs_model else None
    dataset = None
    if needs_data:
        with phase("dataset"):
            dataset = init_instance_by_config(copy.deepcopy(task["dataset"]), where="task.dataset")
    done = []
    for i, entry in enumerate(entries):
        filled = fill_placeholder(copy.deepcopy(entry), {"<MODEL>": model, "<DATASET>": dataset})
        r = init_instance_by_config(filled, where=f"task.record.{i}", recorder=recorder,
                                    try_kwargs={"model": model, "dataset": dataset})
        with phase(type(r).__name__):
            r.generate()
        done.append(type(r).__name__)
    recorder.set_tags(**{"qexp.records_rerun": ", ".join(done)})
    if recorder.status == recorder.STATUS_FA:
        recorder.end_run(recorder.STATUS_FI)
        recorder.delete_tags("qexp.failure_reason")
    return done
