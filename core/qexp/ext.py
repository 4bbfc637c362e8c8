"""The public surface for plugin authors: everything a plugin may import from qexp, besides ``qexp`` itself.

Plugins (built-in ones included) import only ``qexp`` and ``qexp.ext``; the other ``qexp.*`` modules are
internal and may move between releases, as pytest keeps ``_pytest`` behind ``pytest``. A test fails when a
plugin module imports anything else from qexp.

Sections: hook markers and register callbacks; tracking-store contracts (ExpManager, Experiment, Recorder)
and search; URIs and the scheme registries; data and models; configs and workflows; executors, task stores
and cache stores; the command line; errors.
"""
from __future__ import annotations

from typing import Any

from . import registry as _registry
from .api import R
from .artifacts import ArtifactStore
from .backends import create_manager
from .cli.common import cli_group, experiment_ids, fail, find_exp, manager as cli_manager, uri_option
from .cli.output import fmt, print_json, print_table
from .config import (
    auto_filter_kwargs,
    deepcopy_basic_type,
    fill_placeholder,
    flatten_dict,
    get_callable_kwargs,
    init_instance_by_config,
    set_by_path,
    update_config,
)
from .data_api import REGION_CN, REGION_US, DataProvider, get_provider, get_region, has_provider, set_provider
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
    RecorderInitializationError,
    RecorderNotFoundError,
    UnknownSchemeError,
)
from .executor import DeferredFuture, Executor, default_executor_uri, get_executor
from .experiment import Experiment
from .extras import require_extra
from .hookspecs import ComponentRegister, SchemeRegister, hookimpl
from .manager import SEARCH_COLUMNS, ExpManager, runs_frame
from .model import BaseModel, Model, ModelFT
from .pickling import RestrictedUnpickler, dumps as pickle_dumps, loads as pickle_loads
from .plugins import fire, get_plugin, load_plugins, register as register_plugin, unregister as unregister_plugin
from .process import process_start_ticks
from .progress import bar, phase
from .recorder import Metric, Recorder, clean_artifact_path, copy_tree_or_file, format_time, now_ms, validate_key
from .search import Clause, Order, like_to_regex, matches, parse_filter, parse_order_by, row_value
from .session import get_settings, init
from .uri import DEFAULT_URI, default_uri, file_uri_to_path, local_path, path_to_file_uri, resolve_uri, uri_scheme


def create_by_scheme(kind: str, uri: str, **kwargs: Any) -> Any:
    """Build what the plugin registered for ``uri``'s scheme in the table ``kind`` (``backend``, ``mirror``,
    ``data_provider``, ``artifact_store``, ``executor``, ``task_store``, ``cache_store``). An unknown scheme
    raises :class:`UnknownSchemeError` listing the known ones and the extra that provides a missing one."""
    load_plugins()
    return _registry.SCHEME_TABLES[kind].create(uri, **kwargs)


def known_schemes(kind: str) -> list[str]:
    """The schemes registered in the table ``kind`` (``""`` is a bare path)."""
    load_plugins()
    return _registry.SCHEME_TABLES[kind].schemes()


__all__ = [
    # hook markers and register callbacks
    "hookimpl", "SchemeRegister", "ComponentRegister", "register_plugin", "unregister_plugin", "get_plugin", "fire",
    # tracking-store contracts and search
    "ExpManager", "Experiment", "Recorder", "Metric", "now_ms", "format_time", "validate_key", "clean_artifact_path",
    "copy_tree_or_file", "runs_frame", "SEARCH_COLUMNS", "ArtifactStore", "Clause", "Order", "parse_filter",
    "parse_order_by", "matches", "row_value", "like_to_regex", "RestrictedUnpickler", "pickle_dumps", "pickle_loads", "process_start_ticks",
    # URIs and the scheme registries
    "DEFAULT_URI", "default_uri", "resolve_uri", "uri_scheme", "file_uri_to_path", "path_to_file_uri", "local_path",
    "create_manager", "create_by_scheme", "known_schemes",
    # the session
    "R", "init", "get_settings",
    # data and models
    "DataProvider", "get_provider", "set_provider", "has_provider", "get_region", "REGION_CN", "REGION_US",
    "BaseModel", "Model", "ModelFT",
    # configs
    "init_instance_by_config", "get_callable_kwargs", "auto_filter_kwargs", "fill_placeholder", "flatten_dict",
    "update_config", "set_by_path", "deepcopy_basic_type",
    # executors
    "Executor", "DeferredFuture", "get_executor", "default_executor_uri",
    # optional dependencies and progress
    "require_extra", "bar", "phase",
    # the command line
    "cli_group", "cli_manager", "experiment_ids", "find_exp", "fail", "uri_option", "print_table", "print_json", "fmt",
    # errors
    "QexpError", "ConfigError", "UnknownSchemeError", "MissingExtraError", "ExpNotFoundError", "ExpAlreadyExistError",
    "RecorderNotFoundError", "NoActiveRecorderError", "LoadObjectError", "ArtifactNotFoundError", "ArtifactPathError",
    "FilterSyntaxError", "RecorderInitializationError",
]
