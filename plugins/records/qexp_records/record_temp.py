"""Record templates: post-training analysis written into a Recorder (Qlib's ``qlib.workflow.record_temp``).

Differences from Qlib, each on purpose:

- A missing dependency is a :class:`MissingArtifactError` naming the artifact and the record that makes it;
  Qlib logs a warning and silently returns None.
- ``load`` falls back through the ``depend_cls`` chain explicitly (no ``__class__`` swapping).
- A record declares which of its dependency's artifacts it needs (``depend_artifacts``): PortAnaRecord needs
  only ``pred.pkl``, so a dataset without a raw label does not block the backtest.
"""
from __future__ import annotations

import builtins
import logging
from typing import Any, ClassVar, Collection

import pandas as pd

from qexp import LoadObjectError, QexpError

from .signal_metrics import calc_ic, calc_long_short_return

logger = logging.getLogger("qexp.records")

__all__ = ["RecordTemp", "ACRecordTemp", "SignalRecord", "SigAnaRecord", "MissingArtifactError"]


class MissingArtifactError(QexpError, FileNotFoundError):
    """An artifact a record needs (or should have written) is not in the recorder."""


class RecordTemp:
    """Base of the record templates: artifacts live under ``artifact_path`` of the recorder.

    ``depend_cls`` is the record whose artifacts this one reads; ``list()`` names the artifacts this record
    writes (relative to its ``artifact_path``).
    """

    artifact_path: ClassVar[str | None] = None
    depend_cls: ClassVar[type[RecordTemp] | None] = None
    # artifacts of depend_cls this record reads; None means all of depend_cls().list()
    depend_artifacts: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, recorder: Any = None):
        self._recorder = recorder

    @property
    def recorder(self) -> Any:
        if self._recorder is None:
            from qexp import R
            try:
                self._recorder = R.get_recorder()
            except QexpError as exc:
                raise QexpError(f"{type(self).__name__} has no recorder: pass recorder=... or create it inside "
                                f"`with R.start(...)`") from exc
        return self._recorder

    @classmethod
    def get_path(cls, path: str | None = None) -> str:
        """``artifact_path/path`` (either part may be missing)."""
        return "/".join(p for p in (cls.artifact_path, path) if p)

    @classmethod
    def artifact_names(cls) -> list[str]:
        """The artifacts this record writes, as ``list()`` of an instance would report (class level)."""
        return cls.list(cls.__new__(cls))  # list() reads no instance state in the built-in records

    def save(self, **kwargs: Any) -> None:
        """Pickle ``name=obj`` pairs under this record's ``artifact_path``."""
        self.recorder.save_objects(artifact_path=self.get_path() or None, **kwargs)

    def generate(self, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement generate()")

    def list(self) -> list[str]:
        """Names of the artifacts this record writes (relative to ``artifact_path``)."""
        return []

    def _chain(self) -> builtins.list[type[RecordTemp]]:  # `list` is a method name in this class
        chain: builtins.list[type[RecordTemp]] = []
        cls: type[RecordTemp] | None = type(self)
        while cls is not None and cls not in chain:
            chain.append(cls)
            cls = cls.depend_cls
        return chain

    def load(self, name: str, parents: bool = True) -> Any:
        """Load ``name`` from this record's path, else (``parents``) from each dependency's path in turn."""
        chain = self._chain() if parents else [type(self)]
        tried = []
        for cls in chain:
            path = cls.get_path(name)
            tried.append(path)
            try:
                return self.recorder.load_object(path)
            except LoadObjectError as exc:
                # a missing file means: try the next path; a file that fails to unpickle is an error
                if not _is_missing(exc):
                    raise
        producer = next((c.__name__ for c in chain if name in _safe_list(c)), None)
        hint = f"; it is written by {producer}, run that record first" if producer else ""
        raise MissingArtifactError(f"{type(self).__name__}: recorder {getattr(self.recorder, 'id', '?')} has no "
                                   f"artifact {' or '.join(map(repr, tried))}{hint}")

    def check(self, include_self: bool = False, parents: bool = True, provided: Collection[str] = ()) -> None:
        """Raise :class:`MissingArtifactError` when an artifact is missing: this record's own
        (``include_self``) and the ones it reads from its dependencies, recursively (``parents``).
        ``provided`` names dependency artifacts the caller passes in directly, so they need not exist."""
        present = set(self.recorder.list_artifacts(recursive=True))
        if self.depend_cls is not None:
            present |= {self.depend_cls.get_path(a) for a in provided}
        if include_self:
            missing = [self.get_path(a) for a in self.list() if self.get_path(a) not in present]
            if missing:
                raise MissingArtifactError(f"{type(self).__name__} artifact(s) {', '.join(missing)} not found in "
                                           f"recorder {self.recorder.id}; run {type(self).__name__}.generate()")
        if parents:
            absent = type(self)._missing_dependencies(present)
            if absent:
                path, dep, needer = absent[0]
                raise MissingArtifactError(
                    f"{needer.__name__} needs {', '.join(p for p, _, n in absent if n is needer)} from "
                    f"{dep.__name__}, but recorder {self.recorder.id} does not have it; run {dep.__name__} on "
                    f"this recorder first (e.g. record: [{dep.__name__}, {needer.__name__}] in the task config)")

    @classmethod
    def _missing_dependencies(cls, present: set[str]) -> builtins.list[tuple[str, type[RecordTemp], type[RecordTemp]]]:
        """``(path, producing record, needing record)`` for each dependency artifact absent from ``present``,
        following ``depend_cls`` up the chain."""
        out = []
        needer = cls
        while needer.depend_cls is not None and needer.depend_cls is not needer:
            dep = needer.depend_cls
            needed = needer.depend_artifacts if needer.depend_artifacts is not None else _safe_list(dep)
            out += [(dep.get_path(a), dep, needer) for a in needed if dep.get_path(a) not in present]
            needer = dep
        return out


def _is_missing(exc: LoadObjectError) -> bool:
    return isinstance(exc.__cause__, (OSError, KeyError)) or "no artifact" in str(exc)


def _safe_list(cls: type[RecordTemp]) -> list[str]:
    try:
        return cls.artifact_names()
    except Exception:
        return []


class ACRecordTemp(RecordTemp):
    """A record that checks its dependencies before generating and can skip work already done."""

    def __init__(self, recorder: Any = None, skip_existing: bool = False):
        super().__init__(recorder=recorder)
        self.skip_existing = skip_existing

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Skip when ``skip_existing`` and every artifact exists; otherwise check the dependencies (an error
        when one is missing), run ``_generate`` and save what it returns."""
        if self.skip_existing:
            try:
                self.check(include_self=True, parents=False)
            except MissingArtifactError:
                pass
            else:
                logger.info("%s: artifacts already exist in recorder %s; skipped", type(self).__name__,
                            self.recorder.id)
                return None
        self.check(include_self=False, parents=True, provided=self.provided_artifacts(**kwargs))
        artifacts = self._generate(*args, **kwargs)
        if isinstance(artifacts, dict):
            self.save(**artifacts)
        return artifacts

    def provided_artifacts(self, **kwargs: Any) -> set[str]:
        """Dependency artifacts that ``generate(**kwargs)`` receives directly instead of loading them."""
        return set()

    def _generate(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        raise NotImplementedError(f"{type(self).__name__} must implement _generate()")


def _raw_label(dataset: Any) -> pd.DataFrame | None:
    """The raw (unprocessed) label of the test segment, or None when the dataset cannot give one."""
    prepare = getattr(dataset, "prepare", None)
    if prepare is None:
        return None
    params: dict[str, Any] = {"segments": "test", "col_set": "label", "data_key": "raw"}
    try:
        label = prepare(**params)
    except TypeError:
        # a dataset whose prepare() has no data_key: its only data is the raw data
        del params["data_key"]
        label = prepare(**params)
    except AttributeError as exc:
        # a handler built with drop_raw=True keeps no raw data
        logger.warning("SignalRecord: the dataset has no raw data (%s); label.pkl is not written", exc)
        return None
    if label is None or isinstance(label, (pd.DataFrame, pd.Series)):
        return label
    return _segment_frame(dataset, label, params)


def _segment_frame(dataset: Any, label: Any, params: dict[str, Any]) -> pd.DataFrame:
    """The test label as rows of the segment, for a dataset whose ``prepare`` gives samples (a TSDatasetH's
    TSDataSampler of windows): read from its handler over the segment's dates, as Qlib does by treating the
    dataset as a plain DatasetH for this call (``class_casting``)."""
    handler, segments = getattr(dataset, "handler", None), getattr(dataset, "segments", None)
    if handler is None or not isinstance(segments, dict) or "test" not in segments:
        raise QexpError(f"SignalRecord: {type(dataset).__name__}.prepare('test', col_set='label') returned a "
                        f"{type(label).__name__}, not a DataFrame, and the dataset has no handler and 'test' "
                        f"segment to read the label rows from")
    start, end = segments["test"]
    kwargs = {**(getattr(dataset, "fetch_kwargs", None) or {}), "col_set": "label"}
    if "data_key" in params:
        kwargs["data_key"] = params["data_key"]
    frame = handler.fetch(slice(start, end), **kwargs)
    if not isinstance(frame, (pd.DataFrame, pd.Series)):
        raise QexpError(f"SignalRecord: the handler of {type(dataset).__name__} returned a "
                        f"{type(frame).__name__} for the test label; expected a DataFrame")
    return frame


class SignalRecord(RecordTemp):
    """Predictions of ``model`` on the "test" segment (``pred.pkl``) and the raw test label (``label.pkl``)."""

    def __init__(self, model: Any = None, dataset: Any = None, recorder: Any = None, **kwargs: Any):
        super().__init__(recorder=recorder)
        self.model = model
        self.dataset = dataset

    def generate(self, **kwargs: Any) -> dict[str, Any]:
        if self.model is None or self.dataset is None:
            raise QexpError("SignalRecord needs model and dataset (in a task config: model: <MODEL>, "
                            "dataset: <DATASET>)")
        pred = self.model.predict(self.dataset)
        if isinstance(pred, pd.Series):
            pred = pred.to_frame("score")
        if not isinstance(pred, pd.DataFrame):
            raise QexpError(f"{type(self.model).__name__}.predict returned {type(pred).__name__}; SignalRecord "
                            f"needs a Series or DataFrame indexed by (datetime, instrument)")
        self.save(**{"pred.pkl": pred})
        logger.info("SignalRecord: %s predictions saved to recorder %s\n%s", type(self.model).__name__,
                    self.recorder.id, pred.head(5))
        out = {"pred.pkl": pred}
        label = _raw_label(self.dataset)
        if label is not None:
            self.save(**{"label.pkl": label})
            out["label.pkl"] = label
        else:
            logger.warning("SignalRecord: %s gives no raw label; label.pkl is not written, so SigAnaRecord "
                           "cannot run on this recorder", type(self.dataset).__name__)
        return out

    def list(self) -> list[str]:
        return ["pred.pkl", "label.pkl"]


def _first_column(obj: Any, what: str, col: int = 0) -> pd.Series:
    if isinstance(obj, pd.Series):
        return obj
    if isinstance(obj, pd.DataFrame):
        if obj.shape[1] <= col:
            raise QexpError(f"{what} has {obj.shape[1]} column(s); column {col} was asked for")
        return obj.iloc[:, col]
    raise QexpError(f"{what} must be a pandas DataFrame or Series, got {type(obj).__name__}")


class SigAnaRecord(ACRecordTemp):
    """IC and Rank IC of the predictions against the raw label (and long-short returns when asked)."""

    artifact_path = "sig_analysis"
    depend_cls = SignalRecord

    def __init__(self, recorder: Any = None, ana_long_short: bool = False, ann_scaler: int = 252,
                 label_col: int = 0, skip_existing: bool = False, plot: bool = True):
        super().__init__(recorder=recorder, skip_existing=skip_existing)
        self.ana_long_short = ana_long_short
        self.ann_scaler = ann_scaler
        self.label_col = label_col
        self.plot = plot

    def provided_artifacts(self, label: Any = None, **kwargs: Any) -> set[str]:
        return {"label.pkl"} if label is not None else set()

    def _generate(self, label: pd.DataFrame | None = None, **kwargs: Any) -> dict[str, Any]:
        """IC/Rank IC (and long-short) of ``pred.pkl``; ``label`` overrides the saved ``label.pkl``."""
        pred = _first_column(self.load("pred.pkl"), "pred.pkl")
        if label is None:
            label = self.load("label.pkl")
        if label is None or len(label) == 0:
            raise QexpError("SigAnaRecord: the label is empty; the dataset's test segment has no raw label")
        lab = _first_column(label, "label", self.label_col)
        ic, ric = calc_ic(pred, lab)
        if ic.notna().sum() == 0:
            raise QexpError("SigAnaRecord: no date has both predictions and labels for two or more instruments; "
                            "check that pred.pkl and label.pkl cover the same (datetime, instrument) rows")
        metrics = {"IC": ic.mean(), "ICIR": ic.mean() / ic.std(), "Rank IC": ric.mean(),
                   "Rank ICIR": ric.mean() / ric.std()}
        objects: dict[str, Any] = {"ic.pkl": ic, "ric.pkl": ric}
        if self.ana_long_short:
            ls, avg = calc_long_short_return(pred, lab)
            root = self.ann_scaler ** 0.5
            metrics.update({"Long-Short Ann Return": ls.mean() * self.ann_scaler,
                            "Long-Short Ann Sharpe": ls.mean() / ls.std() * root,
                            "Long-Avg Ann Return": avg.mean() * self.ann_scaler,
                            "Long-Avg Ann Sharpe": avg.mean() / avg.std() * root})
            objects.update({"long_short_r.pkl": ls, "long_avg_r.pkl": avg})
        self.recorder.log_metrics(**{k: float(v) for k, v in metrics.items()})
        logger.info("SigAnaRecord: %s", {k: round(float(v), 6) for k, v in metrics.items()})
        if self.plot:
            from .plots import ic_figure_png
            self.recorder.log_bytes(ic_figure_png(ic, ric), self.get_path("ic.png"))
        return objects

    def list(self) -> list[str]:
        names = ["ic.pkl", "ric.pkl"]
        if getattr(self, "ana_long_short", False):
            names += ["long_short_r.pkl", "long_avg_r.pkl"]
        return names
