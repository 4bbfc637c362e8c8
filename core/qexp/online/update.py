"""Updaters (``qlib/workflow/online/update.py``): extend a run's predictions (or labels) to newer data with its
saved model and dataset. The previous artifact is kept as ``<name>.prev``."""
from __future__ import annotations

import logging
from abc import ABCMeta, abstractmethod
from typing import Any

import pandas as pd

from ..data_api import get_provider
from ..recorder import Recorder
from ..task.utils import get_date_by_shift

logger = logging.getLogger("qexp.online")

IT_LS = "load_state"  # DataHandlerLP.IT_LS: reuse the fitted processors


class RMDLoader:
    """Loads the (R)ecorder's (M)odel and (D)ataset."""

    def __init__(self, rec: Recorder):
        self.rec = rec

    def get_dataset(self, start_time: Any, end_time: Any, segments: dict | None = None,
                    unprepared_dataset: Any = None) -> Any:
        """The run's dataset (or ``unprepared_dataset``) reloaded over ``[start_time, end_time]`` for inference,
        with the fitted processors; ``segments`` default to ``{"test": (start_time, end_time)}``."""
        if segments is None:
            segments = {"test": (start_time, end_time)}
        dataset = self.rec.load_object("dataset") if unprepared_dataset is None else unprepared_dataset
        dataset.config(handler_kwargs={"start_time": start_time, "end_time": end_time}, segments=segments)
        dataset.setup_data(handler_kwargs={"init_type": IT_LS})
        return dataset

    def get_model(self) -> Any:
        return self.rec.load_object("params.pkl")


class RecordUpdater(metaclass=ABCMeta):
    """Updates something in one recorder."""

    def __init__(self, record: Recorder, *args: Any, **kwargs: Any):
        self.record = record

    @abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> Any:
        """Update the recorder."""


class DSBasedUpdater(RecordUpdater, metaclass=ABCMeta):
    """Extends a frame indexed ``(datetime, instrument)`` (``fname``) from the day after its last complete date
    (or ``from_date``) to ``to_date`` (the last trading day by default, and at most), using the run's dataset."""

    def __init__(self, record: Recorder, to_date: Any = None, from_date: Any = None, hist_ref: int | None = None,
                 freq: str = "day", fname: str = "pred.pkl", loader_cls: type = RMDLoader):
        super().__init__(record=record)
        self.hist_ref = hist_ref
        self.freq = freq
        self.fname = fname
        self.rmdl = loader_cls(rec=record)
        latest = pd.Timestamp(get_provider().calendar(freq=freq)[-1])
        to_date = latest if to_date is None else pd.Timestamp(to_date)
        if to_date >= latest:
            if to_date > latest:
                logger.warning("to_date %s is after the last trading day %s; updating to %s", to_date.date(),
                               latest.date(), latest.date())
            to_date = latest
        self.to_date = to_date
        self.old_data: pd.DataFrame = record.load_object(fname)
        if from_date is None:
            # dropna: a label's last days are NaN until their future is known; they are recomputed too
            self.last_end = self.old_data.dropna().index.get_level_values("datetime").max()
        else:
            self.last_end = get_date_by_shift(from_date, -1, align="right")

    def prepare_data(self, unprepared_dataset: Any = None) -> Any:
        """The dataset over the new days (plus ``hist_ref`` days of history for time-series datasets)."""
        hist_ref = self.hist_ref
        if hist_ref is None:
            dataset = self.record.load_object("dataset") if unprepared_dataset is None else unprepared_dataset
            step_len = getattr(dataset, "step_len", None)
            hist_ref = int(step_len) - 1 if step_len else 0
        start_buffer = get_date_by_shift(self.last_end, -hist_ref + 1, clip_shift=False, freq=self.freq)
        start = get_date_by_shift(self.last_end, 1, freq=self.freq)
        return self.rmdl.get_dataset(start_time=start_buffer, end_time=self.to_date,
                                     segments={"test": (start, self.to_date)}, unprepared_dataset=unprepared_dataset)

    def update(self, dataset: Any = None, write: bool = True, ret_new: bool = False) -> Any:
        """Compute the new rows and (``write``) save the merged frame; ``ret_new`` returns it."""
        if self.last_end >= self.to_date:
            logger.info("%s of run %s is up to date (%s); nothing to add up to %s", self.fname, self.record.id,
                        pd.Timestamp(self.last_end).date(), self.to_date.date())
            return None
        if dataset is None:
            dataset = self.prepare_data()
        updated = self.get_update_data(dataset)
        if write:
            self.record.save_objects(**{f"{self.fname}.prev": self.old_data, self.fname: updated})
        if ret_new:
            return updated
        return None

    @abstractmethod
    def get_update_data(self, dataset: Any) -> pd.DataFrame:
        """The whole updated frame (old rows outside the new range kept)."""


def _replace_range(data: pd.DataFrame, new_data: pd.DataFrame) -> pd.DataFrame:
    dates = new_data.index.get_level_values("datetime")
    data = data.sort_index()
    data = data.drop(data.loc[dates.min():dates.max()].index)
    merged = pd.concat([data, new_data], axis=0)
    return merged[~merged.index.duplicated(keep="last")].sort_index()


class PredUpdater(DSBasedUpdater):
    """Extends ``pred.pkl`` with the run's model's predictions on the new days."""

    def get_update_data(self, dataset: Any) -> pd.DataFrame:
        model = self.rmdl.get_model()
        new_pred = model.predict(dataset)
        if isinstance(new_pred, pd.Series):
            new_pred = new_pred.to_frame("score")
        data = _replace_range(self.old_data, new_pred)
        logger.info("%d new predictions in run %s", len(new_pred), self.record.id)
        return data


class LabelUpdater(DSBasedUpdater):
    """Extends ``label.pkl`` (SignalRecord's raw test label) to the new days."""

    def __init__(self, record: Recorder, to_date: Any = None, **kwargs: Any):
        super().__init__(record, to_date=to_date, fname="label.pkl", **kwargs)

    def get_update_data(self, dataset: Any) -> pd.DataFrame:
        try:
            new_label = dataset.prepare("test", col_set="label", data_key="raw")
        except TypeError:  # a handler without data keys
            new_label = dataset.prepare("test", col_set="label")
        return _replace_range(self.old_data.sort_index(), new_label)
