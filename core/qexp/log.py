"""qexp's logging: Qlib's format and settings, the messages Qlib logs at init and run start, and the capture
of a run's log records as its artifact ``logs/run.log``.

Every qexp logger is a child of ``qexp`` (``qexp.workflow``, ``qexp.data``, ``qexp.mlflow``, ...), so one
level or handler governs them all. ``qexp.init`` installs a stderr handler on ``qexp`` with Qlib's format
``[pid:thread](time) LEVEL - name - [file:line] - message`` at ``logging_level`` (``QEXP_LOG_LEVEL``, default
INFO as in Qlib), or applies ``logging_config`` with :func:`logging.config.dictConfig` instead (a Qlib config
naming the ``qlib`` logger and ``qlib.log.LogFilter`` works: both are mapped to qexp's).
"""
from __future__ import annotations

import logging
import logging.config
import re
import sys
import threading
from typing import Any

from .exceptions import ConfigError
from .hookspecs import hookimpl
from .runtime import capture_logs_from_settings, log_level_from_settings

QLIB_FORMAT = "[%(process)s:%(threadName)s](%(asctime)s) %(levelname)s - %(name)s - [%(filename)s:%(lineno)d] - %(message)s"
"""Qlib's default log format (qlib/config.py ``logging_config``)."""
ROOT = "qexp"
RUN_LOG_ARTIFACT = "logs/run.log"
MAX_CAPTURED_LINES = 200_000  # a runaway logger must not hold the whole run's output in memory

log = logging.getLogger("qexp.Initialization")
wf_log = logging.getLogger("qexp.workflow")


