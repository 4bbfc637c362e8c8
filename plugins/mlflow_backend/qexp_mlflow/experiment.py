"""MlflowExperiment: an MLflow experiment; its recorders are MLflow runs."""
from __future__ import annotations

from typing import TYPE_CHECKING

from qexp.ext import Clause, Experiment, Recorder, RecorderNotFoundError, parse_filter

from . import runs
from .client import retry
from .recorder import MlflowRecorder
from .store import MlflowStore

if TYPE_CHECKING:
    from .manager import MlflowExpManager


class MlflowExperiment(Experiment):
    def __init__(self, id: str, name: str, manager: MlflowExpManager):
        super().__init__(str(id), name, manager)
        self.store: MlflowStore = manager.store

    def create_recorder(self, recorder_name: str | None = None) -> MlflowRecorder:
        """A recorder whose MLflow run is created when it starts (as in Qlib)."""
        return MlflowRecorder(self.store, self.id, recorder_name or self.DEFAULT_RECORDER_NAME)

    def _get_recorder_by_id(self, recorder_id: str) -> MlflowRecorder:
        rec = runs.get_recorder_by_id(self.store, recorder_id)
        if rec.experiment_id != self.id:
            raise RecorderNotFoundError(f"run {recorder_id!r} belongs to experiment {rec.experiment_id}, not to "
                                        f"{self.name!r} (id {self.id})")
        return rec

    def _list_recorders(self, max_results: int | None, filter_string: str) -> list[Recorder]:
        return runs.search_recorders(self.store, [self.id], parse_filter(filter_string or ""), max_results)

    def _recorders_named(self, name: str) -> list[Recorder]:
        # by name in MLflow's query (latest first) rather than listing every run as Qlib did
        return runs.search_recorders(self.store, [self.id], [Clause("attributes", "run_name", "=", name)], None)

    def _delete_recorder(self, recorder_id: str) -> None:
        # MLflow's soft delete: the run leaves every search and lookup (mlflow gc removes it for good)
        retry(self.store.client.delete_run, recorder_id)
