"""MlflowExperiment: an MLflow experiment; its recorders are MLflow runs."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from qexp.ext import Clause, Experiment, RecorderNotFoundError, parse_filter

from .client import retry
from .recorder import MlflowRecorder

if TYPE_CHECKING:
    from .manager import MlflowExpManager


class MlflowExperiment(Experiment):
    def __init__(self, id: str, name: str, manager: "MlflowExpManager"):
        super().__init__(str(id), name, manager)

    def create_recorder(self, recorder_name: str | None = None) -> MlflowRecorder:
        """A recorder whose MLflow run is created when it starts (as in Qlib)."""
        return MlflowRecorder(self.manager, self.id, recorder_name or self.DEFAULT_RECORDER_NAME)

    def _get_recorder_by_id(self, recorder_id: str) -> MlflowRecorder:
        rec = self.manager._get_recorder_by_id(recorder_id)
        if rec.experiment_id != self.id:
            raise RecorderNotFoundError(f"run {recorder_id!r} belongs to experiment {rec.experiment_id}, not to "
                                        f"{self.name!r} (id {self.id})")
        return rec

    def _list_recorders(self, max_results: int | None, filter_string: str) -> list[MlflowRecorder]:
        return self.manager._search_recorders([self.id], parse_filter(filter_string or ""), max_results)

    def _get_recorder(self, recorder_id: str | None, recorder_name: str | None) -> MlflowRecorder:
        if recorder_id is not None:
            return self._get_recorder_by_id(recorder_id)
        # by name in MLflow's query (latest first) rather than listing every run as Qlib did
        recs = self.manager._search_recorders([self.id], [Clause("attributes", "run_name", "=", recorder_name)],
                                              None)
        if not recs:
            raise RecorderNotFoundError(f"experiment {self.name!r} (id {self.id}) has no recorder named "
                                        f"{recorder_name!r}")
        if len(recs) > 1:
            warnings.warn(f"{len(recs)} recorders in experiment {self.name!r} are named {recorder_name!r}; using "
                          f"the latest ({recs[0].id}). Give runs unique names or look them up by id.", stacklevel=3)
        return recs[0]

    def _delete_recorder(self, recorder_id: str) -> None:
        # MLflow's soft delete: the run leaves every search and lookup (mlflow gc removes it for good)
        retry(self.manager.client.delete_run, recorder_id)