class LogFilter(logging.Filter):
    """Qlib's ``qlib.log.LogFilter``: drops records whose message matches one of the regexes ``param``."""

    def __init__(self, param: list[str] | str | None = None) -> None:
        super().__init__()
        params = [param] if isinstance(param, str) else list(param or [])
        self._patterns = [re.compile(p) for p in params]

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(p.match(msg) for p in self._patterns)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (pytest and notebooks swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_default_handler: logging.Handler | None = None
_state: dict[str, Any] = {"capture": False}
_config_handlers: list[tuple[logging.Logger, logging.Handler]] = []
"""The handlers the last ``logging_config`` put on loggers: removed when the next ``qexp.init`` configures
logging again (a re-init without ``logging_config`` printed every line twice)."""


def default_handler() -> logging.Handler:
    global _default_handler
    if _default_handler is None:
        _default_handler = StderrHandler()
        _default_handler.setFormatter(logging.Formatter(QLIB_FORMAT))
        _default_handler.set_name("qexp-default")
    return _default_handler


def _copy_containers(value: Any) -> Any:
    """A copy of the dicts and lists (dictConfig edits its config in place), the objects in them kept: a
    config may hand over a stream or a filter instance, which a deep copy would replace by a copy."""
    if isinstance(value, dict):
        return {k: _copy_containers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_containers(v) for v in value]
    return value


def _translate_qlib_config(config: dict) -> dict:
    """A Qlib ``logging_config`` in qexp's terms: its ``qlib`` logger also configures ``qexp``, and
    ``qlib.log.LogFilter`` is qexp's :class:`LogFilter`. Existing loggers stay enabled unless it says."""
    cfg = _copy_containers(config)
    for flt in (cfg.get("filters") or {}).values():
        if isinstance(flt, dict) and flt.get("()") == "qlib.log.LogFilter":
            flt["()"] = f"{__name__}.LogFilter"
    loggers = cfg.get("loggers") or {}
    if "qlib" in loggers and ROOT not in loggers:
        loggers[ROOT] = _copy_containers(loggers["qlib"])
    cfg.setdefault("disable_existing_loggers", False)
    return cfg


class _CheckOnly(logging.config.DictConfigurator):
    """Resolves what a ``dictConfig`` names (formatters and filters are built, handler classes imported,
    references and levels checked) without installing anything."""

    def check(self) -> None:
        config = self.config
        if config.get("version") != 1:
            raise ValueError(f"version must be 1, got {config.get('version')!r}")
        if config.get("incremental"):
            return
        formatters = config.get("formatters") or {}
        filters = config.get("filters") or {}
        handlers = config.get("handlers") or {}
        for section in ("formatters", "filters", "handlers", "loggers"):
            if not isinstance(config.get(section) or {}, dict):
                raise ValueError(f"'{section}' must be a dict of name -> settings")
        for name in formatters:
            try:
                self.configure_formatter(formatters[name])
            except Exception as exc:
                raise ValueError(f"formatter {name!r}: {exc}") from None
        for name in filters:
            try:
                self.configure_filter(filters[name])
            except Exception as exc:
                raise ValueError(f"filter {name!r}: {exc}") from None
        for name, spec in handlers.items():
            if not isinstance(spec, dict):
                raise ValueError(f"handler {name!r} must be a dict")
            factory = spec.get("()") or spec.get("class")
            if not factory:
                raise ValueError(f"handler {name!r} names no 'class'")
            if isinstance(factory, str):
                try:
                    self.resolve(factory)
                except Exception as exc:
                    raise ValueError(f"handler {name!r}: cannot import {factory!r} ({exc})") from None
            self._refs(f"handler {name!r}", "formatter", [spec["formatter"]] if spec.get("formatter") else [],
                       formatters)
            self._refs(f"handler {name!r}", "filter", spec.get("filters") or [], filters)
            self._level(f"handler {name!r}", spec.get("level"))
        loggers = dict(config.get("loggers") or {})
        if config.get("root") is not None:
            loggers["(root)"] = config["root"]
        for name, spec in loggers.items():
            if not isinstance(spec, dict):
                raise ValueError(f"logger {name!r} must be a dict")
            self._refs(f"logger {name!r}", "handler", spec.get("handlers") or [], handlers)
            self._refs(f"logger {name!r}", "filter", spec.get("filters") or [], filters)
            self._level(f"logger {name!r}", spec.get("level"))

    @staticmethod
    def _refs(owner: str, kind: str, names: Any, known: dict) -> None:
        missing = [n for n in names if n not in known]
        if missing:
            raise ValueError(f"{owner} names {kind}(s) {', '.join(map(repr, missing))} that the config does not "
                             f"define")

    @staticmethod
    def _level(owner: str, level: Any) -> None:
        if level is not None and not isinstance(level, int) and logging.getLevelName(str(level).upper()) \
                == f"Level {str(level).upper()}":
            raise ValueError(f"{owner}: unknown level {level!r}")


def validate(settings: dict[str, Any]) -> None:
    """:class:`ConfigError` for a logging setting ``configure`` would fail on; changes nothing."""
    log_level_from_settings(settings)  # QEXP_LOG_LEVEL is checked here
    config = settings.get("logging_config")
    if config:
        try:
            _CheckOnly(_translate_qlib_config(config)).check()
        except (ValueError, TypeError, AttributeError, ImportError) as exc:
            raise ConfigError(f"logging_config: {exc}") from None


def snapshot() -> tuple:
    """The logging state ``configure`` changes, for :func:`restore` when a later step of ``qexp.init``
    fails."""
    root, top = logging.getLogger("qexp"), logging.root
    return (root.level, list(root.handlers), root.propagate, top.level, list(top.handlers), dict(_state),
            list(_config_handlers))


def restore(saved: tuple) -> None:
    root, top = logging.getLogger("qexp"), logging.root
    root.level, root.handlers[:], root.propagate, top.level, top.handlers[:], state, handlers = saved
    _state.clear()
    _state.update(state)
    _config_handlers[:] = handlers


def _drop_config_handlers() -> None:
    for logger, handler in _config_handlers:
        logger.removeHandler(handler)
    _config_handlers.clear()


def _apply_dict_config(config: dict) -> None:
    cfg = _translate_qlib_config(config)
    try:
        logging.config.dictConfig(cfg)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ConfigError(f"logging_config: {exc}") from None
    # dictConfig replaces the handlers of every logger it names (and made them): all of theirs are the config's
    named = [logging.Logger.manager.loggerDict.get(n) for n in cfg.get("loggers") or {}]
    targets = [lg for lg in named if isinstance(lg, logging.Logger)]
    if cfg.get("root") is not None:
        targets.append(logging.root)
    for lg in targets:
        _config_handlers.extend((lg, h) for h in lg.handlers)


def configure(settings: dict[str, Any]) -> None:
    """Apply ``logging_config`` / ``logging_level`` / ``QEXP_LOG_LEVEL`` and ``capture_logs`` (``qexp.init``).

    Each call replaces what the previous one installed: the handlers of an earlier ``logging_config`` are
    removed (so a re-init never doubles the lines), then the new config or qexp's default handler is put on."""
    root = logging.getLogger("qexp")
    config = settings.get("logging_config")
    _drop_config_handlers()
    if config:
        if _default_handler is not None:
            root.removeHandler(_default_handler)
        _apply_dict_config(config)
        if settings.get("logging_level") is not None or _env_level_set():
            root.setLevel(log_level_from_settings(settings))
    else:
        handler = default_handler()
        if handler not in root.handlers:
            root.addHandler(handler)
        root.setLevel(log_level_from_settings(settings))
    _state["capture"] = capture_logs_from_settings(settings)
    _ensure_events()
    log.info("default_conf: %s.", settings.get("default_conf") or "client")


def _env_level_set() -> bool:
    import os
    return bool(os.environ.get("QEXP_LOG_LEVEL", "").strip())


def initialized(manager: Any, settings: dict[str, Any], uri_given: bool) -> None:
    """Qlib's closing init messages: the store chosen and the data path."""
    if not uri_given:
        wf_log.info("No tracking URI is provided. Use the default tracking URI.")
    wf_log.info("tracking store: %s (%s)", manager.uri, type(manager).__name__)
    from .data_api import get_provider, has_provider
    if has_provider():
        log.info("data_path=%s", getattr(get_provider(), "uri", None))
    log.info("qexp successfully initialized based on %s settings.", settings.get("default_conf") or "client")


# ---- run start/end messages and log capture ------------------------------------------------------------
class _RunCapture(logging.Handler):
    """Collects the formatted records emitted while one run is active (any thread of this process)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter(QLIB_FORMAT))
        self.lines: list[str] = []
        self.dropped = 0
        self._lines_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # noqa: BLE001 - a bad record must not break the run
            return
        with self._lines_lock:
            if len(self.lines) < MAX_CAPTURED_LINES:
                self.lines.append(line)
            else:
                self.dropped += 1

    def text(self) -> str:
        with self._lines_lock:
            body = "".join(self.lines)
            if self.dropped:
                body += f"... {self.dropped} more records dropped (limit {MAX_CAPTURED_LINES} lines)\n"
            return body


_captures: dict[int, tuple[_RunCapture, list[logging.Logger]]] = {}
_captures_lock = threading.Lock()


def _start_capture(recorder: Any) -> None:
    handler = _RunCapture()
    targets = [logging.getLogger()]
    qexp_logger = logging.getLogger("qexp")
    if not qexp_logger.propagate:
        targets.append(qexp_logger)
    for lg in targets:
        lg.addHandler(handler)
    # the root logger drops INFO records by default (WARNING); qexp's logger level still decides what is made
    with _captures_lock:
        _captures[id(recorder)] = (handler, targets)
    from .api import before_run_end
    before_run_end(recorder, lambda status: _finish_capture(recorder))


def _finish_capture(recorder: Any) -> None:
    with _captures_lock:
        entry = _captures.pop(id(recorder), None)
    if entry is None:
        return
    handler, targets = entry
    for lg in targets:
        lg.removeHandler(handler)
    text = handler.text()
    if text:
        recorder.log_text(text, RUN_LOG_ARTIFACT)


class _RunEvents:
    """Qlib's messages at run start and the run-log capture, as recorder event hooks."""

    @hookimpl
    def recorder_started(self, recorder: Any) -> None:
        if _state["capture"] and id(recorder) not in _captures:
            _start_capture(recorder)
        wf_log.info("Experiment %s starts running ...", recorder.experiment_id)
        wf_log.info("Recorder %s starts running under Experiment %s ...", recorder.id, recorder.experiment_id)

    @hookimpl
    def recorder_ended(self, recorder: Any, status: str) -> None:
        wf_log.info("Recorder %s ends with status %s", recorder.id, status)
        _finish_capture(recorder)  # runs ended without R (no before-end callback) still keep their log


EVENTS_PLUGIN = "qexp-log"
_events = _RunEvents()


def _ensure_events() -> None:
    from .plugins import get_plugin, register
    if get_plugin(EVENTS_PLUGIN) is None:
        register(_events, name=EVENTS_PLUGIN)
