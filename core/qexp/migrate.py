"""Copy experiments and runs between any two stores (file <-> MLflow, file <-> file, ...) through the
public Recorder API, so every backend can be a source or a target.

A run is copied whole: name, status, start/end times (where the target can keep them, see
:meth:`qexp.recorder.Recorder.preserve_times`), params, every point of every metric (step and timestamp
kept), tags, artifacts, and its parent (``mlflow.parentRunId`` mapped to the copy of the parent).

Copying again is a no-op. Each copy is tagged ``qexp.migrated_from=<source run id>`` once it is complete;
those are skipped, and so are source runs that are themselves copies of a run in the target (migrating
back). A copy interrupted half-way carries only ``qexp.migrating_from`` and is deleted and redone on the next
call. Runs still RUNNING at the source are left for a later call.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable

from .backends import create_manager
from .exceptions import ExpNotFoundError, QexpError
from .experiment import Experiment
from .manager import ExpManager
from .recorder import Recorder
from .uri import file_uri_to_path

TAG_MIGRATED_FROM = "qexp.migrated_from"
TAG_MIGRATING_FROM = "qexp.migrating_from"
TAG_RUN_NAME = "mlflow.runName"
TAG_PARENT = "mlflow.parentRunId"
# Tags the target writes for itself: the name and parent (mapped), the markers above, and the owner
# process of the source run (qexp_mlflow's liveness tag), which means nothing for the copy.
SKIP_TAGS = {TAG_RUN_NAME, TAG_PARENT, TAG_MIGRATED_FROM, TAG_MIGRATING_FROM, "qexp.owner"}
# MLflow's KILLED has no qexp counterpart (Recorder.STATUSES); the nearest is FAILED.
STATUS_MAP = {"KILLED": Recorder.STATUS_FA}


@dataclass
class MigrationReport:
    """What one call copied. ``copied`` maps source run ids to the ids of their copies."""

    experiments: list[str] = field(default_factory=list)
    copied: dict[str, str] = field(default_factory=dict)
    skipped: int = 0          # already in the target
    running: list[str] = field(default_factory=list)   # still RUNNING at the source: left for later
    redone: int = 0           # half-copied runs of an interrupted call, deleted and copied again
    times_kept: bool = True   # False when the target cannot keep start/end times

    def summary(self) -> str:
        parts = [f"copied {len(self.copied)} run(s) in {len(self.experiments)} experiment(s)",
                 f"{self.skipped} already there"]
        if self.redone:
            parts.append(f"{self.redone} half-copied run(s) redone")
        if self.running:
            parts.append(f"{len(self.running)} still running (or child of one), left for a later call")
        text = "; ".join(parts)
        if self.copied and not self.times_kept:
            text += " (the target cannot keep the source's start/end times: copies carry the copy time)"
        return text


def migrate(source: str | ExpManager, target: str | ExpManager, experiments: Iterable[str] | None = None,
            progress: bool | None = None) -> MigrationReport:
    """Copy ``experiments`` (names; all when None) from the ``source`` store to the ``target`` store.

    ``source``/``target`` are URIs (or managers). ``progress`` shows a bar (default: when stderr is a TTY).
    """
    src = source if isinstance(source, ExpManager) else create_manager(source)
    dst = target if isinstance(target, ExpManager) else create_manager(target)
    if _store_key(src.uri) == _store_key(dst.uri):
        raise QexpError(f"source and target are the same store ({src.uri}); give two different URIs")
    if experiments is None:
        src_exps = list(src.list_experiments().values())
    else:
        src_exps = []
        for name in experiments:
            try:
                src_exps.append(src.get_exp(experiment_name=name, create=False))
            except ExpNotFoundError as exc:
                raise QexpError(f"cannot migrate experiment {name!r}: {exc}") from None
    plans = [(exp, exp.list_recorders(rtype=Experiment.RT_L)) for exp in src_exps]
    total = sum(len(runs) for _, runs in plans)
    report = MigrationReport()
    id_map: dict[str, str] = {}             # source run id -> its copy, across experiments
    unlinked: list[tuple[str, str]] = []    # (copy id, source parent id) of copies whose parent came later
    bar = _progress(total, progress)
    try:
        for exp, runs in plans:
            report.experiments.append(exp.name)
            _migrate_experiment(exp, runs, dst, report, bar, id_map, unlinked)
    finally:
        bar.close()
    for copy_id, parent in unlinked:  # a parent in another experiment, copied after its child
        if parent in id_map:
            dst.get_recorder_by_id(copy_id).set_tags(**{TAG_PARENT: id_map[parent]})
    return report


def _store_key(uri: str) -> str:
    # "/runs" and "file:///runs" are the same store
    return os.path.abspath(file_uri_to_path(uri)) if uri.startswith("file:") or "://" not in uri else uri


def _progress(total: int, show: bool | None) -> Any:
    from tqdm import tqdm
    if show is None:
        show = sys.stderr.isatty()
    return tqdm(total=total, unit="run", desc="migrating", disable=not show, file=sys.stderr)


def _migrate_experiment(src_exp: Experiment, runs: list[Recorder], dst: ExpManager, report: MigrationReport,
                        bar: Any, id_map: dict[str, str], unlinked: list[tuple[str, str]]) -> None:
    dst_exp = dst.get_exp(experiment_name=src_exp.name, create=True)
    done, present = _existing_copies(dst, dst_exp, report)
    id_map.update(done)
    tags_of = {r.id: r.list_tags() for r in runs}
    # a listed recorder may not carry its parent id: the tag is the record every backend keeps
    parent_of = {r.id: r.parent_id or tags_of[r.id].get(TAG_PARENT) for r in runs}
    for rec in _parents_first(runs, parent_of):
        bar.update(1)
        rid = rec._require_id()  # listed runs have started
        tags, parent = tags_of[rid], parent_of[rid]
        origin = tags.get(TAG_MIGRATED_FROM)
        if rid in done or (origin is not None and origin in present):
            report.skipped += 1  # copied before, or itself a copy of a run of the target
            id_map.setdefault(rid, origin)  # type: ignore[arg-type]
            continue
        if rec.status == Recorder.STATUS_R or (parent in tags_of and parent not in id_map):
            report.running.append(rid)  # (or its parent is): copied by a later call, parent first
            continue
        new_id = _copy_run(rec, tags, dst_exp, id_map.get(parent) if parent else None, report)
        if parent and parent not in id_map:
            unlinked.append((new_id, parent))
        id_map[rid] = new_id
        report.copied[rid] = new_id


def _parents_first(runs: list[Recorder], parent_of: dict[str | None, str | None]) -> list[Recorder]:
    """Oldest first, every parent before its children (so a child's copy can point at its parent's)."""
    by_id = {r.id: r for r in runs}
    ordered: list[Recorder] = []
    seen: set[str | None] = set()
    for first in sorted(runs, key=lambda r: (r._start_ms or 0, r.id or "")):
        chain = []
        rec: Recorder | None = first
        while rec is not None and rec.id not in seen:
            seen.add(rec.id)
            chain.append(rec)
            rec = by_id.get(parent_of.get(rec.id))
        ordered.extend(reversed(chain))
    return ordered


def _existing_copies(dst: ExpManager, dst_exp: Experiment, report: MigrationReport) -> tuple[dict[str, str], set[str]]:
    """``({source id: copy id} of complete copies, ids of every run in the target experiment)``; half-done
    copies of an interrupted call are deleted here."""
    df = dst.search_records([dst_exp.id])
    done: dict[str, str] = {}
    if df.empty:
        return done, set()
    present = set(df["run_id"])
    migrated = df.get(f"tags.{TAG_MIGRATED_FROM}")
    migrating = df.get(f"tags.{TAG_MIGRATING_FROM}")
    for i, run_id in enumerate(df["run_id"]):
        src_id = migrated.iloc[i] if migrated is not None else None
        if isinstance(src_id, str) and src_id:
            done[src_id] = run_id
        elif migrating is not None and isinstance(migrating.iloc[i], str) and migrating.iloc[i]:
            dst_exp.delete_recorder(recorder_id=run_id)
            present.discard(run_id)
            report.redone += 1
    return done, present


def _copy_run(src: Recorder, src_tags: dict[str, str], dst_exp: Experiment, parent_copy: str | None,
              report: MigrationReport) -> str:
    dst = dst_exp.create_recorder(src.name)
    dst.autolog = False  # the copy's context is the source run's tags, not this process
    if parent_copy is not None:
        dst.parent_id = parent_copy
    if not dst.preserve_times(src._start_ms, src._end_ms):
        report.times_kept = False
    dst.start_run()
    dst.set_tags(**{TAG_MIGRATING_FROM: src.id})
    params = src.list_params()
    if params:
        dst.log_params(**params)
    for key in sorted(src.list_metrics()):
        hist = src.get_metric_history(key)
        dst.log_metric_batch([(key, float(v), int(ts), int(st))
                              for st, v, ts in zip(hist["step"], hist["value"], hist["timestamp"])])
    tags = {k: v for k, v in src_tags.items() if k not in SKIP_TAGS}
    if tags:
        dst.set_tags(**tags)
    _copy_artifacts(src, dst, params, src_tags)
    dst.set_tags(**{TAG_MIGRATED_FROM: src.id})
    dst.delete_tags(TAG_MIGRATING_FROM)
    dst.end_run(STATUS_MAP.get(src.status, src.status))
    return dst.id  # type: ignore[return-value]


def _copy_artifacts(src: Recorder, dst: Recorder, params: dict[str, str], tags: dict[str, str]) -> None:
    files = src.list_artifacts(recursive=True)
    if not files:
        return
    with tempfile.TemporaryDirectory(prefix="qexp-migrate-") as tmp:
        for top in src.list_artifacts():
            if top in ("params", "tags"):
                # whole values of long params/tags that a backend kept beside a truncated value: the copy
                # gets the whole value itself, and a target that truncates writes its own
                values = params if top == "params" else tags
                for f in (x for x in files if x.startswith(top + "/")):
                    if not _is_whole_value_copy(src, f, top, values):
                        local = src.download_artifact(f, os.path.join(tmp, "one", os.path.dirname(f)))
                        dst.log_artifact(local, os.path.dirname(f) or None)
                continue
            local = src.download_artifact(top, tmp)
            dst.log_artifact(local, os.path.dirname(top) or None)


def _is_whole_value_copy(src: Recorder, path: str, kind: str, values: dict[str, str]) -> bool:
    key = path[len(kind) + 1:-len(".txt")] if path.endswith(".txt") else None
    if key is None or key not in values:
        return False
    try:
        return src.read_artifact(path) == values[key].encode("utf-8")
    except (OSError, QexpError):
        return False
