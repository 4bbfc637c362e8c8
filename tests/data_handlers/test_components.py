"""Every component answers to its Qlib name and module path, so Qlib YAML configs resolve."""
from __future__ import annotations

import pytest

from qexp.config import init_instance_by_config
from qexp_data import alpha, dataset, handler, loader, mts_dataset, processor
from qexp_data.components import register_components

QLIB_PATHS = {
    "qlib.contrib.data.handler": ["Alpha158", "Alpha360", "Alpha158vwap", "Alpha360vwap"],
    "qlib.data.dataset": ["DatasetH", "TSDatasetH"],
    "qlib.contrib.data.dataset": ["MTSDatasetH"],
    "qlib.data.dataset.handler": ["DataHandler", "DataHandlerLP"],
    "qlib.data.dataset.loader": ["QlibDataLoader", "StaticDataLoader"],
    "qlib.data.dataset.processor": ["DropnaLabel", "DropnaProcessor", "DropCol", "FilterCol", "ProcessInf", "Fillna",
                                    "CSZFillna", "ZScoreNorm", "RobustZScoreNorm", "MinMaxNorm", "CSZScoreNorm",
                                    "CSRankNorm", "TanhProcess"],
}


def test_register_components_covers_qlib_paths():
    seen: dict[str, tuple] = {}
    register_components(lambda cls, name=None, module_paths=(): seen.__setitem__(name, (cls, tuple(module_paths))))
    for path, names in QLIB_PATHS.items():
        for name in names:
            assert name in seen, name
            cls, paths = seen[name]
            assert path in paths and cls.__name__ == name
    modules = (alpha, dataset, handler, loader, mts_dataset, processor)
    assert all(any(getattr(m, n, None) is c for m in modules) for n, (c, _) in seen.items())


@pytest.mark.parametrize("path,name", [(p, n) for p, ns in QLIB_PATHS.items() for n in ns])
def test_qlib_module_paths_resolve_through_the_registry(path, name):
    from qexp import registry
    from qexp.plugins import load_plugins
    load_plugins()
    cls = registry.components.resolve(name, path)
    assert cls is not None and cls.__name__ == name and cls.__module__.startswith("qexp_data.")


def test_processor_from_qlib_config():
    proc = init_instance_by_config({"class": "CSRankNorm", "module_path": "qlib.data.dataset.processor",
                                    "kwargs": {"fields_group": "label"}})
    assert isinstance(proc, processor.CSRankNorm) and proc.fields_group == "label"
