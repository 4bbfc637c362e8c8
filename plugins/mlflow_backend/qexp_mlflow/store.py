"""MlflowStore: one MLflow tracking store as qexp's manager, experiments and recorders share it.

It holds the ``MlflowClient``, MLflow's batch limits, where new experiments keep artifacts, the short-lived
experiment name -> id cache, and the recorders of this process with buffered writes (a search flushes them
first). The objects above it call this, never each other's private methods (as ``qexp_file.store``).
"""
from __future__ import annotations

import time
import weakref
from typing import Any, Protocol

from .client import batch_limits, default_artifact_root, make_client, normalize_uri, retry

# A name -> id lookup is reused this long: R.start(experiment_name=...) in a loop of short runs would
# otherwise ask MLflow every time (the Lightning complaint, pytorch-lightning #3393). Deleting through this
# store forgets at once; an experiment deleted by another process within the window makes create_run
# refuse, which the recorder reports and forgets (MLflow's fluent API keeps its experiment id forever).
NAME_CACHE_SECONDS = 2.0


class Flushable(Protocol):
    def flush(self) -> None: ...


class MlflowStore:
    """The client and shared state of one MLflow tracking store (``uri`` already normalised or not)."""

    def __init__(self, uri: str, artifact_root: str | None = None):
        self.uri = normalize_uri(uri)
        self.client: Any = make_client(self.uri)
        self.artifact_root = artifact_root or default_artifact_root(self.uri)
        self.batch_limits = batch_limits()
        self._live: weakref.WeakSet[Any] = weakref.WeakSet()
        self._ids_by_name: dict[str, tuple[str, float]] = {}

    # ---- recorders with buffered writes -------------------------------------------------------
    def track(self, recorder: Flushable) -> None:
        """Remember a recorder that holds buffered writes, so :meth:`flush_all` writes them before a search."""
        self._live.add(recorder)

    def flush_all(self) -> None:
        """Write the buffered params and metrics of every recorder of this store in this process."""
        for rec in list(self._live):
            rec.flush()

    # ---- experiment names ---------------------------------------------------------------------
    def remember(self, name: str, experiment_id: str) -> None:
        self._ids_by_name[name] = (str(experiment_id), time.monotonic())

    def cached_id(self, name: str) -> str | None:
        """The id of experiment ``name`` if it was looked up less than ``NAME_CACHE_SECONDS`` ago."""
        hit = self._ids_by_name.get(name)
        if hit is not None and time.monotonic() - hit[1] < NAME_CACHE_SECONDS:
            return hit[0]
        return None

    def forget_experiment(self, experiment_id: str) -> None:
        """Drop the cached name lookups that point at ``experiment_id`` (deleted or found stale)."""
        for name, (exp_id, _) in list(self._ids_by_name.items()):
            if exp_id == str(experiment_id):
                self._ids_by_name.pop(name, None)

    # ---- experiments --------------------------------------------------------------------------
    def active_experiments(self) -> list[Any]:
        """Every active MLflow experiment, page by page."""
        return self.experiments(view_type=1)

    def experiments(self, view_type: int = 1) -> list[Any]:
        """MLflow experiments of a view type (1 active, 2 deleted, 3 all), page by page."""
        out: list[Any] = []
        token = None
        while True:
            page = retry(self.client.search_experiments, view_type=view_type, max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out
