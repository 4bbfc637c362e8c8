"""Registers the data components under their Qlib names and module paths, so Qlib configs resolve
(``class: Alpha158, module_path: qlib.contrib.data.handler`` builds :class:`qexp_data.alpha.Alpha158`)."""
from __future__ import annotations

from typing import Callable

from . import alpha, dataset, handler, loader, mts_dataset, processor

# (class, Qlib module paths it answers to)
_COMPONENTS = [
    (alpha.Alpha158, ("qlib.contrib.data.handler",)),
    (alpha.Alpha360, ("qlib.contrib.data.handler",)),
    (alpha.Alpha158vwap, ("qlib.contrib.data.handler",)),
    (alpha.Alpha360vwap, ("qlib.contrib.data.handler",)),
    (alpha.Alpha158DL, ("qlib.contrib.data.loader",)),
    (alpha.Alpha360DL, ("qlib.contrib.data.loader",)),
    (dataset.DatasetH, ("qlib.data.dataset",)),
    (dataset.TSDatasetH, ("qlib.data.dataset",)),
    (dataset.TSDataSampler, ("qlib.data.dataset",)),
    (mts_dataset.MTSDatasetH, ("qlib.contrib.data.dataset",)),
    (handler.DataHandler, ("qlib.data.dataset.handler",)),
    (handler.DataHandlerLP, ("qlib.data.dataset.handler",)),
    (loader.QlibDataLoader, ("qlib.data.dataset.loader",)),
    (loader.StaticDataLoader, ("qlib.data.dataset.loader",)),
] + [(cls, ("qlib.data.dataset.processor",)) for cls in processor.PROCESSORS]


def register_components(register: Callable[..., None]) -> None:
    """Call ``register(cls, name, module_paths)`` for every dataset, handler, loader and processor."""
    for cls, module_paths in _COMPONENTS:
        register(cls, name=cls.__name__, module_paths=module_paths)
