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
from .api import R, before_run_end
from .artifacts import ArtifactStore
from .backends import create_manager
from .cache import (
    SMALL_MAGIC,
    CacheEntryError,
    CacheLock,
    CacheStore,
    cache_base_dir,
    decode_arrays,
    default_cache_uri,
    default_max_bytes,
    encode_arrays,
    entry_size,
    open_cache_store,
    pack_small,
    read_frame_dir,
    remove_dir,
    remove_stale_temps,
    unpack_small,
    wait_for_writes as wait_for_cache_writes,
    write_frame_dir,
)
from .cli.common import (
    announce_store,
    cli_group,
    experiment_ids,
    fail,
    find_exp,
    find_recorder,
    manager as cli_manager,
    store_not_found,
    uri_option,
)
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
    AmbiguousRunIdError,
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
    StoreNotFoundError,
    UnknownSchemeError,
)
from .executor import (
    DeferredFuture,
    Executor,
    RunTracker,
    WorkerDied,
    call_settings,
    default_executor_uri,
    get_executor,
    new_call_id,
    parse_resources,
    reach_error,
    reach_spec,
    usable_cores,
    worker_settings,
)
from .experiment import Experiment
from .extras import require_extra
from .fsatomic import atomic_write_bytes, atomic_writer, chmod_like_umask, make_temp_dir
from .hookspecs import ComponentRegister, SchemeRegister, hookimpl
from .manager import SEARCH_COLUMNS, ExpManager, runs_frame
from .model import BaseModel, Model, ModelFT
from .paging import MAX_OFFSET as MAX_PAGE_OFFSET, PageTokenError, offset_token, search_key, token_offset
from .pickling import RestrictedUnpickler, dumps as pickle_dumps, loads as pickle_loads
from .plugins import fire, get_plugin, load_plugins, register as register_plugin, unregister as unregister_plugin
from .process import process_start_ticks
from .progress import bar, phase, progress_line
from .recorder import Metric, Recorder, clean_artifact_path, copy_tree_or_file, format_time, now_ms, validate_key
from .runtime import (
    SystemMetricsConfig,
    cache_uri_from_settings,
    dataset_cache_default,
    effective_runtime_settings,
    resolve_kernels,
    system_metrics_config,
)
from .search import Clause, Order, like_to_regex, matches, parse_filter, parse_order_by, row_value
from .session import get_settings, init
from .tags import (
    FAILURE_TAG,
    PARENT_TAG,
    ROLLING_IC_METRIC,
    ROLLING_TAG,
    ROLLING_WINDOW_RUN_PARAM,
    ROLLING_WINDOW_TAG,
    ROLLING_WINDOW_TEST_PARAM,
    RUN_NAME_TAG,
    SWEEP_GOAL_TAG,
    SWEEP_METRIC_TAG,
    SWEEP_TAG,
    TRIAL_STATE_TAG,
    TRIAL_TAG,
)
from .task.collect import Pickled
from .task.store import (
    Cond,
    NewTask,
    StoredTask,
    TaskStore,
    TaskStoreError,
    canonical_json,
    default_tasks_uri,
    open_task_store,
    parse_query,
    qexp_home,
    sqlite_path,
    sqlite_uri,
)
from .trainer import _exe_task as exe_task
from .uri import (
    DEFAULT_URI,
    default_uri,
    file_uri_to_path,
    local_path,
    mask_uri,
    path_to_file_uri,
    resolve_uri,
    uri_scheme,
)
from .worker import (
    CallCancelled,
    CallSpec,
    live_step_metrics,
    live_step_metrics_wanted,
    preparation_cache,
    probe_reach,
    reuse_preparation,
    run_call,
)
from .workflow import Workflow, apply_sys, check_config, check_data, init_settings, load_workflow, run_workflow


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
    "parse_order_by", "matches", "row_value", "like_to_regex", "RestrictedUnpickler", "pickle_dumps", "pickle_loads", "Pickled",
    "process_start_ticks",
    "search_key", "offset_token", "token_offset", "PageTokenError", "MAX_PAGE_OFFSET",
    # tag, param and metric names qexp writes on runs
    "RUN_NAME_TAG", "PARENT_TAG", "FAILURE_TAG", "SWEEP_TAG", "SWEEP_METRIC_TAG", "SWEEP_GOAL_TAG", "TRIAL_TAG",
    "TRIAL_STATE_TAG", "ROLLING_TAG", "ROLLING_WINDOW_TAG", "ROLLING_WINDOW_TEST_PARAM", "ROLLING_WINDOW_RUN_PARAM",
    "ROLLING_IC_METRIC",
    # URIs and the scheme registries
    "DEFAULT_URI", "default_uri", "resolve_uri", "uri_scheme", "file_uri_to_path", "path_to_file_uri", "local_path",
    "mask_uri",
    "create_manager", "create_by_scheme", "known_schemes",
    # the session
    "R", "init", "get_settings",
    # data and models
    "DataProvider", "get_provider", "set_provider", "has_provider", "get_region", "REGION_CN", "REGION_US",
    "BaseModel", "Model", "ModelFT",
    # configs
    "init_instance_by_config", "get_callable_kwargs", "auto_filter_kwargs", "fill_placeholder", "flatten_dict",
    "update_config", "set_by_path", "deepcopy_basic_type",
    # workflows (qexp run's pipeline, for commands built on it such as qexp sweep)
    "Workflow", "load_workflow", "run_workflow", "apply_sys", "init_settings", "check_config", "check_data",
    # executors
    "Executor", "DeferredFuture", "get_executor", "default_executor_uri",
    "WorkerDied", "RunTracker", "new_call_id", "call_settings", "worker_settings", "reach_spec", "reach_error",
    "usable_cores", "parse_resources",
    "CallSpec", "CallCancelled", "run_call", "probe_reach", "reuse_preparation", "preparation_cache",
    "live_step_metrics", "live_step_metrics_wanted", "exe_task",
    # task stores
    "TaskStore", "StoredTask", "NewTask", "Cond", "TaskStoreError", "parse_query", "canonical_json",
    "default_tasks_uri", "open_task_store", "qexp_home", "sqlite_path", "sqlite_uri",
    # cache stores and runtime settings
    "CacheStore", "CacheLock", "CacheEntryError", "open_cache_store", "default_cache_uri", "default_max_bytes",
    "cache_base_dir", "encode_arrays", "decode_arrays", "pack_small", "unpack_small", "SMALL_MAGIC", "write_frame_dir", "read_frame_dir", "entry_size", "remove_dir",
    "remove_stale_temps", "wait_for_cache_writes", "cache_uri_from_settings", "dataset_cache_default",
    "resolve_kernels", "effective_runtime_settings", "system_metrics_config", "SystemMetricsConfig",
    "before_run_end",
    # files: atomic writes and folders that follow the umask
    "atomic_writer", "atomic_write_bytes", "make_temp_dir", "chmod_like_umask",
    # optional dependencies and progress
    "require_extra", "bar", "phase", "progress_line",
    # the command line
    "cli_group", "cli_manager", "store_not_found", "experiment_ids", "find_exp", "fail", "uri_option", "print_table", "print_json", "fmt",
    "announce_store", "find_recorder",
    # errors
    "QexpError", "ConfigError", "UnknownSchemeError", "MissingExtraError", "ExpNotFoundError", "ExpAlreadyExistError",
    "RecorderNotFoundError", "NoActiveRecorderError", "LoadObjectError", "ArtifactNotFoundError", "ArtifactPathError",
    "FilterSyntaxError", "RecorderInitializationError", "StoreNotFoundError", "AmbiguousRunIdError",
]
