"""Qlib's runtime settings (``qlib.init(**kwargs)`` / a YAML's ``qlib_init``) and qexp's own, checked at
``qexp.init``.

Every key Qlib's ``qlib.init`` accepts is either honoured with Qlib's meaning (by the core or by the plugin
that owns it: threads and caches belong to the data plugin) or, where it has no meaning in qexp (Qlib's
client/server and joblib keys), accepted with a one-line notice that names it. Nothing is dropped silently:
an invalid value, or a key that neither qexp nor Qlib knows, raises :class:`ConfigError` at ``qexp.init``
naming the key and what it accepts.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .exceptions import ConfigError
from .uri import mask_uri

log = logging.getLogger("qexp.Initialization")

DATASET_CACHES = (None, "DiskDatasetCache", "SimpleDatasetCache")
EXPRESSION_CACHES = (None, "DiskExpressionCache")
LEVEL_NAMES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_DEFAULT_THREADS = 8


# ---- value checks: each returns None when the value is valid, else what the key accepts --------------
def _one_of(*allowed: Any) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in allowed else "one of " + ", ".join(repr(a) for a in allowed)
    return check


def _int_at_least(lo: int, hi: int | None = None) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
        return None if ok else f"a whole number >= {lo}" + (f" and <= {hi}" if hi is not None else "")
    return check


def _number_at_least(lo: float) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= lo
        return None if ok else f"a number >= {lo:g}"
    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "True or False"


def _path_or_none(v: Any) -> str | None:
    return None if v is None or isinstance(v, (str, os.PathLike)) else "a folder path or None"


def _str_or_none(v: Any) -> str | None:
    return None if v is None or isinstance(v, str) else "a string or None"


def _host(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "a host name or address"


def _kernels(v: Any) -> str | None:
    if callable(v):
        return None
    return _int_at_least(1)(v) and "a whole number >= 1, or a callable freq -> int"


def _level(v: Any) -> str | None:
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return None
    if isinstance(v, str) and (v.strip().upper() in LEVEL_NAMES or v.strip().isdigit()):
        return None
    return "a logging level: " + ", ".join(LEVEL_NAMES) + " or a number"


def _logging_config(v: Any) -> str | None:
    return None if v is None or (isinstance(v, dict) and "version" in v) else \
        "a logging.config.dictConfig dict (with 'version': 1) or None"


def _provider_uri(v: Any) -> str | None:
    return None if v is None or isinstance(v, (str, os.PathLike, dict)) else "a folder path or {freq: path}"


def _region(v: Any) -> str | None:
    return None if isinstance(v, str) and v.lower() in ("cn", "us", "tw") else "one of 'cn', 'us', 'tw'"


def _anything(v: Any) -> str | None:
    return None


def _trade_unit(v: Any) -> str | None:
    ok = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0)
    return None if ok else "a positive number of shares per lot (100 in cn, 1 in us) or None (no lot rounding)"


def _limit_threshold(v: Any) -> str | None:
    if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0):
        return None
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, str) for x in v):
        return None
    return "a number (0.095), a (buy_limit_expression, sell_limit_expression) pair or None (no limits)"


def _deal_price(v: Any) -> str | None:
    if isinstance(v, str) and v.strip():
        return None
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, str) and x.strip() for x in v):
        return None
    return "a price field ('close', '$open', 'vwap') or a (buy_field, sell_field) pair"


CUSTOM_OPS_REFUSED = (
    "only an empty list: qexp's expression engine computes its built-in operators (Qlib's: Ref, Mean, EMA, "
    "Corr, If, ...) with its own vectorised kernels and cannot run Qlib operator classes. Write the feature with "
    "the built-in operators, or compute it in a handler processor (a Processor in infer_processors / "
    "learn_processors), and remove custom_ops")


def _custom_ops(v: Any) -> str | None:
    return None if v is None or (isinstance(v, (list, tuple)) and len(v) == 0) else CUSTOM_OPS_REFUSED


@dataclass(frozen=True)
class Setting:
    """One runtime key: Qlib's default, what it accepts, and what it does in qexp."""

    name: str
    default: Any
    check: Callable[[Any], str | None]
    meaning: str
    notice: bool = False
    """True: Qlib's key has no meaning in qexp; it is accepted with a notice that says so."""


