"""Groups and ensembles of results (``qlib.model.ens``): merge rolling predictions, average models."""
from __future__ import annotations

from .ensemble import AverageEnsemble, Ensemble, RollingEnsemble, SingleKeyEnsemble
from .group import Group, RollingGroup

__all__ = ["Ensemble", "SingleKeyEnsemble", "RollingEnsemble", "AverageEnsemble", "Group", "RollingGroup"]
