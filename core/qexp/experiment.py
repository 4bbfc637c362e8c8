"""The abstract Experiment: a named group of recorders."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Final, Literal, overload

import pandas as pd

from .exceptions import RecorderNotFoundError
from .recorder import Recorder


class Experiment:
    """A named group of runs. Backends implement ``create_recorder``, ``_get_recorder_by_id``,
    ``_list_recorders`` and ``_delete_recorder`` (and may override ``_recorders_named``); lookups by name
    pick the latest run with that name."""

    RT_D: Final = "dict"
    RT_L: Final = "list"
    DEFAULT_RECORDER_NAME = "mlflow_recorder"  # Qlib's default, so Qlib code that looks it up still works

    def __init__(self, id: str, name: str, manager: Any = None):
        self.id = id
        self.name = name
        self.manager = manager
        self.active_recorder: Recorder | None = None

    @property
    def info(self) -> dict:
        # Qlib's info lists every recorder id; that is slow with many runs, so it is left to list_recorders.
        return {"class": "Experiment", "id": self.id, "name": self.name,
                "active_recorder": self.active_recorder.id if self.active_recorder else None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Experiment) and other.id == self.id and type(other) is type(self)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.id))

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, *, recorder_id: str | None = None, recorder_name: str | None = None,
              resume: bool = False, parent_id: str | None = None) -> Recorder:
        """Start a new recorder, or with ``resume`` reopen the one with this id (or latest with this name)."""
        if resume and (recorder_id is not None or recorder_name is not None):
            try:
                rec = self._get_recorder(recorder_id, recorder_name)
            except RecorderNotFoundError:
                if recorder_id is not None:
                    raise
                rec = self.create_recorder(recorder_name)
        else:
            rec = self.create_recorder(recorder_name)
        if parent_id is not None and rec.id is None:
            rec.parent_id = parent_id
        rec.start_run()
        self.active_recorder = rec
        return rec

    def end(self, recorder_status: str = Recorder.STATUS_S) -> None:
        if self.active_recorder is not None:
            self.active_recorder.end_run(recorder_status)
            self.active_recorder = None

    # ---- recorders ---------------------------------------------------------------------------
    def create_recorder(self, recorder_name: str | None = None) -> Recorder:
        """A new, not yet started recorder (it exists in the store once started)."""
        raise NotImplementedError

    def get_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None,
                     create: bool = True, start: bool = False) -> Recorder:
        """By id, or the latest with ``recorder_name``; with ``create`` a missing one is created
        (and started with ``start``)."""
        if recorder_id is None and recorder_name is None:
            if self.active_recorder is not None:
                return self.active_recorder
            recorder_name = self.DEFAULT_RECORDER_NAME
        try:
            return self._get_recorder(recorder_id, recorder_name)
        except RecorderNotFoundError:
            if not create or recorder_id is not None:
                raise
        rec = self.create_recorder(recorder_name)
        if start:
            rec.start_run()
            self.active_recorder = rec
        return rec

    def _get_recorder(self, recorder_id: str | None, recorder_name: str | None) -> Recorder:
        """By id, else the latest recorder named ``recorder_name`` (a warning when several share the name)."""
        if recorder_id is not None:
            return self._get_recorder_by_id(recorder_id)
        if recorder_name is None:
            raise ValueError("_get_recorder needs recorder_id or recorder_name")
        recs = self._recorders_named(recorder_name)
        if not recs:
            raise RecorderNotFoundError(f"experiment {self.name!r} (id {self.id}) has no recorder named "
                                        f"{recorder_name!r}")
        if len(recs) > 1:
            warnings.warn(f"{len(recs)} recorders in experiment {self.name!r} are named {recorder_name!r}; "
                          f"using the latest ({recs[0].id}). Give runs unique names or look them up by id.",
                          stacklevel=3)
        return recs[0]

    def _recorders_named(self, name: str) -> Sequence[Recorder]:
        """The recorders named ``name``, latest first. This default lists every run; backends with a query
        language or an index override it to ask for the name alone."""
        return [r for r in self._list_recorders(max_results=None, filter_string="") if r.name == name]

    def _get_recorder_by_id(self, recorder_id: str) -> Recorder:
        raise NotImplementedError

    @overload
    def list_recorders(self, rtype: Literal["dict"] = ..., max_results: int | None = None,
                       status: str | None = None, filter_string: str = "") -> dict[str, Recorder]: ...

    @overload
    def list_recorders(self, rtype: Literal["list"], max_results: int | None = None, status: str | None = None,
                       filter_string: str = "") -> list[Recorder]: ...

    def list_recorders(self, rtype: str = RT_D, max_results: int | None = None, status: str | None = None,
                       filter_string: str = "") -> dict[str, Recorder] | list[Recorder]:
        """Recorders, latest first: ``{id: recorder}`` (``rtype="dict"``) or a list."""
        recs = self._list_recorders(max_results=max_results, filter_string=filter_string)
        if status is not None:
            recs = [r for r in recs if r.status == status]
        if rtype == self.RT_D:
            return {r._require_id(): r for r in recs}
        if rtype == self.RT_L:
            return list(recs)
        raise ValueError(f"rtype must be 'dict' or 'list', got {rtype!r}")

    def _list_recorders(self, max_results: int | None, filter_string: str) -> Sequence[Recorder]:
        raise NotImplementedError

    def search_records(self, filter_string: str = "", order_by: list[str] | str | None = None,
                       max_results: int | None = None, **kwargs: Any) -> pd.DataFrame:
        """Runs of this experiment as a DataFrame shaped like ``mlflow.search_runs``."""
        return self.manager.search_records([self.id], filter_string=filter_string, order_by=order_by,
                                           max_results=max_results, **kwargs)

    def delete_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> None:
        rec = self._get_recorder(recorder_id, recorder_name)
        self._delete_recorder(rec._require_id())

    def _delete_recorder(self, recorder_id: str) -> None:
        raise NotImplementedError