_NOTICE_NFS = "mounts Qlib's NFS data server; qexp reads provider_uri directly"
_NOTICE_PROVIDER = "picks a Qlib provider class; qexp chooses its data provider by provider_uri's scheme"
_NOTICE_JOBLIB = "tunes Qlib's joblib worker processes; qexp evaluates expressions on threads (see kernels)"

QLIB_SETTINGS: dict[str, Setting] = {s.name: s for s in [
    # data
    Setting("default_conf", "client", _one_of("client", "server"),
            "Qlib's config template: 'server' turns the disk expression and dataset caches on by default"),
    Setting("provider_uri", None, _provider_uri, "the Qlib-format data folder (default: the synthetic market)"),
    Setting("region", "cn", _region, "market conventions: cn, us or tw"),
    Setting("kernels", None, _kernels,
            "threads of the expression engine (an int, or a callable freq -> int); default: CPUs, at most 8"),
    Setting("expression_cache", None, _one_of(*EXPRESSION_CACHES),
            "DiskExpressionCache keeps each instrument's expression series in the cache store"),
    Setting("dataset_cache", "DiskDatasetCache", _one_of(*DATASET_CACHES),
            "DiskDatasetCache (qexp's default) keeps loaders' frames in the cache store; SimpleDatasetCache in the "
            "disk store at local_cache_path (never Redis); None turns it off"),
    Setting("local_cache_path", None, _path_or_none, "the folder of the on-disk cache store"),
    Setting("default_disk_cache", 1, _one_of(0, 1, 2), "the dataset and expression caches: 0 skip, 1 use, 2 rebuild"),
    Setting("mem_cache_size_limit", 500, _int_at_least(0),
            "size of each in-process memory cache (calendars, instruments, features)"),
    Setting("mem_cache_limit_type", "length", _one_of("length", "sizeof"),
            "what mem_cache_size_limit counts: entries ('length') or bytes ('sizeof')"),
    Setting("mem_cache_expire", 3600, _number_at_least(0), "seconds a memory-cached calendar stays valid"),
    Setting("clear_mem_cache", True, _bool, "empty the memory caches at qexp.init"),
    Setting("redis_host", "127.0.0.1", _host, "Redis host of the cache store (maps onto cache_uri)"),
    Setting("redis_port", 6379, _int_at_least(1, 65535), "Redis port of the cache store"),
    Setting("redis_task_db", 1, _int_at_least(0), "Redis database of the cache store"),
    Setting("redis_password", None, _str_or_none, "Redis password of the cache store"),
    # logging and tracking
    Setting("logging_level", "INFO", _level, "level of the qexp loggers (QEXP_LOG_LEVEL)"),
    Setting("logging_config", None, _logging_config, "a logging.config.dictConfig dict applied at qexp.init"),
    Setting("exp_manager", None, _anything, "the tracking store: {'class': ..., 'kwargs': {'uri': ...}}"),
    # no meaning in qexp: accepted with a notice
    Setting("mount_path", None, _anything, _NOTICE_NFS, notice=True),
    Setting("auto_mount", False, _anything, _NOTICE_NFS, notice=True),
    Setting("timeout", 100, _anything, "is the client's timeout for Qlib's data server", notice=True),
    Setting("flask_server", None, _anything, "addresses Qlib's data server", notice=True),
    Setting("flask_port", None, _anything, "addresses Qlib's data server", notice=True),
    Setting("calendar_cache", None, _anything, "is unused by Qlib itself", notice=True),
    Setting("maxtasksperchild", None, _anything, _NOTICE_JOBLIB, notice=True),
    Setting("joblib_backend", "multiprocessing", _anything, _NOTICE_JOBLIB, notice=True),
    Setting("dump_protocol_version", 4, _anything,
            "sets Qlib's pickle protocol; qexp pickles artifacts with Python's default protocol", notice=True),
    Setting("provider", "LocalProvider", _anything, _NOTICE_PROVIDER, notice=True),
    Setting("calendar_provider", "LocalCalendarProvider", _anything, _NOTICE_PROVIDER, notice=True),
    Setting("instrument_provider", "LocalInstrumentProvider", _anything, _NOTICE_PROVIDER, notice=True),
    Setting("feature_provider", "LocalFeatureProvider", _anything, _NOTICE_PROVIDER, notice=True),
    Setting("expression_provider", "LocalExpressionProvider", _anything, _NOTICE_PROVIDER, notice=True),
    Setting("dataset_provider", "LocalDatasetProvider", _anything, _NOTICE_PROVIDER, notice=True),
    Setting("pit_provider", "LocalPITProvider", _anything, "reads Qlib's point-in-time data, which qexp does not "
            "serve", notice=True),
    Setting("pit_record_type", None, _anything, "describes Qlib's point-in-time files", notice=True),
    Setting("pit_record_nan", None, _anything, "describes Qlib's point-in-time files", notice=True),
    Setting("custom_ops", [], _custom_ops, "Qlib operator classes to register; qexp's expression engine has a "
            "fixed set of built-in operators, so only an empty list is accepted"),
    Setting("min_data_shift", 0, _anything, "shifts Qlib's minute bars; qexp serves daily data", notice=True),
    Setting("mem_cache_space_limit", None, _anything, "was the client's memory limit in older Qlib; use "
            "mem_cache_size_limit with mem_cache_limit_type='sizeof'", notice=True),
    Setting("mongo", None, _anything, "configures Qlib's MongoDB task manager; qexp's task layer keeps tasks in "
            "its own task store", notice=True),
    Setting("trade_unit", None, _trade_unit, "the backtest exchange's lot size when a config's exchange_kwargs "
            "gives none (default: the region's, 100 in cn, 1 in us)"),
    Setting("limit_threshold", None, _limit_threshold, "the backtest exchange's daily price limit when a config's "
            "exchange_kwargs gives none (default: the region's, 0.095 in cn, None in us)"),
    Setting("deal_price", None, _deal_price, "the backtest exchange's deal price when a config's exchange_kwargs "
            "gives none (default: the region's, 'close')"),
    Setting("dataset_cache_dir_name", "dataset_cache", _anything, "names Qlib's cache folder inside provider_uri; "
            "qexp's cache store is cache_uri / local_cache_path", notice=True),
    Setting("features_cache_dir_name", "features_cache", _anything, "names Qlib's cache folder inside "
            "provider_uri; qexp's cache store is cache_uri / local_cache_path", notice=True),
    Setting("qlib_reset_version", None, _anything, "overrides the Qlib version reported to a data server",
            notice=True),
]}
"""Every key of Qlib's ``qlib.init`` / ``C`` (qlib/config.py) that a ``qlib_init`` section may carry."""

