"""What every run records when it starts: command line, host, versions and git state.

Git is asked without a shell, once per process and working directory (it costs tens of milliseconds),
and silently skipped outside a repository or when ``QEXP_AUTOLOG_GIT=0``.
"""
from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from typing import Any

from ._version import __version__


@functools.lru_cache(maxsize=8)
def git_state(cwd: str) -> dict[str, Any] | None:
    if os.environ.get("QEXP_AUTOLOG_GIT", "1") == "0":
        return None

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.decode("utf-8", "replace") if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        inside = git("rev-parse", "--is-inside-work-tree")
        if inside is None or inside.strip() != "true":
            return None
    status = git("status", "--porcelain") or ""
    return {
        "commit": (commit or "").strip(),
        "branch": (git("rev-parse", "--abbrev-ref", "HEAD") or "").strip(),
        "dirty": bool(status.strip()),
        "diff": git("diff") or "",
        "status": git("status") or "",
        "cached": git("diff", "--cached") or "",
    }


@functools.lru_cache(maxsize=1)
def _static_tags() -> dict[str, str]:
    return {"hostname": socket.gethostname(), "python_version": platform.python_version(),
            "qexp_version": __version__}


def run_context_tags() -> dict[str, str]:
    """Tags every new run gets: command line, host, versions and git commit/branch/dirty."""
    tags = dict(_static_tags())
    tags["cmd-sys.argv"] = " ".join(sys.argv)
    tags["mlflow.user"] = os.environ.get("USER", "") or os.environ.get("USERNAME", "")
    state = git_state(os.getcwd())
    if state is not None:
        tags.update({"mlflow.source.git.commit": state["commit"], "git.branch": state["branch"],
                     "git.dirty": str(state["dirty"])})
    return tags


def log_code_artifacts(recorder: Any) -> None:
    """Store the git diff/status as artifacts with Qlib's names (only the non-empty ones)."""
    state = git_state(os.getcwd())
    if state is not None:
        for name, key in (("code_diff.txt", "diff"), ("code_status.txt", "status"), ("code_cached.txt", "cached")):
            if state[key]:
                recorder.log_bytes(state[key].encode("utf-8"), name, dedup=True)
