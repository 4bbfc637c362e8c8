"""The data plugin's share of ``qexp.init(**settings)``: build the provider and set it as active."""
from __future__ import annotations

import os
from typing import Any

from qexp.ext import REGION_CN, create_by_scheme, set_provider

# Qlib data settings that qexp accepts; the ones that tune Qlib's own caches, servers or parallelism have no
# meaning here (qexp evaluates in-process, vectorised) and are consumed without effect.
OWN_KEYS = ("provider_uri", "region", "synth")
IGNORED_KEYS = ("kernels", "expression_cache", "dataset_cache", "calendar_cache", "local_cache_path",
                "redis_host", "redis_port", "redis_task_db", "redis_password", "mount_path", "auto_mount",
                "flask_server", "flask_port", "timeout", "maxtasksperchild", "joblib_backend",
                "default_disk_cache", "mem_cache_size_limit", "mem_cache_limit_type", "mem_cache_expire",
                "dump_protocol_version", "provider", "calendar_provider", "instrument_provider",
                "feature_provider", "expression_provider", "dataset_provider", "pit_provider",
                "client_config", "custom_ops", "min_data_shift", "logging_level", "logging_config",
                "exp_manager_config", "clear_mem_cache", "freq")


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


def configure(settings: dict) -> list[str]:
    """Set the active provider from ``provider_uri`` (default: lazy synthetic market) and ``region``."""
    consumed = [k for k in (*OWN_KEYS, *IGNORED_KEYS) if k in settings]
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