QEXP_SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("cache_uri", None, _str_or_none, "the cache store: a folder / disk:, or redis://[:pw@]host:port/db "
            "(QEXP_CACHE_URI)"),
    Setting("capture_logs", False, _bool, "save each run's log records as artifact logs/run.log (QEXP_CAPTURE_LOGS)"),
    Setting("system_metrics", False, _bool, "log system/* metrics of every run (QEXP_ENABLE_SYSTEM_METRICS_LOGGING)"),
    Setting("system_metrics_interval", 10.0, _number_at_least(0.01),
            "seconds between system-metric samples (QEXP_SYSTEM_METRICS_SAMPLING_INTERVAL)"),
    Setting("system_metrics_samples_before_logging", 1, _int_at_least(1),
            "samples averaged into one logged point (QEXP_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING)"),
    Setting("system_metrics_node_id", None, _str_or_none, "adds a node name: system/<node>/... "
            "(QEXP_SYSTEM_METRICS_NODE_ID)"),
]}
"""qexp's own runtime settings (checked here; used by the core or by the plugin named in the docs)."""

CORE_KEYS = frozenset({"logging_level", "logging_config", "capture_logs", "default_conf", "exp_manager"})
"""Settings the core itself uses (logging, the store); the rest go to plugins through ``qexp_init``."""


