"""A class's own ``dry_run_warnings(kwargs)`` reaches the config check's warnings (``qexp run --dry-run``
prints them), and a checker that raises is a warning too, never a stop."""
from __future__ import annotations

from typing import Any

from qexp.workflow import check_config


class NeedsFile:
    """Like GATs: a file an earlier run writes; the dry run warns while it does not exist."""

    def __init__(self, model_path: str | None = None):
        self.model_path = model_path

    @classmethod
    def dry_run_warnings(cls, kwargs: dict[str, Any]) -> list[str]:
        path = kwargs.get("model_path")
        return [f"NeedsFile: model_path {path!r} does not exist"] if path == "missing.pkl" else []


class BrokenCheck:
    def __init__(self, x: int = 0):
        self.x = x

    @classmethod
    def dry_run_warnings(cls, kwargs: dict[str, Any]) -> list[str]:
        raise RuntimeError("no checker today")


def _config(cls: str, **kwargs: Any) -> dict:
    return {"task": {"model": {"class": cls, "module_path": __name__, "kwargs": kwargs},
                     "dataset": {"class": "NeedsFile", "module_path": __name__}}}


def test_class_warnings_are_config_warnings() -> None:
    problems, notes = check_config(_config("NeedsFile", model_path="missing.pkl"))
    assert problems == []
    assert notes == ["task.model.kwargs: NeedsFile: model_path 'missing.pkl' does not exist"]
    assert check_config(_config("NeedsFile", model_path="there.pkl")) == ([], [])


def test_a_failing_checker_is_a_warning() -> None:
    problems, notes = check_config(_config("BrokenCheck", x=1))
    assert problems == []
    assert notes == ["task.model.kwargs: BrokenCheck: could not check the arguments (no checker today)"]
