"""Qlib's contrib records (``qlib.contrib.workflow.record_temp``): ``SignalMseRecord`` and ``MultiSegRecord``."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from qexp import QexpError

from .record_temp import ACRecordTemp, RecordTemp, SignalRecord, _first_column
from .signal_metrics import align_pred_label, calc_ic

logger = logging.getLogger("qexp.records")

__all__ = ["SignalMseRecord", "MultiSegRecord"]


class SignalMseRecord(ACRecordTemp):
    """Mean squared error of the predictions against the raw label, over rows where both exist."""

    artifact_path = "sig_analysis"
    depend_cls = SignalRecord

    def __init__(self, recorder: Any = None, skip_existing: bool = False):
        super().__init__(recorder=recorder, skip_existing=skip_existing)

    def _generate(self, **kwargs: Any) -> dict[str, Any]:
        pred = _first_column(self.load("pred.pkl"), "pred.pkl")
        label = _first_column(self.load("label.pkl"), "label.pkl")
        # align on the index (Qlib assumes the same row order; a reordered label would silently be wrong)
        df = align_pred_label(pred, label).dropna()
        if df.empty:
            raise QexpError("SignalMseRecord: pred.pkl and label.pkl share no row where both are known")
        mse = float(np.mean((df["pred"].to_numpy() - df["label"].to_numpy()) ** 2))
        rmse = float(np.sqrt(mse))
        self.recorder.log_metrics(MSE=mse, RMSE=rmse)
        logger.info("SignalMseRecord: MSE %.6g, RMSE %.6g", mse, rmse)
        return {"mse.pkl": mse, "rmse.pkl": rmse}

    def list(self) -> list[str]:
        return ["mse.pkl", "rmse.pkl"]


class MultiSegRecord(RecordTemp):
    """IC and Rank IC of ``model`` on several dataset segments (e.g. valid and test) in one go."""

    def __init__(self, model: Any = None, dataset: Any = None, recorder: Any = None):
        super().__init__(recorder=recorder)
        if dataset is None or not hasattr(dataset, "prepare"):
            raise QexpError(f"MultiSegRecord needs a dataset with prepare() (a DatasetH), got "
                            f"{type(dataset).__name__}")
        self.model = model
        self.dataset = dataset

    def generate(self, segments: dict[str, Any] | None = None, save: bool = False, **kwargs: Any) -> dict[str, dict]:
        """For each ``name: segment`` compute ``{"all-IC", "mean-IC", "all-Rank-IC", "mean-Rank-IC"}``;
        ``save=True`` also writes ``results-{name}.pkl``."""
        if not segments:
            raise QexpError("MultiSegRecord.generate needs segments, e.g. {'valid': 'valid', 'test': 'test'}")
        out = {}
        for key, segment in segments.items():
            pred = self.model.predict(self.dataset, segment)
            if isinstance(pred, pd.Series):
                pred = pred.to_frame("score")
            label = self.dataset.prepare(segments=segment, col_set="label", data_key="raw")
            ic, ric = calc_ic(_first_column(pred, "predictions"), _first_column(label, "label"))
            results = {"all-IC": ic, "mean-IC": ic.mean(), "all-Rank-IC": ric, "mean-Rank-IC": ric.mean()}
            logger.info("MultiSegRecord %s (%s): IC %.4f%% ICIR %.4f Rank IC %.4f%% Rank ICIR %.4f", key, segment,
                        ic.mean() * 100, ic.mean() / ic.std(), ric.mean() * 100, ric.mean() / ric.std())
            if save:
                self.save(**{f"results-{key}.pkl": results})
            out[key] = results
        return out