def validate(settings: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first invalid value of a known key (before anything changes)."""
    for key, value in settings.items():
        spec = QLIB_SETTINGS.get(key) or QEXP_SETTINGS.get(key)
        if spec is None:
            continue
        allowed = spec.check(value)
        if allowed:
            raise ConfigError(f"qexp.init: {key}={value!r} is invalid; {key} accepts {allowed} ({spec.meaning})")


def check_unused(settings: dict[str, Any], consumed: set[str]) -> list[str]:
    """After the plugins took their keys: give the one-line notice for Qlib keys with no meaning in qexp (and
    for keys whose plugin is not loaded), and raise for keys nobody knows. Returns the noticed keys."""
    left = [k for k in settings if k not in consumed and k not in CORE_KEYS]
    unknown = sorted(k for k in left if k not in QLIB_SETTINGS and k not in QEXP_SETTINGS)
    if unknown:
        known = sorted(set(QLIB_SETTINGS) | set(QEXP_SETTINGS))
        raise ConfigError(
            f"qexp.init: unknown setting(s) {', '.join(repr(k) for k in unknown)}: neither qexp nor Qlib has "
            f"{'it' if len(unknown) == 1 else 'them'}. Known settings: uri, default_exp_name, mirrors, autolog, "
            f"skip_if_reg, {', '.join(known)}; a plugin's own setting needs that plugin loaded (qexp plugins).")
    noticed = []
    for key in left:
        spec = QLIB_SETTINGS.get(key) or QEXP_SETTINGS[key]
        if spec.notice:
            log.warning("qexp.init: Qlib setting %r %s; accepted, no effect in qexp", key, spec.meaning)
        else:
            log.warning("qexp.init: setting %r (%s) is not used: no loaded plugin handles it (qexp plugins)",
                        key, spec.meaning)
        noticed.append(key)
    return noticed


# ---- effective values (shared by the plugins that apply them and by `qexp run --dry-run`) -----------
def default_threads() -> int:
    """``QEXP_DATA_THREADS``, else the CPUs this process may use (at most 8)."""
    value = os.environ.get("QEXP_DATA_THREADS", "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ConfigError(f"QEXP_DATA_THREADS={value!r} is not a whole number; set it to the number of "
                              f"threads for feature computation (1 turns threading off)") from None
        if n < 1:
            raise ConfigError(f"QEXP_DATA_THREADS={value!r} must be at least 1 (1 turns threading off)")
        return n
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, MAX_DEFAULT_THREADS))


def resolve_kernels(kernels: Any = None, freq: str = "day") -> int:
    """Threads for ``freq``: Qlib's ``kernels`` (an int or a callable of the frequency), else the default."""
    if kernels is None:
        return default_threads()
    n = kernels(freq) if callable(kernels) else kernels
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"kernels gave {n!r} for freq {freq!r}; it must give a whole number >= 1")
    return n


def dataset_cache_default() -> str | None:
    """The dataset cache when ``dataset_cache`` is not given: on unless ``QEXP_DATASET_CACHE`` is 0/false/off/no."""
    off = os.environ.get("QEXP_DATASET_CACHE", "1").strip().lower() in {"0", "false", "off", "no"}
    return None if off else "DiskDatasetCache"


def cache_uri_from_settings(settings: dict[str, Any]) -> str:
    """The cache store's URI: ``SimpleDatasetCache`` -> the folder ``local_cache_path``; else ``cache_uri``;
    else Qlib's ``redis_*`` keys as ``redis://[:password@]host:port/db``; else ``local_cache_path``; else
    ``QEXP_CACHE_URI``; else ``$QEXP_CACHE_DIR/datasets``."""
    from .cache import cache_base_dir, default_cache_uri
    local = settings.get("local_cache_path")
    if settings.get("dataset_cache") == "SimpleDatasetCache":
        return os.fspath(Path(local).expanduser()) if local else str(cache_base_dir() / "datasets")
    if settings.get("cache_uri"):
        return str(settings["cache_uri"])
    if any(k in settings for k in ("redis_host", "redis_port", "redis_task_db", "redis_password")):
        host = settings.get("redis_host") or "127.0.0.1"
        port = settings.get("redis_port") or 6379
        db = settings.get("redis_task_db", 1)
        pw = settings.get("redis_password")
        from urllib.parse import quote
        auth = f":{quote(str(pw), safe='')}@" if pw else ""
        return f"redis://{auth}{host}:{port}/{db}"
    if local:
        return os.fspath(Path(local).expanduser())
    return default_cache_uri()


def _env_flag(*names: str) -> bool | None:
    for name in names:
        raw = os.environ.get(name)
        if raw is not None and raw.strip():
            return raw.strip().lower() in {"1", "true", "yes", "on"}
    return None


