"""The model contract the workflow relies on (Qlib's ``qlib/model/base.py``).

A model is fitted on a dataset and predicts a score per ``(datetime, instrument)``::

    model.fit(dataset)                          # learn on the "train" (and "valid") segments
    pred = model.predict(dataset, "test")       # pd.Series indexed (datetime, instrument)
    R.save_objects(**{"params.pkl": model})     # models are plain picklable objects

Unlike Qlib's ``Serializable``, pickling keeps **every** attribute, ``_``-prefixed ones included, so a
model loaded with ``recorder.load_object("params.pkl")`` is exactly the model that was saved (Qlib issue
#211: a loaded model lacked ``_fitted``). A model holding objects that must not travel as they are (a
GPU tensor, an open file) implements ``__getstate__``/``__setstate__`` itself.

Writing a model plugin
----------------------
Subclass :class:`Model`, implement ``fit`` and ``predict``, and register the class from a plugin module
named by an entry point in the ``qexp`` group::

    # my_models/plugin.py
    import pandas as pd
    import qexp
    from qexp.ext import Model

    class OneFeature(Model):
        \"\"\"Scores stocks by their first feature, signed as it correlates with the label in train.\"\"\"
        def __init__(self):
            self.sign = None  # learned by fit; every attribute is pickled with the model

        def fit(self, dataset, reweighter=None):
            df = dataset.prepare("train", col_set=["feature", "label"], data_key="learn")
            if df.empty:
                raise ValueError("the train segment is empty; check the dataset's segments")
            corr = df["feature"].iloc[:, 0].corr(df["label"].iloc[:, 0])
            self.sign = 1.0 if corr >= 0 else -1.0
            return self

        def predict(self, dataset, segment="test") -> pd.Series:
            if self.sign is None:
                raise ValueError("OneFeature is not fitted yet: call fit(dataset) first")
            x = dataset.prepare(segment, col_set="feature", data_key="infer")
            return pd.Series(self.sign * x.iloc[:, 0].to_numpy(), index=x.index)

    @qexp.hookimpl
    def register_models(register):
        register(OneFeature, module_paths=("my_models",))

    # pyproject.toml
    # [project.entry-points.qexp]
    # my_models = "my_models.plugin"

A workflow config then names it ``class: OneFeature`` (or with ``module_path: my_models``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import pandas as pd


class BaseModel(ABC):
    """Anything that predicts; calling the model is the same as :meth:`predict`."""

    @abstractmethod
    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Make predictions."""

    @classmethod
    def check_kwargs(cls, kwargs: dict[str, Any]) -> list[str]:
        """Warnings about keyword arguments the constructor takes through ``**kwargs`` but will not use.

        ``qexp run --dry-run`` (and every run, before training) checks a config's ``kwargs`` against the
        constructor's signature; names a ``**kwargs`` catch-all swallows are passed here, so a model that
        forwards them to a library (LightGBM's parameters) can flag a misspelt one. The default knows none.
        """
        return []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.predict(*args, **kwargs)


class Model(BaseModel):
    """A learnable model: :meth:`fit` on a dataset, then :meth:`predict` a segment.

    ``fit`` reads the learn data (``data_key="learn"``) of the ``train`` segment and, where the model uses
    it, ``valid``; ``predict`` reads the infer data (``data_key="infer"``) of ``segment`` and returns a
    ``pd.Series`` indexed ``(datetime, instrument)`` with one score per row of that segment.
    """

    @abstractmethod
    def fit(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
        """Learn from ``dataset``; returns the model.

        Qlib's models take more arguments, each its own (``num_boost_round``, ``evals_result``, ``save_path``...),
        and a ``reweighter`` keyword (optional: ``reweight(df) -> weights``, one per row) where they support it.
        """

    @abstractmethod
    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        """Scores for the rows of ``segment``, indexed ``(datetime, instrument)``."""


class ModelFT(Model):
    """A model that can be fine-tuned: continue training an already fitted model on new data."""

    @abstractmethod
    def finetune(self, dataset: Any) -> Any:
        """Continue training on ``dataset``'s ``train`` segment."""
