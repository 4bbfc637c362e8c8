"""Detect runs whose process died without ending them (SIGKILL, OOM killer, power loss).

MLflow leaves such runs RUNNING forever. qexp tags each run it starts with its owner process
(``qexp.owner = "<pid>@<host>#<start ticks>"``); whoever reads a RUNNING run on the same host checks
that this process still exists (the pid's start time tells a reused pid apart) and, if not, marks the
run FAILED. A run owned by another host cannot be judged without a heartbeat, so it stays RUNNING.
The tag is removed when the run ends (only a RUNNING run needs it).
"""
from __future__ import annotations

import os
import re
import socket

from qexp.ext import process_start_ticks

HOST = socket.gethostname()
TAG_OWNER = "qexp.owner"            # "<pid>@<host>" or "<pid>@<host>#<pid start ticks>"
TAG_FAILURE = "qexp.failure_reason"
_OWNER = re.compile(r"^(?P<pid>\d+)@(?P<host>[^#]+)(?:#(?P<start>\d+))?$")


def owner_tags() -> dict[str, str]:
    """The tag naming this process as the owner of a run (one tag: each tag costs rows in every search)."""
    pid = os.getpid()
    start = process_start_ticks(pid)
    return {TAG_OWNER: f"{pid}@{HOST}" + (f"#{start}" if start is not None else "")}


def owner_dead(tags: dict[str, str]) -> bool:
    """True only when the owner is known to be gone: same host, and its pid is absent or reused."""
    m = _OWNER.match(tags.get(TAG_OWNER, ""))
    if m is None or m.group("host") != HOST:
        return False
    pid = int(m.group("pid"))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, owned by another user
        return False
    started, now_started = m.group("start"), process_start_ticks(pid)
    return started is not None and now_started is not None and started != str(now_started)


def failure_reason(tags: dict[str, str]) -> str:
    m = _OWNER.match(tags.get(TAG_OWNER, ""))
    pid, host = (m.group("pid"), m.group("host")) if m else ("?", "?")
    return f"process {pid} on {host} stopped without ending the run (killed or crashed)"
