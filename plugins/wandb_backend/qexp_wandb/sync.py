"""Find the offline W&B run folders of qexp runs (through the ``wandb.*`` tags the mirror writes) and
upload them with ``wandb sync``."""
from __future__ import annotations

import datetime as _dt
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

SYNCED_TAG = "wandb.synced"


@dataclass
class OfflineRunDirs:
    """One qexp run and the W&B offline folders that hold its W&B run (more than one after resumes)."""

    qexp_run_id: str
    experiment_id: str
    run_name: str
    wandb_run_id: str
    project: str
    entity: str | None
    dirs: list[str] = field(default_factory=list)
    synced: str | None = None


def offline_dirs(tagged_dir: str, wandb_run_id: str) -> list[str]:
    """``tagged_dir`` and its siblings holding the same W&B run (W&B writes a resumed offline run to a new
    folder ``offline-run-<time>-<id>[-N]``), oldest first; only folders that hold ``run-<id>.wandb``."""
    root = os.path.dirname(os.path.normpath(tagged_dir))
    pattern = re.compile(rf"^offline-run-\d{{8}}_\d{{6}}-{re.escape(wandb_run_id)}(-\d+)?$")
    found = set()
    if os.path.isdir(root):
        for name in os.listdir(root):
            if pattern.match(name):
                found.add(os.path.join(root, name))
    if os.path.isdir(tagged_dir):
        found.add(os.path.normpath(tagged_dir))
    return sorted(d for d in found if os.path.isfile(os.path.join(d, f"run-{wandb_run_id}.wandb")))


def _cell(row: pd.Series, col: str) -> str | None:
    v = row.get(col)
    return None if v is None or (isinstance(v, float) and pd.isna(v)) or v == "" else str(v)


def find_offline_runs(manager: Any, experiment_ids: list[str] | None = None,
                      include_synced: bool = False) -> list[OfflineRunDirs]:
    """qexp runs of ``manager`` whose W&B run was written offline, with their existing folders."""
    df = manager.search_records(experiment_ids)
    out = []
    for _, row in df.iterrows():
        folder, wid = _cell(row, "tags.wandb.dir"), _cell(row, "tags.wandb.run_id")
        if folder is None or wid is None or _cell(row, "tags.wandb.mode") != "offline":
            continue
        synced = _cell(row, f"tags.{SYNCED_TAG}")
        if synced and not include_synced:
            continue
        out.append(OfflineRunDirs(qexp_run_id=str(row["run_id"]), experiment_id=str(row["experiment_id"]),
                                  run_name=_cell(row, "tags.mlflow.runName") or "", wandb_run_id=wid,
                                  project=_cell(row, "tags.wandb.project") or "",
                                  entity=_cell(row, "tags.wandb.entity"), dirs=offline_dirs(folder, wid),
                                  synced=synced))
    return out


def sync_command(dirs: list[str]) -> list[str]:
    """The ``wandb sync`` command line for ``dirs`` (the wandb of this Python, not whatever is on PATH)."""
    return [sys.executable, "-m", "wandb", "sync", *dirs]


Runner = Callable[..., "subprocess.CompletedProcess[str]"]
# looked up at call time, so tests can replace it and check the command without a W&B server
run_command: Runner = subprocess.run


def sync_run(run: OfflineRunDirs) -> tuple[bool, str]:
    """Upload one run's folders; returns (ok, output of wandb sync)."""
    proc = run_command(sync_command(run.dirs), capture_output=True, text=True)
    return proc.returncode == 0, ((proc.stdout or "") + (proc.stderr or "")).strip()


def mark_synced(manager: Any, run: OfflineRunDirs) -> None:
    """Tag the qexp run ``wandb.synced=<UTC time>`` in the local store, so the next sync skips it."""
    local = getattr(manager, "local", manager)  # never through a wandb:// manager: that would mirror the tag
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    local.get_recorder_by_id(run.qexp_run_id).set_tags(**{SYNCED_TAG: now})
