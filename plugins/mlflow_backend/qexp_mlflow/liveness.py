"""Detect runs whose process died without ending them (SIGKILL, OOM killer, power loss).

MLflow leaves such runs RUNNING forever. qexp tags each run it starts with the owner process
(``qexp.host``, ``qexp.pid``, ``qexp.pid_start``); whoever reads a RUNNING run on the same host checks
that this process still exists (the pid's start time tells a reused pid apart) and, if not, marks the
run FAILED. A run owned by another host cannot be judged without a heartbeat, so it stays RUNNING.
"""
from __future__ import annotations

import os
import socket

HOST = socket.gethostname()
TAG_HOST = "qexp.host"
TAG_PID = "qexp.pid"
TAG_PID_START = "qexp.pid_start"
TAG_FAILURE = "qexp.failure_reason"
OWNER_TAGS = (TAG_HOST, TAG_PID, TAG_PID_START)


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
        return int(data.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the owner of a run."""
    pid = os.getpid()
    start = process_start_ticks(pid)
    tags = {TAG_HOST: HOST, TAG_PID: str(pid)}
    if start is not None:
        tags[TAG_PID_START] = str(start)
    return tags


def owner_dead(tags: dict[str, str]) -> bool:
    """True only when the owner is known to be gone: same host, and its pid is absent or reused."""
    if tags.get(TAG_HOST) != HOST:
        return False
    try:
        pid = int(tags.get(TAG_PID, ""))
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by another user
    except OSError:
        return False
    started = tags.get(TAG_PID_START)
    now_started = process_start_ticks(pid)
    return started is not None and now_started is not None and started != str(now_started)


def failure_reason(tags: dict[str, str]) -> str:
    return (f"process {tags.get(TAG_PID)} on {tags.get(TAG_HOST)} stopped without ending the run "
            f"(killed or crashed)")
