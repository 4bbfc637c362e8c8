"""Recovering experiment and run folders whose ``meta.json`` is unreadable (``qexp index rebuild --repair``).

A broken experiment meta hides every run of the experiment from listings and searches. The runs still hold
what is needed to bring it back: the folder name is the experiment id, the earliest run start is its
creation time. The name is read back from the broken file when a ``"name": "..."`` survives in it, else it
becomes ``recovered-<id>``.

A broken run meta hides that run. Its folder names the run and its experiment; the fields that survive in the
broken text (name, status, times, artifact URI) are kept; the rest comes from the run's files: the start and
end are its first and last metric timestamps (else the folder's times), the name its ``mlflow.runName`` tag.
A status that did not survive becomes FAILED, with tag ``qexp.failure_reason`` saying why.

The broken file is always kept beside the new one (``meta.json.corrupt-<ms>``).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from qexp.ext import now_ms

from .fsutil import append_lines, atomic_write_bytes, atomic_write_json, iter_json_lines, read_json

_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_LIFECYCLE = re.compile(r'"lifecycle"\s*:\s*"(active|deleted)"')
_RUN_STR = {k: re.compile(rf'"{k}"\s*:\s*"((?:[^"\\]|\\.)*)"') for k in ("run_name", "status", "artifact_uri",
                                                                          "user_id", "parent_run_id")}
_RUN_INT = {k: re.compile(rf'"{k}"\s*:\s*(\d+)') for k in ("start_time", "end_time")}
_STATUSES = {"SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED"}


@dataclass
class BrokenExperiment:
    exp_id: str
    path: str
    reason: str


def broken_experiments(root: str) -> list[BrokenExperiment]:
    """Experiment folders under ``root`` whose meta.json exists but cannot be read as an experiment meta."""
    out: list[BrokenExperiment] = []
    try:
        entries = sorted(os.listdir(root))
    except FileNotFoundError:
        return out
    for e in entries:
        p = os.path.join(root, e, "meta.json")
        if e.startswith(".") or not os.path.isfile(p):
            continue
        try:
            meta = read_json(p)
            if not isinstance(meta, dict) or "name" not in meta:
                raise ValueError("not an experiment meta (no 'name')")
        except (OSError, ValueError) as exc:
            out.append(BrokenExperiment(e, p, str(exc)))
    return out


def repair_experiment(root: str, broken: BrokenExperiment, taken: set[str]) -> dict:
    """Rewrite the meta of ``broken`` from what its runs hold; returns the new meta. ``taken`` holds the
    names of the readable active experiments (a salvaged name that clashes becomes ``recovered-<id>``)."""
    with open(broken.path, "rb") as f:
        data = f.read()
    raw = data.decode("utf-8", "replace")
    name = None
    m = _NAME.search(raw)
    if m:
        try:
            name = json.loads(f'"{m.group(1)}"')
        except ValueError:
            name = None
    if not name or not isinstance(name, str) or name in taken:
        name = f"recovered-{broken.exp_id}"
    lifecycle = _LIFECYCLE.search(raw)
    folder = os.path.dirname(broken.path)
    starts = []
    for run_id in os.listdir(folder):
        try:
            run_meta = read_json(os.path.join(folder, run_id, "meta.json"))
        except (OSError, ValueError):
            continue
        if isinstance(run_meta, dict) and isinstance(run_meta.get("start_time"), int):
            starts.append(run_meta["start_time"])
    created = min(starts) if starts else int(os.path.getmtime(folder) * 1000)
    meta = {"id": broken.exp_id, "name": name, "lifecycle": lifecycle.group(1) if lifecycle else "active",
            "creation_time": created}
    atomic_write_bytes(f"{broken.path}.corrupt-{now_ms()}", data)  # the broken file is kept, never deleted
    atomic_write_json(broken.path, meta)
    return meta


@dataclass
class BrokenRun:
    exp_id: str
    run_id: str
    path: str
    reason: str


def broken_runs(root: str, exp_ids: list[str]) -> list[BrokenRun]:
    """Run folders of the experiments ``exp_ids`` whose meta.json cannot be read as the meta of that run."""
    out: list[BrokenRun] = []
    for exp_id in exp_ids:
        folder = os.path.join(root, exp_id)
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            continue
        for run_id in entries:
            p = os.path.join(folder, run_id, "meta.json")
            if run_id.startswith(".") or not os.path.isfile(p):
                continue
            try:
                meta = read_json(p)
                if not isinstance(meta, dict) or meta.get("run_id") != run_id:
                    raise ValueError(f"does not describe run {run_id}")
            except (OSError, ValueError) as exc:
                out.append(BrokenRun(exp_id, run_id, p, str(exc)))
    return out


def _salvaged_str(raw: str, key: str) -> str | None:
    m = _RUN_STR[key].search(raw)
    if not m:
        return None
    try:
        value = json.loads(f'"{m.group(1)}"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def repair_run(broken: BrokenRun) -> dict:
    """Rewrite the meta of ``broken`` from what survives in it and what its files hold; returns the new meta."""
    with open(broken.path, "rb") as f:
        data = f.read()
    raw = data.decode("utf-8", "replace")
    folder = os.path.dirname(broken.path)
    stamps = [int(r["timestamp"]) for r in iter_json_lines(os.path.join(folder, "metrics.jsonl"))
              if isinstance(r.get("timestamp"), (int, float))]
    tags: dict = {}
    for rec in iter_json_lines(os.path.join(folder, "tags.jsonl")):
        if rec.get("deleted"):
            tags.pop(rec.get("key"), None)
        else:
            tags[rec.get("key")] = rec.get("value")
    st = os.stat(folder)
    ints = {k: int(m.group(1)) for k, rx in _RUN_INT.items() if (m := rx.search(raw))}
    start = ints.get("start_time", min(stamps) if stamps else int(st.st_mtime * 1000))
    end = ints.get("end_time", max(stamps) if stamps else int(st.st_mtime * 1000))
    status = _salvaged_str(raw, "status")
    lost_status = status not in _STATUSES
    meta: dict = {"run_id": broken.run_id, "experiment_id": broken.exp_id,
                  "run_name": _salvaged_str(raw, "run_name") or tags.get("mlflow.runName"),
                  "status": "FAILED" if lost_status or status == "RUNNING" else status,
                  "start_time": start, "end_time": max(end, start)}
    for key in ("artifact_uri", "user_id", "parent_run_id"):
        value = _salvaged_str(raw, key)
        if value:
            meta[key] = value
    atomic_write_bytes(f"{broken.path}.corrupt-{now_ms()}", data)  # the broken file is kept, never deleted
    atomic_write_json(broken.path, meta)
    if lost_status or status == "RUNNING":
        reason = ("its meta.json was unreadable and was rebuilt by `qexp index rebuild --repair`; how the run "
                  "ended is not known")
        append_lines(os.path.join(folder, "tags.jsonl"), [{"key": "qexp.failure_reason", "value": reason}])
    return meta
