"""The data plugin's share of ``qexp.init(**settings)``: the provider, and Qlib's data runtime settings.

Honoured with Qlib's meaning: ``provider_uri``, ``region``, ``kernels`` (the expression engine's threads),
``expression_cache`` / ``dataset_cache`` / ``local_cache_path`` / ``default_disk_cache`` (the cache store and
its switches), ``mem_cache_size_limit`` / ``mem_cache_limit_type`` / ``mem_cache_expire`` / ``clear_mem_cache``
(the memory cache ``H``), ``redis_host`` / ``redis_port`` / ``redis_task_db`` / ``redis_password`` (mapped onto
``cache_uri``) and ``default_conf="server"`` (caches on). Qlib keys with no meaning here are left to the
core, which gives a notice naming them.
"""
from __future__ import annotations

import os
from typing import Any

from qexp.ext import REGION_CN, cache_uri_from_settings, create_by_scheme, set_provider

OWN_KEYS = ("provider_uri", "region", "synth", "cache_uri")
QLIB_KEYS = ("default_conf", "kernels", "expression_cache", "dataset_cache", "local_cache_path",
             "default_disk_cache", "mem_cache_size_limit", "mem_cache_limit_type", "mem_cache_expire",
             "clear_mem_cache", "redis_host", "redis_port", "redis_task_db", "redis_password",
             "custom_ops")  # custom_ops: only [] passes qexp.init's check (the engine's operators are built in)
STORE_KEYS = ("cache_uri", "local_cache_path", "redis_host", "redis_port", "redis_task_db", "redis_password")


def _uri(provider_uri: Any) -> str:
    """Qlib accepts ``provider_uri`` as a path or as ``{freq: path}``; qexp serves daily data."""
    if isinstance(provider_uri, dict):
        for key in ("day", "1d", "__DEFAULT_FREQ"):
            if key in provider_uri:
                return os.fspath(provider_uri[key])
        raise ValueError(f"provider_uri {provider_uri!r} has no 'day' entry; qexp serves daily data.")
    return os.fspath(provider_uri)


def make_local(uri: str, **_: Any) -> Any:
    from .provider import LocalProvider
    return LocalProvider(uri)


def register_providers(register: Any) -> None:
    register(["", "file"], make_local, description="Qlib-format folder (calendars/, instruments/, features/)")


def register_cache_stores(register: Any) -> None:
    from .cache import make_disk_store
    register(["", "file", "disk"], make_disk_store,
             description="a folder: file locks, LRU size cap (QEXP_CACHE_MAX_GB, ?max_gb=)")


def configure_runtime(settings: dict) -> None:
    """Threads, memory cache and cache store from ``settings`` (absent keys: the defaults)."""
    from . import cache, memcache
    from .provider import set_kernels
    memcache.configure(settings)
    set_kernels(settings.get("kernels"))
    server = settings.get("default_conf") == "server"
    if "dataset_cache" in settings:
        dataset_cache = settings["dataset_cache"]
    else:
        dataset_cache = "DiskDatasetCache" if server else cache._UNSET
    expression_cache = settings.get("expression_cache", "DiskExpressionCache" if server else None)
    explicit = any(k in settings for k in STORE_KEYS) or settings.get("dataset_cache") == "SimpleDatasetCache" \
        or bool(os.environ.get("QEXP_CACHE_URI"))
    uri = cache_uri_from_settings(settings) if explicit else None
    cache.configure(uri=uri, dataset_cache=dataset_cache, default_disk_cache=settings.get("default_disk_cache", 1),
                    expression_cache=expression_cache)
    if uri is not None and (dataset_cache or expression_cache):
        cache.active_store()  # open it now: a wrong URI fails, and an unreachable Redis warns, at qexp.init


def configure(settings: dict) -> list[str]:
    """Set the active provider from ``provider_uri`` (default: lazy synthetic market) and ``region``, and
    apply the data runtime settings."""
    consumed = [k for k in (*OWN_KEYS, *QLIB_KEYS) if k in settings]
    configure_runtime(settings)
    uri = settings.get("provider_uri")
    region = settings.get("region") or REGION_CN
    if uri is None:
        from .lazy import LazySynthProvider
        from .synth import SynthParams
        provider = LazySynthProvider(SynthParams(**(settings.get("synth") or {})))
    else:
        path = os.path.expanduser(_uri(uri))
        provider = create_by_scheme("data_provider", path)
    set_provider(provider, region=str(region).lower())
    return consumed
