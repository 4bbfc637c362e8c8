"""qexp: experiment management for quantitative research, on a plugin framework.

    import qexp
    from qexp import R
    qexp.init(uri="file:./qexp_runs")
    with R.start(experiment_name="demo"):
        R.log_params(lr=0.1)
        R.log_metrics(step=1, ic=0.04)
"""
from __future__ import annotations

__version__ = "0.1.0"

from .hookspecs import hookimpl
from .exceptions import (ArtifactNotFoundError, ArtifactPathError, ConfigError, ExpAlreadyExistError, ExpNotFoundError, FilterSyntaxError,
                         LoadObjectError, MissingExtraError, NoActiveRecorderError, QexpError, RecorderNotFoundError,
                         UnknownSchemeError)
from .recorder import Recorder
from .experiment import Experiment
from .manager import ExpManager
from .api import R
from .settings import init, get_settings

__all__ = ["R", "init", "get_settings", "hookimpl", "Recorder", "Experiment", "ExpManager", "QexpError",
           "UnknownSchemeError", "MissingExtraError", "ExpNotFoundError", "ExpAlreadyExistError",
           "RecorderNotFoundError", "NoActiveRecorderError", "LoadObjectError", "ArtifactNotFoundError", "ArtifactPathError",
           "FilterSyntaxError", "ConfigError", "__version__"]
