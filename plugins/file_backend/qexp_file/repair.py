"""Recovering experiment folders whose ``meta.json`` is unreadable (``qexp index rebuild --repair``).

A broken experiment meta hides every run of the experiment from listings and searches. The runs still hold
what is needed to bring it back: the folder name is the experiment id, the earliest run start is its
creation time. The name is read back from the broken file when a ``"name": "..."`` survives in it, else it
becomes ``recovered-<id>``. The broken file is kept beside the new one (``meta.json.corrupt-<ms>``).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from qexp.ext import now_ms

from .fsutil import atomic_write_bytes, atomic_write_json, read_json

_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_LIFECYCLE = re.compile(r'"lifecycle"\s*:\s*"(active|deleted)"')


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
