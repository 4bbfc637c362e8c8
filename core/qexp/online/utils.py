"""OnlineTool (``qlib/workflow/online/utils.py``): which runs of an experiment are online (tag
``online_status`` = ``online`` / ``offline``), and updating their predictions."""
from __future__ import annotations

import logging
from typing import Any

from ..config import get_callable_kwargs
from ..exceptions import LoadObjectError
from ..recorder import Recorder
from ..task.utils import list_recorders
from .update import PredUpdater

logger = logging.getLogger("qexp.online")


class OnlineTool:
    """Manages the ``online`` models of an experiment."""

    ONLINE_KEY = "online_status"
    ONLINE_TAG = "online"
    OFFLINE_TAG = "offline"

    def set_online_tag(self, tag: str, recorder: Any) -> None:
        raise NotImplementedError("Please implement the `set_online_tag` method.")

    def get_online_tag(self, recorder: Any) -> str:
        raise NotImplementedError("Please implement the `get_online_tag` method.")

    def reset_online_tag(self, recorder: Any) -> None:
        raise NotImplementedError("Please implement the `reset_online_tag` method.")

    def online_models(self) -> list:
        raise NotImplementedError("Please implement the `online_models` method.")

    def update_online_pred(self, to_date: Any = None) -> None:
        raise NotImplementedError("Please implement the `update_online_pred` method.")


class OnlineToolR(OnlineTool):
    """OnlineTool on recorders: the tag ``online_status`` of each run."""

    def __init__(self, default_exp_name: str | None = None):
        self.default_exp_name = default_exp_name

    def set_online_tag(self, tag: str, recorder: Recorder | list[Recorder]) -> None:
        """Tag the run(s) ``online_status=tag``."""
        recs = [recorder] if isinstance(recorder, Recorder) else list(recorder)
        for rec in recs:
            rec.set_tags(**{self.ONLINE_KEY: tag})
        logger.info("Set %d models to '%s'.", len(recs), tag)

    def get_online_tag(self, recorder: Recorder) -> str:
        """The run's tag (``offline`` when it has none)."""
        return recorder.list_tags().get(self.ONLINE_KEY, self.OFFLINE_TAG)

    def reset_online_tag(self, recorder: Recorder | list[Recorder], exp_name: str | None = None) -> None:
        """Every run of the experiment offline, then ``recorder`` online."""
        exp_name = self._get_exp_name(exp_name)
        recs = [recorder] if isinstance(recorder, Recorder) else list(recorder)
        self.set_online_tag(self.OFFLINE_TAG, list(list_recorders(exp_name).values()))
        self.set_online_tag(self.ONLINE_TAG, recs)

    def online_models(self, exp_name: str | None = None) -> list[Recorder]:
        """The runs tagged online."""
        exp_name = self._get_exp_name(exp_name)
        return list(list_recorders(exp_name, lambda rec: self.get_online_tag(rec) == self.ONLINE_TAG).values())

    def update_online_pred(self, to_date: Any = None, from_date: Any = None, exp_name: str | None = None) -> None:
        """Extend the predictions of the online runs to ``to_date`` (the last trading day by default)."""
        exp_name = self._get_exp_name(exp_name)
        models = self.online_models(exp_name=exp_name)
        for rec in models:
            hist_ref = 0
            task = rec.load_object("task")
            cls, kwargs = get_callable_kwargs(task["dataset"], where="task.dataset")
            default_len = getattr(cls, "DEFAULT_STEP_LEN", None)
            if default_len is not None:  # a time-series dataset needs history before the new days
                hist_ref = kwargs.get("step_len", default_len)
            try:
                updater = PredUpdater(rec, to_date=to_date, from_date=from_date, hist_ref=hist_ref)
            except LoadObjectError as exc:
                logger.warning("run %s cannot be updated (%s); it is skipped", rec.id, exc)
                continue
            updater.update()
        logger.info("Finished updating %d online model predictions of %s.", len(models), exp_name)

    def _get_exp_name(self, exp_name: str | None) -> str:
        if exp_name is None:
            if self.default_exp_name is None:
                raise ValueError("Both default_exp_name and exp_name are None. OnlineToolR needs a specific "
                                 "experiment.")
            exp_name = self.default_exp_name
        return exp_name
