"""Logging: loggers under ``qexp``, Qlib's format and messages, levels, dictConfig, captured run logs."""
from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import pytest

import qexp
from qexp import R

REPO = Path(__file__).resolve().parents[2]
QLIB_LINE = re.compile(r"^\[(\d+):(\S+)\]\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\) (INFO|DEBUG|WARNING|ERROR) - "
                       r"([\w.]+) - \[([\w.]+):(\d+)\] - (.*)$")


def _logger_names() -> list[tuple[str, str]]:
    """``(file, name)`` of every ``logging.getLogger(...)`` call in core and plugins (``__name__`` included)."""
    out = []
    for path in sorted([*REPO.glob("core/qexp/**/*.py"), *REPO.glob("plugins/*/qexp_*/**/*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger" and node.args:
                arg = node.args[0]
                name = arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg)
                out.append((str(path.relative_to(REPO)), name))
    return out


def test_every_qexp_logger_is_a_child_of_qexp():
    names = _logger_names()
    assert names, "no loggers found"
    bad = [(f, n) for f, n in names if not (isinstance(n, str) and (n == "qexp" or n.startswith("qexp.")))]
    assert not bad, f"loggers outside the 'qexp' tree: {bad}"


def test_init_and_runs_log_qlibs_messages_in_qlibs_format(tmp_path, capsys):
    qexp.init(uri=str(tmp_path / "store"))
    with R.start(experiment_name="logs"):
        rec = R.get_recorder()
    err = capsys.readouterr().err.splitlines()
    lines = [m for m in map(QLIB_LINE.match, err) if m]
    assert lines, err
    msgs = {(m.group(5), m.group(8)) for m in lines}
    assert ("qexp.Initialization", "default_conf: client.") in msgs
    assert ("qexp.Initialization", "qexp successfully initialized based on client settings.") in msgs
    assert any(n == "qexp.workflow" and t.startswith("tracking store: ") and str(tmp_path) in t for n, t in msgs)
    assert ("qexp.workflow", f"Recorder {rec.id} starts running under Experiment {rec.experiment_id} ...") in msgs
    assert ("qexp.workflow", f"Experiment {rec.experiment_id} starts running ...") in msgs
    assert ("qexp.workflow", f"Recorder {rec.id} ends with status FINISHED") in msgs
    assert all(m.group(2) == "MainThread" for m in lines)


def test_default_store_is_announced_as_qlib_does(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QEXP_URI", raising=False)
    qexp.init()
    assert "No tracking URI is provided. Use the default tracking URI." in capsys.readouterr().err


def test_logging_level_and_env(tmp_path, capsys, monkeypatch):
    qexp.init(uri=str(tmp_path / "s"), logging_level="WARNING")
    with R.start(experiment_name="quiet"):
        pass
    assert "starts running" not in capsys.readouterr().err
    assert logging.getLogger("qexp").level == logging.WARNING
    monkeypatch.setenv("QEXP_LOG_LEVEL", "debug")
    qexp.init(uri=str(tmp_path / "s"))
    assert logging.getLogger("qexp").level == logging.DEBUG
    qexp.init(uri=str(tmp_path / "s"), logging_level=logging.ERROR)   # the setting wins over the environment
    assert logging.getLogger("qexp").level == logging.ERROR
    with pytest.raises(qexp.ConfigError, match="logging_level.*DEBUG, INFO"):
        qexp.init(uri=str(tmp_path / "s"), logging_level="LOUD")
    monkeypatch.setenv("QEXP_LOG_LEVEL", "LOUD")
    with pytest.raises(qexp.ConfigError, match="QEXP_LOG_LEVEL"):
        qexp.init(uri=str(tmp_path / "s"))


def test_logging_config_is_applied_with_dictconfig(tmp_path, capsys):
    """A Qlib-style config (its 'qlib' logger and qlib.log.LogFilter) works for qexp's loggers."""
    log_file = tmp_path / "qexp.log"
    config = {
        "version": 1,
        "formatters": {"plain": {"format": "%(levelname)s|%(name)s|%(message)s"}},
        "filters": {"field_not_found": {"()": "qlib.log.LogFilter", "param": [".*?default_conf.*?"]}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain",
                              "filters": ["field_not_found"]}},
        "loggers": {"qlib": {"level": "INFO", "handlers": ["file"]}},
    }
    qexp.init(uri=str(tmp_path / "s"), logging_config=config)
    with R.start(experiment_name="cfg"):
        rec = R.get_recorder()
    text = log_file.read_text()
    assert f"INFO|qexp.workflow|Recorder {rec.id} starts running under Experiment" in text
    assert "default_conf" not in text                 # the LogFilter dropped it
    assert "starts running" not in capsys.readouterr().err   # qexp's default handler was replaced
    with pytest.raises(qexp.ConfigError, match="logging_config"):
        qexp.init(uri=str(tmp_path / "s"), logging_config={"handlers": {}})


def test_capture_logs_saves_the_runs_records(tmp_path):
    qexp.init(uri=str(tmp_path / "s"), capture_logs=True)
    other = logging.getLogger("qexp.test_capture")
    other.info("before the run")
    with R.start(experiment_name="cap"):
        rec = R.get_recorder()
        other.info("inside the run: %d", 42)
        logging.getLogger("some.library").warning("a library warning")
    other.info("after the run")
    text = rec.read_artifact("logs/run.log").decode()
    assert "inside the run: 42" in text and "a library warning" in text
    assert f"Recorder {rec.id} starts running" in text
    assert "before the run" not in text and "after the run" not in text
    assert all(QLIB_LINE.match(line) for line in text.splitlines())
    # off by default
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="cap"):
        rec2 = R.get_recorder()
    assert "logs/run.log" not in rec2.list_artifacts(recursive=True)


def test_capture_logs_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("QEXP_CAPTURE_LOGS", "1")
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="cap"):
        rec = R.get_recorder()
        logging.getLogger("qexp.test").warning("env capture")
    assert "env capture" in rec.read_artifact("logs/run.log").decode()
