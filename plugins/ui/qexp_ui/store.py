"""Everything the pages read, through qexp's own API only (``ExpManager`` / ``Recorder``), so the UI works
on every backend. Search rows come back as plain dicts: ``run_id, experiment_id, run_name, status,
start_time, end_time`` (ms) and ``params``, ``metrics``, ``tags`` dicts."""
from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from qexp.ext import ExpManager, ExpNotFoundError, Recorder, RecorderNotFoundError

from .quant import PARENT_TAG

RUN_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
SUMMARY_SECONDS = 2.0  # experiment counts are reused this long (a store of 100,000 runs is counted once)


@dataclass
class Page:
    rows: list[dict[str, Any]]
    next_token: str | None
    offset: int
    total: int | None


class UIStore:
    """The manager of the store the UI shows, plus small caches."""

    def __init__(self, manager: ExpManager):
        self.manager = manager
        self._lock = threading.Lock()
        self._summary: tuple[float, dict[str, dict[str, Any]]] | None = None

    # ---- experiments --------------------------------------------------------------------------
    def experiments(self) -> list[Any]:
        exps = list(self.manager.list_experiments().values())
        return sorted(exps, key=lambda e: (0, int(e.id)) if str(e.id).isdigit() else (1, str(e.id)))

    def deleted_experiments(self) -> list[Any]:
        lister = getattr(self.manager, "list_deleted_experiments", None)
        return list(lister()) if callable(lister) else []

    def experiment_names(self) -> dict[str, str]:
        return {str(e.id): e.name for e in self.experiments()}

    def experiment(self, exp_id: str) -> Any:
        return self.manager.get_exp(experiment_id=exp_id, create=False)

    def summary(self, fresh: bool = False) -> dict[str, dict[str, Any]]:
        """Per experiment id: ``counts`` by status, ``total`` and ``last_activity`` (ms). Reused for a few
        seconds, longer where counting is slow (a backend that reads every run to count them)."""
        with self._lock:
            if not fresh and self._summary and time.monotonic() < self._summary[0]:
                return self._summary[1]
        t0 = time.monotonic()
        stats = self.manager.run_stats() if hasattr(self.manager, "run_stats") else _stats_by_search(self.manager)
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
                  token: str | None, start: int = 0) -> Page:
        """One page of a search, paged and sorted by the backend (``page_token`` of ``search_records``)."""
        if _pages_natively(self.manager):
            df = self.manager.search_records(exp_ids, filter_string=filter_string, order_by=order_by,
                                             max_results=size, page_token=token)
            return Page(frame_rows(df), df.attrs.get("next_page_token"), start, None)
        # a backend without paging: read up to the end of the page and cut (the token is the offset)
        offset = int(token) if token and token.isdigit() else 0
        df = self.manager.search_records(exp_ids, filter_string=filter_string, order_by=order_by,
                                         max_results=offset + size + 1)
        rows = frame_rows(df.iloc[offset:offset + size + 1])
        more = len(rows) > size
        return Page(rows[:size], str(offset + size) if more else None, offset, None)

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        if not RUN_ID.match(run_id):
            return None
        df = self.manager.search_records(None, filter_string=f"attributes.run_id = '{run_id}'", max_results=1)
        rows = frame_rows(df)
        return rows[0] if rows else None

    def rows_for(self, run_ids: list[str]) -> list[dict[str, Any]]:
        ids = [r for r in run_ids if RUN_ID.match(r)]
        if not ids:
            return []
        quoted = ", ".join(f"'{r}'" for r in ids)
        rows = {r["run_id"]: r for r in frame_rows(self.manager.search_records(
            None, filter_string=f"attributes.run_id IN ({quoted})"))}
        return [rows[r] for r in ids if r in rows]

    def children(self, run_id: str, limit: int = 5000) -> list[dict[str, Any]]:
        if not RUN_ID.match(run_id):
            return []
        df = self.manager.search_records(None, filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'",
                                         order_by=["attributes.start_time ASC"], max_results=limit)
        return frame_rows(df)

    def recorder(self, run_id: str) -> Recorder:
        if not RUN_ID.match(run_id):
            raise RecorderNotFoundError(f"{run_id!r} is not a run id")
        return self.manager.get_recorder_by_id(run_id)

    def delete_run(self, run_id: str) -> None:
        rec = self.recorder(run_id)
        self.manager.get_exp(experiment_id=rec.experiment_id, create=False).delete_recorder(recorder_id=run_id)
        with self._lock:
            self._summary = None


def _pages_natively(manager: ExpManager) -> bool:
    import inspect
    try:
        return "page_token" in inspect.signature(manager.search_records).parameters
    except (TypeError, ValueError):
        return False


def _stats_by_search(manager: ExpManager) -> dict[str, dict[str, Any]]:
    """Counts through a full search: for backends without ``run_stats``."""
    out: dict[str, dict[str, Any]] = {}
    for r in frame_rows(manager.search_records(None)):
        s = out.setdefault(r["experiment_id"], {"counts": {}, "total": 0, "last_activity": None})
        s["counts"][r["status"]] = s["counts"].get(r["status"], 0) + 1
        s["total"] += 1
        last = max(t for t in (r["start_time"], r["end_time"], 0) if t is not None)
        s["last_activity"] = max(s["last_activity"] or 0, last) or None
    return out


def frame_rows(df: Any) -> list[dict[str, Any]]:
    """``search_records`` DataFrame -> row dicts (NaN metrics and missing params/tags left out)."""
    if df is None or not len(df):
        return []
    cols = list(df.columns)
    groups = {kind: [(c, c[len(kind) + 1:]) for c in cols if c.startswith(kind + ".")]
              for kind in ("metrics", "params", "tags")}
    out = []
    for rec in df.to_dict(orient="records"):
        row = {"run_id": rec["run_id"], "experiment_id": str(rec["experiment_id"]), "status": rec["status"],
               "artifact_uri": rec.get("artifact_uri"), "start_time": _ms(rec.get("start_time")),
               "end_time": _ms(rec.get("end_time"))}
        for kind, pairs in groups.items():
            d = {}
            for col, key in pairs:
                v = rec[col]
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                d[key] = v
            row[kind] = d
        row["run_name"] = row["tags"].get("mlflow.runName") or ""
        out.append(row)
    return out


def _ms(v: Any) -> int | None:
    if v is None:
        return None
    try:
        import pandas as pd
        if pd.isna(v):
            return None
        return int(pd.Timestamp(v).value // 1_000_000)
    except (TypeError, ValueError):
        return None


def not_found(exc: Exception) -> bool:
    return isinstance(exc, (RecorderNotFoundError, ExpNotFoundError))
