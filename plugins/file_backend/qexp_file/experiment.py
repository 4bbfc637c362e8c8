"""FileExperiment: a folder of run folders."""
from __future__ import annotations

import os
import shutil
import time
from typing import TYPE_CHECKING

from qexp.ext import Clause, Experiment, Recorder, RecorderNotFoundError, parse_filter

from . import runs
from .recorder import FileRecorder, delete_remote_artifacts
from .store import FileStore

if TYPE_CHECKING:
    from .manager import FileExpManager


class FileExperiment(Experiment):
    def __init__(self, id: str, name: str, manager: FileExpManager):
        super().__init__(id, name, manager)
        self.store: FileStore = manager.store

    def create_recorder(self, recorder_name: str | None = None) -> FileRecorder:
        return FileRecorder(self.id, recorder_name or self.DEFAULT_RECORDER_NAME, self.store)

    def _get_recorder_by_id(self, recorder_id: str) -> FileRecorder:
        try:
            return runs.load_recorder(self.store, self.id, recorder_id)
        except FileNotFoundError:
            raise RecorderNotFoundError(f"experiment {self.name!r} (id {self.id}) has no run with id "
                                        f"{recorder_id!r}") from None

    def _list_recorders(self, max_results: int | None, filter_string: str) -> list[Recorder]:
        return runs.search_recorders(self.store, self.id, parse_filter(filter_string), max_results)

    def _recorders_named(self, name: str) -> list[Recorder]:
        # through the index, latest first, instead of listing every run
        return runs.search_recorders(self.store, self.id, [Clause("attributes", "run_name", "=", name)], None)

    def _delete_recorder(self, recorder_id: str) -> None:
        src = self.store.run_dir(self.id, recorder_id)
        dst = os.path.join(self.store.trash_dir(), f"run-{recorder_id}-{int(time.time() * 1000)}")
        os.replace(src, dst)
        self.store.index.delete_run(recorder_id)
        delete_remote_artifacts([dst])
        shutil.rmtree(dst, ignore_errors=True)
