"""FileExperiment: a folder of run folders."""
from __future__ import annotations

import os
import shutil
import time

from qexp.ext import Experiment, RecorderNotFoundError, parse_filter

from .recorder import FileRecorder
from .store import FileStore


class FileExperiment(Experiment):
    def __init__(self, id: str, name: str, manager: "FileExpManager"):  # type: ignore[name-defined]  # noqa: F821
        super().__init__(id, name, manager)
        self.store: FileStore = manager.store

    def create_recorder(self, recorder_name: str | None = None) -> FileRecorder:
        return FileRecorder(self.id, recorder_name or self.DEFAULT_RECORDER_NAME, self.store)

    def _get_recorder_by_id(self, recorder_id: str) -> FileRecorder:
        try:
            meta = self.store.read_run_meta(self.id, recorder_id)
        except FileNotFoundError:
            raise RecorderNotFoundError(f"experiment {self.name!r} (id {self.id}) has no run with id "
                                        f"{recorder_id!r}") from None
        rec = FileRecorder(self.id, meta.get("run_name"), self.store, meta)
        rec.reap_if_dead()
        return rec

    def _list_recorders(self, max_results: int | None, filter_string: str) -> list[FileRecorder]:
        rows = self.manager._search_runs([self.id], parse_filter(filter_string), [], max_results, with_data=False)
        return [self.manager._recorder_from_row(r) for r in rows]

    def _get_recorder(self, recorder_id: str | None, recorder_name: str | None) -> FileRecorder:
        if recorder_id is not None:
            return self._get_recorder_by_id(recorder_id)
        # by name through the index, latest first, instead of listing every run
        from qexp.ext import Clause
        rows = self.manager._search_runs([self.id], [Clause("attributes", "run_name", "=", recorder_name)], [],
                                         None, with_data=False)
        if not rows:
            raise RecorderNotFoundError(f"experiment {self.name!r} (id {self.id}) has no recorder named "
                                        f"{recorder_name!r}")
        if len(rows) > 1:
            import warnings
            warnings.warn(f"{len(rows)} recorders in experiment {self.name!r} are named {recorder_name!r}; using "
                          f"the latest ({rows[0]['run_id']}). Give runs unique names or look them up by id.",
                          stacklevel=3)
        return self._get_recorder_by_id(rows[0]["run_id"])

    def _delete_recorder(self, recorder_id: str) -> None:
        src = self.store.run_dir(self.id, recorder_id)
        dst = os.path.join(self.store.trash_dir(), f"run-{recorder_id}-{int(time.time() * 1000)}")
        os.replace(src, dst)
        self.store.index.delete_run(recorder_id)
        shutil.rmtree(dst, ignore_errors=True)
