"""Ensembles (``qlib/model/ens/ensemble.py``): merge a dict of results into one."""
from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from ..config import FLATTEN_TUPLE, flatten_dict

logger = logging.getLogger("qexp.ens")


class Ensemble:
    """Merges ``{name: result}`` into one result; subclasses implement ``__call__``."""

    def __call__(self, ensemble_dict: dict, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Please implement the `__call__` method.")


class SingleKeyEnsemble(Ensemble):
    """``{only key: value}`` -> ``value`` (recursively by default); other dicts stay as they are."""

    def __call__(self, ensemble_dict: Any, recursion: bool = True) -> Any:
        if not isinstance(ensemble_dict, dict):
            return ensemble_dict
        if recursion:
            ensemble_dict = {k: self(v, recursion) for k, v in ensemble_dict.items()}
        if len(ensemble_dict) == 1:
            return next(iter(ensemble_dict.values()))
        return ensemble_dict


class RollingEnsemble(Ensemble):
    """Concatenate rolling results (frames indexed by ``datetime``, ...) in order of their first date; where
    windows overlap the later window's value is kept. The keys are ignored."""

    def __call__(self, ensemble_dict: dict) -> pd.DataFrame:
        logger.info("RollingEnsemble: keys in group: %s", list(ensemble_dict))
        frames = sorted(ensemble_dict.values(), key=lambda x: x.index.get_level_values("datetime").min())
        merged = pd.concat(frames)
        merged = merged[~merged.index.duplicated(keep="last")]
        return merged.sort_index()


class AverageEnsemble(Ensemble):
    """Z-score each result per ``datetime``, then average them (nested dicts are flattened first); returns a
    Series. The keys are ignored."""

    def __call__(self, ensemble_dict: dict) -> pd.Series:
        flat = flatten_dict(ensemble_dict, sep=FLATTEN_TUPLE)
        logger.info("AverageEnsemble: keys in group: %s", list(flat))
        results = pd.concat(list(flat.values()), axis=1)
        results = results.groupby("datetime", group_keys=False).apply(lambda df: (df - df.mean()) / df.std())
        return results.mean(axis=1).sort_index()
