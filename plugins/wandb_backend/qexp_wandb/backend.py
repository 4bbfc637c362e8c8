"""The ``wandb://`` backend: a local qexp store that every read uses, with each run mirrored into W&B.

W&B is a write-only sink for qexp (its offline files cannot be queried, its API needs a server), so the
backend wraps the manager of a local store (``store=``, default ``./qexp_runs``) and links every recorder it
hands out to a :class:`~qexp_wandb.mirror.WandbMirror`. The recorders are the local store's own objects, so
reads, search and artifacts behave exactly as on that store; the link makes the recorder events reach W&B.
"""
from __future__ import annotations

import threading
from typing import Any

import pandas as pd

from qexp import hookimpl
from qexp.ext import DEFAULT_URI, Experiment, ExpManager, Recorder, create_manager, resolve_uri

from ._lazy import import_wandb
from .mirror import LINK_ATTR, Link, WandbMirror, link_of
from .uri import WandbTarget, parse_wandb_uri

_mirrors: dict[tuple, WandbMirror] = {}
_mirrors_lock = threading.Lock()


def mirror_for(target: WandbTarget) -> WandbMirror:
    """One mirror per W&B target in a process, so managers made for the same URI share open runs."""
    key = target.wandb_key()
    with _mirrors_lock:
        mirror = _mirrors.get(key)
        if mirror is None:
            mirror = _mirrors[key] = WandbMirror(target)
        return mirror


class WandbExpManager(ExpManager):
    """Experiments of the local store ``store``; their runs are mirrored into W&B project ``project``."""

    def __init__(self, uri: str, default_exp_name: str = "Experiment", **kwargs: Any):
        target = parse_wandb_uri(uri)
        import_wandb()  # fail now with the install hint, not at the first run
        super().__init__(uri, default_exp_name)
        self.target = target
        self.local: ExpManager = create_manager(target.store or resolve_uri(DEFAULT_URI),
                                                default_exp_name=default_exp_name, **kwargs)
        self.mirror = mirror_for(target)
        ensure_events_plugin()

    def __getattr__(self, name: str) -> Any:
        # the local store's extras (rebuild_index, ...) stay reachable, e.g. for `qexp index rebuild`
        if name.startswith("__") or name in ("local", "target", "mirror"):
            raise AttributeError(name)
        return getattr(self.local, name)

    def link(self, recorder: Recorder, experiment_name: str | None = None) -> Recorder:
        setattr(recorder, LINK_ATTR, Link(self.mirror, experiment_name))
        return recorder

    def _wrap(self, exp: Experiment) -> WandbExperiment:
        return WandbExperiment(exp, self)

    def _create_exp(self, name: str) -> Experiment:
        return self._wrap(self.local.create_exp(name))

    def _get_exp(self, experiment_id: str | None, experiment_name: str | None) -> Experiment:
        return self._wrap(self.local._get_exp(experiment_id, experiment_name))

    def _list_experiments(self) -> list[Experiment]:
        return [self._wrap(e) for e in self.local._list_experiments()]

    def _delete_exp(self, experiment_id: str) -> None:
        self.local._delete_exp(experiment_id)

    def _get_recorder_by_id(self, recorder_id: str) -> Recorder:
        return self.link(self.local.get_recorder_by_id(recorder_id))

    def search_records(self, experiment_ids: Any = None, filter_string: str = "", order_by: Any = None,
                       max_results: int | None = None, page_token: str | None = None,
                       **kwargs: Any) -> pd.DataFrame:
        return self.local.search_records(experiment_ids, filter_string=filter_string, order_by=order_by,
                                         max_results=max_results, page_token=page_token, **kwargs)

    def _search_runs(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                     max_results: int | None) -> list[dict]:
        return self.local._search_runs(experiment_ids, clauses, orders, max_results)

    def _search_runs_page(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                          max_results: int | None, page_token: str | None) -> tuple[list[dict], str | None]:
        return self.local._search_runs_page(experiment_ids, clauses, orders, max_results, page_token)

    def _run_stats(self, experiment_ids: list[str] | None) -> dict[str, dict[str, Any]]:
        return self.local._run_stats(experiment_ids)

    def _page_offset(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                     page_token: str | None) -> int | None:
        return self.local._page_offset(experiment_ids, clauses, orders, page_token)

    def _list_deleted_experiments(self) -> list[Experiment] | None:
        gone = self.local._list_deleted_experiments()
        return None if gone is None else [self._wrap(e) for e in gone]


class WandbExperiment(Experiment):
    """An experiment of the local store whose recorders come out linked to the W&B mirror."""

    def __init__(self, local: Experiment, manager: WandbExpManager):
        super().__init__(local.id, local.name, manager)
        self.local = local

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "local":
            raise AttributeError(name)
        return getattr(self.local, name)

    def _link(self, recorder: Recorder) -> Recorder:
        return self.manager.link(recorder, self.name)

    def create_recorder(self, recorder_name: str | None = None) -> Recorder:
        return self._link(self.local.create_recorder(recorder_name))

    def _get_recorder_by_id(self, recorder_id: str) -> Recorder:
        return self._link(self.local._get_recorder_by_id(recorder_id))

    def _recorders_named(self, name: str) -> list[Recorder]:
        return [self._link(r) for r in self.local._recorders_named(name)]

    def _list_recorders(self, max_results: int | None, filter_string: str) -> list[Recorder]:
        return [self._link(r) for r in self.local._list_recorders(max_results, filter_string)]

    def _delete_recorder(self, recorder_id: str) -> None:
        self.local._delete_recorder(recorder_id)


# ---- events of linked recorders ---------------------------------------------------------------------
class _LinkedRecorderEvents:
    """Forwards the events of recorders linked by a wandb:// backend to their mirror. Registered the first
    time such a backend is made, so processes that never use W&B pay nothing on each event."""

    @hookimpl
    def recorder_started(self, recorder: Any) -> None:
        link = link_of(recorder)
        if link is not None:
            link.mirror.on_started(recorder)

    @hookimpl
    def recorder_params_logged(self, recorder: Any, params: dict) -> None:
        link = link_of(recorder)
        if link is not None:
            link.mirror.on_params(recorder, params)

    @hookimpl
    def recorder_metrics_logged(self, recorder: Any, metrics: dict, step: int | None) -> None:
        link = link_of(recorder)
        if link is not None:
            link.mirror.on_metrics(recorder, metrics, step)

    @hookimpl
    def recorder_tags_set(self, recorder: Any, tags: dict) -> None:
        link = link_of(recorder)
        if link is not None:
            link.mirror.on_tags(recorder, tags)

    @hookimpl
    def recorder_artifact_logged(self, recorder: Any, local_path: str, artifact_path: str | None) -> None:
        link = link_of(recorder)
        if link is not None:
            link.mirror.on_artifact(recorder, local_path, artifact_path)

    @hookimpl
    def recorder_ended(self, recorder: Any, status: str) -> None:
        link = link_of(recorder)
        if link is not None:
            link.mirror.on_ended(recorder, status)


EVENTS_PLUGIN_NAME = "wandb-backend-events"
_events = _LinkedRecorderEvents()


def ensure_events_plugin() -> None:
    """Register the event forwarder once (again after ``reload_plugins`` dropped it)."""
    from qexp.ext import get_plugin, register_plugin
    with _mirrors_lock:
        if get_plugin(EVENTS_PLUGIN_NAME) is None:
            register_plugin(_events, name=EVENTS_PLUGIN_NAME)
