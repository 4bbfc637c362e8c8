"""Everything the pages read, through qexp's own API only (``ExpManager`` / ``Recorder``), so the UI works
on every backend. Search rows are core's (``ExpManager.search_rows``): ``run_id, experiment_id, run_name,
status, start_time, end_time`` (ms) and ``params``, ``metrics``, ``tags`` dicts; a metric logged as NaN is
present (``nan``), one never logged is absent."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from qexp.ext import PARENT_TAG, RUN_NAME_TAG, ExpManager, ExpNotFoundError, Recorder, RecorderNotFoundError

RUN_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
SUMMARY_SECONDS = 2.0     # experiment counts are reused this long (a store of 100,000 runs is counted once)
NAMES_SECONDS = 2.0       # the experiment list, reused as long by every runs-table refresh
RECORDER_SECONDS = 30.0   # recorders of RUNNING rows, kept for their heartbeats


@dataclass
class Page:
    rows: list[dict[str, Any]]
    next_token: str | None
    offset: int | None   # position of the first row in the whole result (None: the backend cannot tell)


class UIStore:
    """The manager of the store the UI shows, plus small caches."""

    def __init__(self, manager: ExpManager):
        self.manager = manager
        self._lock = threading.Lock()
        self._summary: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._experiments: tuple[float, list[Any]] | None = None
        self._recorders: dict[str, tuple[float, Recorder]] = {}

    # ---- experiments --------------------------------------------------------------------------
    def experiments(self, fresh: bool = False) -> list[Any]:
        """Active experiments in id order (reused for a couple of seconds)."""
        with self._lock:
            if not fresh and self._experiments and time.monotonic() < self._experiments[0]:
                return self._experiments[1]
        exps = sorted(self.manager.list_experiments().values(),
                      key=lambda e: (0, int(e.id)) if str(e.id).isdigit() else (1, str(e.id)))
        with self._lock:
            self._experiments = (time.monotonic() + NAMES_SECONDS, exps)
        return exps

    def deleted_experiments(self) -> list[Any] | None:
        """Deleted experiments the backend keeps; None when it keeps none."""
        gone = self.manager.list_deleted_experiments()
        return None if gone is None else sorted(gone, key=lambda e: str(e.name))

    def experiment_names(self) -> dict[str, str]:
        return {str(e.id): e.name for e in self.experiments()}

    def summary(self, fresh: bool = False) -> dict[str, dict[str, Any]]:
        """Per experiment id: ``counts`` by status, ``total`` and ``last_activity`` (ms). Reused for a few
        seconds, longer where counting is slow (a backend that reads every run to count them)."""
        with self._lock:
            if not fresh and self._summary and time.monotonic() < self._summary[0]:
                return self._summary[1]
        t0 = time.monotonic()
        stats = self.manager.run_stats()
        took = time.monotonic() - t0
        with self._lock:
            self._summary = (time.monotonic() + max(SUMMARY_SECONDS, 20 * took), stats)
        return stats

    def fast_counts(self) -> bool:
        """Whether the backend counts runs without reading them (then the runs table shows its total)."""
        own = getattr(type(self.manager), "_run_stats", None)
        return own is not None and own is not getattr(ExpManager, "_run_stats", None)

    # ---- runs ---------------------------------------------------------------------------------
    def runs_page(self, exp_ids: list[str] | None, filter_string: str, order_by: list[str], size: int,
                  token: str | None) -> Page:
        """One page of a search, paged and sorted by the backend (``page_token``)."""
        rows = self.manager.search_rows(exp_ids, filter_string=filter_string, order_by=order_by, max_results=size,
                                        page_token=token)
        return Page(ui_rows(rows), rows.next_page_token, rows.page_offset)

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        if not RUN_ID.match(run_id):
            return None
        rows = ui_rows(self.manager.search_rows(None, filter_string=f"attributes.run_id = '{run_id}'",
                                                max_results=1))
        return rows[0] if rows else None

    def rows_for(self, run_ids: list[str]) -> list[dict[str, Any]]:
        ids = [r for r in run_ids if RUN_ID.match(r)]
        if not ids:
            return []
        quoted = ", ".join(f"'{r}'" for r in ids)
        rows = {r["run_id"]: r for r in ui_rows(self.manager.search_rows(
            None, filter_string=f"attributes.run_id IN ({quoted})"))}
        return [rows[r] for r in ids if r in rows]

    def children(self, run_id: str, limit: int = 5000) -> list[dict[str, Any]]:
        if not RUN_ID.match(run_id):
            return []
        return ui_rows(self.manager.search_rows(None, filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'",
                                                order_by=["attributes.start_time ASC"], max_results=limit))

    def recorder(self, run_id: str) -> Recorder:
        if not RUN_ID.match(run_id):
            raise RecorderNotFoundError(f"{run_id!r} is not a run id")
        return self.manager.get_recorder_by_id(run_id)

    def heartbeats(self, rows: list[dict[str, Any]]) -> dict[str, int | None]:
        """Last heartbeats of the RUNNING rows (``Recorder.last_heartbeat_ms``); their recorders are kept a
        while, so a refresh of the table asks each run for its heartbeat only."""
        out: dict[str, int | None] = {}
        now = time.monotonic()
        for r in rows:
            if r["status"] != "RUNNING":
                continue
            run_id = r["run_id"]
            with self._lock:
                hit = self._recorders.get(run_id)
            try:
                if hit is None or now > hit[0]:
                    hit = (now + RECORDER_SECONDS, self.recorder(run_id))
                    with self._lock:
                        self._recorders[run_id] = hit
                out[run_id] = hit[1].last_heartbeat_ms()
            except Exception:  # noqa: BLE001 - deleted meanwhile, or a backend that cannot tell
                out[run_id] = None
        with self._lock:  # forget recorders of runs no longer shown running
            for k in [k for k, (t, _) in self._recorders.items() if now > t + RECORDER_SECONDS]:
                del self._recorders[k]
        return out

    def delete_run(self, run_id: str) -> None:
        rec = self.recorder(run_id)
        self.manager.get_exp(experiment_id=rec.experiment_id, create=False).delete_recorder(recorder_id=run_id)
        with self._lock:
            self._summary = None


def ui_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Core's search rows with ``experiment_id`` as text and ``run_name`` as the run shows it (its
    ``mlflow.runName`` tag, which a rename changes)."""
    for r in rows:
        r["experiment_id"] = str(r["experiment_id"])
        r["run_name"] = r["tags"].get(RUN_NAME_TAG) or r.get("run_name") or ""
    return rows


def not_found(exc: Exception) -> bool:
    return isinstance(exc, (RecorderNotFoundError, ExpNotFoundError))