def _env_value(cast: Callable[[str], Any], *names: str) -> Any:
    for name in names:
        raw = os.environ.get(name, "").strip()
        if raw:
            try:
                return cast(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not valid: expected {cast.__name__}") from None
    return None


@dataclass(frozen=True)
class SystemMetricsConfig:
    enabled: bool
    interval: float
    samples_before_logging: int
    node_id: str | None


def system_metrics_config(settings: dict[str, Any]) -> SystemMetricsConfig:
    """System metrics as set by ``qexp.init`` settings, else ``QEXP_...`` env vars, else MLflow's
    (``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING``, ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``,
    ``..._SAMPLES_BEFORE_LOGGING``, ``..._NODE_ID``); defaults off, 10 s, 1, none (MLflow's)."""
    enabled = settings.get("system_metrics")
    if enabled is None:
        enabled = _env_flag("QEXP_ENABLE_SYSTEM_METRICS_LOGGING", "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING")
    interval = settings.get("system_metrics_interval")
    if interval is None:
        interval = _env_value(float, "QEXP_SYSTEM_METRICS_SAMPLING_INTERVAL", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
    samples = settings.get("system_metrics_samples_before_logging")
    if samples is None:
        samples = _env_value(int, "QEXP_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING",
                             "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING")
    node = settings.get("system_metrics_node_id")
    if node is None:
        node = _env_value(str, "QEXP_SYSTEM_METRICS_NODE_ID", "MLFLOW_SYSTEM_METRICS_NODE_ID")
    interval = 10.0 if interval is None else float(interval)
    samples = 1 if samples is None else int(samples)
    if interval <= 0 or samples < 1:
        raise ConfigError(f"system metrics: interval {interval} must be > 0 and samples_before_logging {samples} "
                          f">= 1")
    return SystemMetricsConfig(bool(enabled), interval, samples, node or None)


def log_level_from_settings(settings: dict[str, Any]) -> int:
    """``logging_level`` (name or number), else ``QEXP_LOG_LEVEL``, else INFO (Qlib's default)."""
    value = settings.get("logging_level")
    if value is None:
        value = os.environ.get("QEXP_LOG_LEVEL", "").strip() or "INFO"
        if _level(value):
            raise ConfigError(f"QEXP_LOG_LEVEL={value!r} is invalid; use {_level(value)}")
    if isinstance(value, int):
        return value
    text = str(value).strip().upper()
    return int(text) if text.isdigit() else int(logging.getLevelName(text))


def capture_logs_from_settings(settings: dict[str, Any]) -> bool:
    value = settings.get("capture_logs")
    if value is None:
        return bool(_env_flag("QEXP_CAPTURE_LOGS"))
    return bool(value)


def effective_runtime_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """What ``qexp.init(**settings)`` will run with: every runtime key's effective value (given, from the
    environment, or the default), then the given keys that have no meaning in qexp. ``qexp run --dry-run``
    prints it."""
    s = dict(settings)
    server = s.get("default_conf") == "server"
    out: dict[str, Any] = {}
    out["provider_uri"] = str(s["provider_uri"]) if s.get("provider_uri") is not None else "synthetic market"
    out["region"] = str(s.get("region") or "cn").lower()
    kernels = s.get("kernels")
    out["kernels"] = resolve_kernels(kernels, "day")
    dataset_cache = s["dataset_cache"] if "dataset_cache" in s else dataset_cache_default()
    out["dataset_cache"] = dataset_cache
    out["expression_cache"] = s.get("expression_cache", "DiskExpressionCache" if server else None)
    out["default_disk_cache"] = s.get("default_disk_cache", 1)
    # printed by --dry-run and logged: never the Redis password
    out["cache_uri"] = mask_uri(cache_uri_from_settings(s)) if dataset_cache or out["expression_cache"] else None
    from .cache import default_max_bytes
    cap = default_max_bytes()
    out["cache_max_gb"] = None if cap is None else round(cap / 1024 ** 3, 3)
    for key in ("mem_cache_size_limit", "mem_cache_limit_type", "mem_cache_expire", "clear_mem_cache"):
        out[key] = s.get(key, QLIB_SETTINGS[key].default)
    for key in ("trade_unit", "limit_threshold", "deal_price"):
        out[key] = s[key] if key in s else f"the region's ({out['region']})"
    out["logging_level"] = logging.getLevelName(log_level_from_settings(s))
    out["logging_config"] = "custom dictConfig" if s.get("logging_config") else "qexp default (Qlib's format)"
    out["capture_logs"] = capture_logs_from_settings(s)
    sm = system_metrics_config(s)
    out["system_metrics"] = sm.enabled
    out["system_metrics_interval"] = sm.interval
    out["system_metrics_samples_before_logging"] = sm.samples_before_logging
    if sm.node_id:
        out["system_metrics_node_id"] = sm.node_id
    ignored = {k: f"accepted, no effect in qexp: {QLIB_SETTINGS[k].meaning}"
               for k in s if k in QLIB_SETTINGS and QLIB_SETTINGS[k].notice}
    if ignored:
        out["ignored"] = ignored
    return out
