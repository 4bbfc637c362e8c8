"""qexp: experiment management for quantitative research, on a plugin framework.

    import qexp
    from qexp import R
    qexp.init(uri="file:./qexp_runs")
    with R.start(experiment_name="demo"):
        R.log_params(lr=0.1)
        R.log_metrics(step=1, ic=0.04)
"""
from __future__ import annotations

from ._version import __version__
from .api import R
from .exceptions import (
                         ArtifactNotFoundError,
                         ArtifactPathError,
                         ConfigError,
                         ExpAlreadyExistError,
                         ExpNotFoundError,
                         FilterSyntaxError,
                         LoadObjectError,
                         MissingExtraError,
                         NoActiveRecorderError,
                         QexpError,
                         RecorderNotFoundError,
                         UnknownSchemeError,
)
from .experiment import Experiment
from .hookspecs import hookimpl
from .manager import ExpManager
from .recorder import Recorder
from .session import get_settings, init

__all__ = ["R", "init", "get_settings", "hookimpl", "Recorder", "Experiment", "ExpManager", "QexpError",
           "UnknownSchemeError", "MissingExtraError", "ExpNotFoundError", "ExpAlreadyExistError",
           "RecorderNotFoundError", "NoActiveRecorderError", "LoadObjectError", "ArtifactNotFoundError", "ArtifactPathError",
           "FilterSyntaxError", "ConfigError", "__version__"]
