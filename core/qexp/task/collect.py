"""Collectors (``qlib/workflow/task/collect.py``): gather results from runs and pass them through processing
steps such as groups and ensembles."""
from __future__ import annotations

import logging
import os
import pickle
from collections import defaultdict
from typing import Any, Callable, Iterable

from .. import pickling
from ..api import R
from ..exceptions import LoadObjectError
from ..experiment import Experiment
from ..recorder import Recorder

logger = logging.getLogger("qexp.tasks")


class Pickled:
    """``to_pickle(path)`` / ``load(path)`` for task-layer and data objects (Qlib's Serializable, without dill).

    ``to_pickle`` writes what ``R.save_objects`` would store (``to_pickle_bytes()`` where the object has it,
    else a protocol-4 pickle), atomically; ``load`` checks the class of what it unpickles.
    """

    def to_pickle(self, path: str | os.PathLike, **kwargs: Any) -> None:
        """Write the pickle to ``path`` atomically (a temporary file, then a rename)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(pickling.dump_object(self))
        os.replace(tmp, path)

    @classmethod
    def load(cls, filepath: str | os.PathLike) -> Any:
        """Unpickle an object of this class from ``filepath`` (TypeError if it is another class)."""
        with open(filepath, "rb") as f:
            obj = pickle.load(f)
        if not isinstance(obj, cls):
            raise TypeError(f"{os.fspath(filepath)!r} holds a {type(obj).__name__}, not a {cls.__name__}")
        return obj


class Collector(Pickled):
    """Collects results as ``{key: things}``; calling it collects, then applies ``process_list`` to each value."""

    def __init__(self, process_list: list | Callable | None = None):
        if process_list is None:
            process_list = []
        if not isinstance(process_list, list):
            process_list = [process_list]
        self.process_list = process_list

    def collect(self) -> dict:
        """The results, e.g. ``{"pred": {run_key: frame}}``."""
        raise NotImplementedError("Please implement the `collect` method.")

    @staticmethod
    def process_collect(collected_dict: dict, process_list: list | Callable | None = None, *args: Any,
                        **kwargs: Any) -> dict:
        """Pass every value of ``collected_dict`` through the callables of ``process_list`` in order."""
        if process_list is None:
            process_list = []
        if not isinstance(process_list, list):
            process_list = [process_list]
        result = {}
        for key, value in collected_dict.items():
            for process in process_list:
                if not callable(process):
                    raise NotImplementedError(f"{type(process)} is not supported in `process_collect`.")
                value = process(value, *args, **kwargs)
            result[key] = value
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return self.process_collect(self.collect(), self.process_list, *args, **kwargs)


class MergeCollector(Collector):
    """The results of several collectors; keys become ``(collector_key, key)`` or ``merge_func(ck, key)``."""

    def __init__(self, collector_dict: dict[str, Collector], process_list: list | Callable | None = None,
                 merge_func: Callable | None = None):
        super().__init__(process_list=process_list)
        self.collector_dict = collector_dict
        self.merge_func = merge_func

    def collect(self) -> dict:
        out = {}
        for ck, collector in self.collector_dict.items():
            for key, value in collector().items():
                out[self.merge_func(ck, key) if self.merge_func is not None else (ck, key)] = value
        return out


class RecorderCollector(Collector):
    """Artifacts of the runs of an experiment: ``{artifact key: {run key: object}}``.

    ``experiment``: an Experiment, its name, or a callable returning recorders. ``rec_key_func`` names each
    run (its id by default); the artifact key ``"__raw"`` gives the recorder itself. Only runs whose status is
    in ``status`` (FINISHED by default; None for all) and that pass ``rec_filter_func`` are collected;
    ``list_kwargs`` go to ``list_recorders`` (e.g. ``filter_string``). A repeated run key keeps the run that
    started last, as in Qlib.
    """

    ART_KEY_RAW = "__raw"

    def __init__(self, experiment: Experiment | str | Callable, process_list: list | Callable | None = None,
                 rec_key_func: Callable | None = None, rec_filter_func: Callable | None = None,
                 artifacts_path: dict[str, str] | None = None, artifacts_key: str | list[str] | None = None,
                 list_kwargs: dict | None = None, status: Iterable[str] | None = None):
        super().__init__(process_list=process_list)
        if isinstance(experiment, str):
            experiment = R.get_exp(experiment_name=experiment, create=False)
        if not isinstance(experiment, Experiment) and not callable(experiment):
            raise TypeError(f"experiment must be an Experiment, its name or a callable returning recorders, got "
                            f"{type(experiment).__name__}")
        self.experiment = experiment
        self.artifacts_path = {"pred": "pred.pkl"} if artifacts_path is None else artifacts_path
        self.rec_key_func = rec_key_func if rec_key_func is not None else _rec_id
        self.artifacts_key = list(self.artifacts_path) if artifacts_key is None else artifacts_key
        self.rec_filter_func = rec_filter_func
        self.list_kwargs = {} if list_kwargs is None else list_kwargs
        self.status = {Recorder.STATUS_FI} if status is None else status

    def _recorders(self) -> list[Recorder]:
        if isinstance(self.experiment, Experiment):
            return list(self.experiment.list_recorders(**self.list_kwargs).values())
        return list(self.experiment())

    def collect(self, artifacts_key: str | list[str] | None = None, rec_filter_func: Callable | None = None,
                only_exist: bool = True) -> dict:
        """Load the artifacts; with ``only_exist`` a run missing one is skipped with a warning."""
        keys = self.artifacts_key if artifacts_key is None else artifacts_key
        if isinstance(keys, str):
            keys = [keys]
        flt = self.rec_filter_func if rec_filter_func is None else rec_filter_func
        recs = [r for r in self._recorders()
                if (self.status is None or r.status in self.status) and (flt is None or flt(r))]
        # oldest first, so that a repeated run key ends with the latest run's artifact (Qlib keeps the latest);
        # experiments list their runs latest first, and a stable sort keeps a caller's order on equal times
        recs.sort(key=_start_key)
        stat: dict[str, int] = defaultdict(int)
        for r in recs:
            stat[r.status] += 1
        logger.info("RecorderCollector: %d run(s) after filtering: %s", len(recs), dict(stat))
        out: dict[str, dict] = {}
        for rec in recs:
            rec_key = self.rec_key_func(rec)
            for key in keys:
                if key == self.ART_KEY_RAW:
                    artifact: Any = rec
                else:
                    try:
                        artifact = rec.load_object(self.artifacts_path[key])
                    except LoadObjectError:
                        if only_exist:
                            logger.warning("run %s has no %s; it is left out", rec.id, self.artifacts_path[key])
                            continue
                        raise
                bucket = out.setdefault(key, {})
                if rec_key in bucket:
                    logger.warning("run key %r is repeated; the latest run's %s (run %s) is kept (check "
                                   "rec_key_func)", rec_key, key, rec.id)
                bucket[rec_key] = artifact
        return out

    def get_exp_name(self) -> str:
        """The experiment's name."""
        return self.experiment.name  # type: ignore[union-attr]


def _start_key(rec: Recorder) -> int:
    start = getattr(rec, "_start_ms", None)
    return int(start) if start is not None else 0


def _rec_id(rec: Recorder) -> str:
    return rec.info["id"]
