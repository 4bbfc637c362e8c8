"""``OneFeature``: the smallest useful model, the README's plugin example."""
from __future__ import annotations

from typing import Any

import pandas as pd

from qexp.ext import Model


class OneFeature(Model):
    """Scores stocks by their first feature, signed as it correlates with the label in train."""

    def __init__(self) -> None:
        self.sign: float | None = None  # learned by fit; every attribute is pickled with the model

    def fit(self, dataset: Any, reweighter: Any = None) -> OneFeature:
        df = dataset.prepare("train", col_set=["feature", "label"], data_key="learn")
        if df.empty:
            raise ValueError("the train segment is empty; check the dataset's segments")
        corr = df["feature"].iloc[:, 0].corr(df["label"].iloc[:, 0])
        self.sign = 1.0 if corr >= 0 else -1.0
        return self

    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        if self.sign is None:
            raise ValueError("OneFeature is not fitted yet: call fit(dataset) first")
        x = dataset.prepare(segment, col_set="feature", data_key="infer")
        return pd.Series(self.sign * x.iloc[:, 0].to_numpy(), index=x.index)
