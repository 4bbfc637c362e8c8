"""``TopkExcessRecord``: a record template that reads what ``SignalRecord`` wrote and adds one analysis.

A record template is any class built as ``cls(recorder=..., **kwargs)`` with ``generate()`` (write the
artifacts and metrics), ``list()`` (the artifacts it writes) and ``check()``; it reads and writes only
through the recorder, so it works on every backend. It imports nothing from another plugin: the
predictions and labels arrive as the ``pred.pkl`` and ``label.pkl`` artifacts.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from qexp.ext import LoadObjectError, QexpError, R


class TopkExcessRecord:
    """Per day, the mean label of the ``topk`` best-scored stocks minus the mean label of all of them.

    Writes ``example/topk_excess.pkl`` (a Series by day) and the metric ``example.topk_excess`` (its mean).
    """

    artifact_path = "example"

    def __init__(self, recorder: Any = None, topk: int = 20, **kwargs: Any):
        self.recorder = recorder if recorder is not None else R.get_recorder()
        if topk < 1:
            raise QexpError(f"TopkExcessRecord: topk must be at least 1, got {topk}")
        self.topk = topk

    def list(self) -> list[str]:
        return [f"{self.artifact_path}/topk_excess.pkl"]

    def check(self) -> None:
        """Raise when an artifact this record writes is missing (it has not run yet)."""
        have = set(self.recorder.list_artifacts(recursive=True))
        missing = [a for a in self.list() if a not in have]
        if missing:
            raise QexpError(f"TopkExcessRecord: {', '.join(missing)} not found in run {self.recorder.id}")

    def generate(self, **kwargs: Any) -> pd.Series:
        try:
            pred = self.recorder.load_object("pred.pkl")
            label = self.recorder.load_object("label.pkl")
        except LoadObjectError as exc:
            raise QexpError("TopkExcessRecord needs pred.pkl and label.pkl: put SignalRecord before it in the "
                            "task's record list") from exc
        score = pred.iloc[:, 0] if isinstance(pred, pd.DataFrame) else pred
        frame = pd.DataFrame({"score": score, "label": label.iloc[:, 0]}).dropna()
        excess = frame.groupby(level="datetime").apply(self._day)
        self.recorder.save_objects(artifact_path=self.artifact_path, **{"topk_excess.pkl": excess})
        metrics: dict[str, Any] = {"example.topk_excess": float(excess.mean())}
        self.recorder.log_metrics(**metrics)
        return excess

    def _day(self, day: pd.DataFrame) -> float:
        return float(day.nlargest(self.topk, "score")["label"].mean() - day["label"].mean())
