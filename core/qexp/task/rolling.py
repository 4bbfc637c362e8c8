"""``qexp rolling``: Qlib's ``contrib.rolling`` (``qlib/contrib/rolling/base.py``) on a workflow YAML.

The task of the YAML is rolled with ``RollingGen(step, rtype, trunc_days=horizon + 1)`` (``--horizon h``
rewrites an Alpha158/Alpha360 label to ``Ref($close, -(h+1)) / Ref($close, -1) - 1``); each window trains
with only ``SignalRecord`` into experiment ``<name>_models``; ``RollingEnsemble`` joins the windows'
predictions and labels into one new run of ``<name>`` (tag ``qexp.rolling``, each window's test segment as a
param and its IC as metric ``rolling/IC`` at step = window), where the YAML's other records run.

Unlike Qlib, the features are computed once for all windows: the handler is built once and every task's
dataset reads its own segments from that one object (other processes load it once from a pickle). Nothing is
deleted, so a rerun needs no ``rm -r mlruns``: it adds new window runs and a new combined run.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from .. import registry
from ..api import R
from ..config import get_callable_kwargs, init_instance_by_config, update_config
from ..ens.ensemble import RollingEnsemble
from ..exceptions import ConfigError
from ..executor import Executor, default_executor_uri
from ..progress import phase
from ..recorder import Recorder
from .collect import RecorderCollector
from .gen import RollingGen, task_generator
from .store import qexp_home
from .utils import handler_key, release_shared_handler, share_handler, shared_handler

logger = logging.getLogger("qexp.rolling")

SIGNAL_RECORD = "qlib.workflow.record_temp.SignalRecord"
LABEL_HANDLERS = ("Alpha158", "Alpha360", "Alpha158vwap", "Alpha360vwap")
ROLLING_TAG = "qexp.rolling"


class Rolling:
    """Roll the task of ``conf_path`` (see the module doc). ``exp_name`` gets the combined run (``rolling``
    by default), ``rolling_exp`` the window runs (``<exp_name>_models``). ``h_path`` is a handler pickled
    beforehand (the handler section of the config is then not built); ``train_start`` / ``test_end`` move those
    segment ends; ``task_ext_conf`` is merged into the task. Beyond Qlib: ``rtype``, ``executor`` (where the
    windows train), ``uri`` (the tracking store, as ``qexp run --uri``), ``overrides`` (``--set`` items) and
    ``roll_fit_window``."""

    def __init__(self, conf_path: str | os.PathLike, exp_name: str | None = None, horizon: int | None = 20,
                 step: int = 20, h_path: str | None = None, train_start: str | None = None,
                 test_end: str | None = None, task_ext_conf: dict | None = None, rolling_exp: str | None = None,
                 rtype: str = RollingGen.ROLL_EX, executor: str | Executor | None = None, uri: str | None = None,
                 overrides: list[str] | None = None, roll_fit_window: bool = False):
        if horizon is None or isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0:
            raise ConfigError(f"rolling: horizon must be a whole number of trading days >= 0, got {horizon!r}")
        if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
            raise ConfigError(f"rolling: step must be a positive whole number of trading days, got {step!r}")
        if rtype not in (RollingGen.ROLL_EX, RollingGen.ROLL_SD):
            raise ConfigError(f"rolling: rtype must be '{RollingGen.ROLL_EX}' or '{RollingGen.ROLL_SD}', got {rtype!r}")
        from ..workflow import load_workflow
        self.conf_path = Path(conf_path)
        self.wf = load_workflow(self.conf_path, list(overrides or []), exp_name)
        self.exp_name = exp_name or "rolling"
        self.rolling_exp = rolling_exp or f"{self.exp_name}_models"
        self.horizon, self.step, self.rtype = horizon, step, rtype
        self.h_path, self.train_start, self.test_end = h_path, train_start, test_end
        self.task_ext_conf = task_ext_conf
        self.executor = executor
        self.uri = uri
        self.roll_fit_window = roll_fit_window
        self._rid: str | None = None
        self._initialized = False
        self._pickles: list[Path] = []
        self._shared_keys: list[str] = []  # handlers this rolling holds in this process, released by run()

    # ---- the task ------------------------------------------------------------------------------
    def _raw_conf(self) -> dict:
        return copy.deepcopy(self.wf.config)

    def _init(self) -> None:
        if not self._initialized:
            from ..session import init
            from ..workflow import apply_sys, init_settings
            apply_sys(self.wf.config, self.wf.path.parent)
            init(**init_settings(self.wf.config, self.uri))
            self._initialized = True

    def _needs_pickle(self) -> bool:
        """Whether the windows train in other processes (they load the shared handler from its pickle)."""
        ex = self.executor if self.executor is not None else default_executor_uri()
        uri = ex.uri if isinstance(ex, Executor) else str(ex)
        return uri.split(":", 1)[0] != "local"

    def _handler_dir(self) -> Path:
        from ..uri import local_path
        folder = local_path(R.get_uri())
        base = Path(folder) / ".qexp" if folder is not None else Path(qexp_home())
        return base / "handlers"

    def _replace_handler_with_cache(self, task: dict) -> dict:
        """Build the handler once and put a ``shared_handler`` config in the task (Qlib pickles it under the
        config's folder and every task unpickles it again)."""
        ds_kwargs = task["dataset"].setdefault("kwargs", {})
        if self.h_path is not None:
            key = f"file:{os.path.abspath(self.h_path)}"
            ds_kwargs["handler"] = {"class": "shared_handler", "module_path": "qexp.task.utils",
                                    "kwargs": {"key": key, "path": os.path.abspath(self.h_path)}}
            self._shared_keys.append(key)
            return task
        handler_conf = ds_kwargs.get("handler")
        if not isinstance(handler_conf, dict):
            return task
        from ..session import get_settings
        settings = get_settings()
        key = handler_key(handler_conf, settings.get("provider_uri"), settings.get("region"))
        path = self._handler_dir() / f"{handler_conf.get('class', 'handler')}.{key}.pkl"
        with phase("handler (features, once for all windows)"):
            try:
                handler = shared_handler(key)
            except ConfigError:
                handler = init_instance_by_config(handler_conf, where="task.dataset.kwargs.handler")
        dump = self._needs_pickle()
        # workers must read the features computed now (the data may have changed since an older pickle)
        ds_kwargs["handler"] = share_handler(handler, key, path, dump=dump, overwrite=dump)
        self._shared_keys.append(key)
        if dump:
            self._pickles.append(path)
        return task

    def _update_start_end_time(self, task: dict) -> dict:
        segments = task["dataset"]["kwargs"]["segments"]
        if self.train_start is not None:
            segments["train"] = pd.Timestamp(self.train_start), segments["train"][1]
        if self.test_end is not None:
            segments["test"] = segments["test"][0], pd.Timestamp(self.test_end)
        return task

    def basic_task(self, enable_handler_cache: bool | None = True) -> dict:
        """The YAML's task with the horizon's label, the shared handler and the start/end overrides."""
        self._init()
        task = self._raw_conf().get("task")
        if not isinstance(task, dict):
            raise ConfigError(f"{self.conf_path}: task: missing; a rolling config needs task.model, task.dataset")
        try:
            segments = task["dataset"]["kwargs"]["segments"]
        except (KeyError, TypeError):
            raise ConfigError("task.dataset.kwargs.segments: missing; rolling needs the task's train/valid/test "
                              "segments") from None
        if not isinstance(segments, dict) or "test" not in segments:
            raise ConfigError("task.dataset.kwargs.segments.test: missing; rolling rolls the test segment")
        handler = task["dataset"]["kwargs"].get("handler")
        if isinstance(handler, dict) and self.h_path is None:
            cls = handler.get("class")
            if isinstance(cls, str) and cls.rsplit(".", 1)[-1] in LABEL_HANDLERS:
                handler.setdefault("kwargs", {})["label"] = [f"Ref($close, -{self.horizon + 1}) / Ref($close, -1) - 1"]
            else:
                logger.warning("the label of handler %r is not rewritten for horizon %d (only %s labels are)",
                               cls, self.horizon, ", ".join(LABEL_HANDLERS))
        task = self._update_start_end_time(task)
        if self.task_ext_conf is not None:
            task = update_config(task, self.task_ext_conf)
        if enable_handler_cache or self.h_path is not None:
            task = self._replace_handler_with_cache(task)
        return task

    def get_task_list(self) -> list[dict]:
        """The rolling tasks, each with only ``SignalRecord`` (the analysis runs once on the combined run)."""
        task = self.basic_task(enable_handler_cache=False)
        # the last horizon + 1 days before each test start are truncated: their labels look into the test
        gen = RollingGen(step=self.step, rtype=self.rtype, trunc_days=self.horizon + 1,
                         roll_fit_window=self.roll_fit_window)
        tasks = task_generator(task, gen)  # bad segments fail here, before any feature is computed
        shared = self._replace_handler_with_cache(copy.deepcopy(task))["dataset"]["kwargs"].get("handler")
        for t in tasks:
            if isinstance(shared, dict) and shared.get("class") == "shared_handler":
                own = t["dataset"]["kwargs"].get("handler")
                t["dataset"]["kwargs"]["handler"] = handler = copy.deepcopy(shared)
                if self.roll_fit_window and isinstance(own, dict):
                    kw = own.get("kwargs") or {}
                    handler["kwargs"].update(fit_start_time=kw.get("fit_start_time"), fit_end_time=kw.get("fit_end_time"))
            t["record"] = [SIGNAL_RECORD]
        return tasks

    # ---- the three steps -----------------------------------------------------------------------
    def _train_rolling_tasks(self) -> list[Recorder]:
        from ..trainer import TrainerR
        tasks = self.get_task_list()
        logger.info("rolling: %d windows into experiment %r", len(tasks), self.rolling_exp)
        try:
            with TrainerR(experiment_name=self.rolling_exp, executor=self.executor) as trainer:
                recs = trainer(tasks)
        finally:
            for path in self._pickles:  # the workers are done with it; it is as large as the features
                path.unlink(missing_ok=True)
            self._pickles.clear()
        for i, rec in enumerate(recs):
            rec.set_tags(**{"rolling.window": str(i), ROLLING_TAG: self.exp_name})
        self._tasks, self._recs = tasks, recs
        return recs

    def _ens_rolling(self, recs: list[Recorder] | None = None) -> Recorder:
        recs = self._recs if recs is None else recs
        with phase("ensemble"):
            rc = RecorderCollector(experiment=lambda: recs, artifacts_key=["pred", "label"],
                                   artifacts_path={"pred": "pred.pkl", "label": "label.pkl"})
            parts = rc.collect(only_exist=False)
            res = rc.process_collect(parts, [RollingEnsemble()])
            ics = [window_ic(parts["pred"][r.id], parts["label"][r.id]) for r in recs]
        with R.start(experiment_name=self.exp_name):
            rec = R.get_recorder()
            R.log_params(exp_name=self.rolling_exp, **{"rolling.step": self.step, "rolling.horizon": self.horizon,
                                                      "rolling.rtype": self.rtype, "rolling.windows": len(recs)})
            for i, (r, t) in enumerate(zip(recs, self._tasks)):
                start, end = t["dataset"]["kwargs"]["segments"]["test"]
                R.log_params(**{f"rolling.window.{i}.test": f"{day_text(start)}..{day_text(end)}",
                                f"rolling.window.{i}.run_id": r.id})
            for i, ic in enumerate(ics):
                R.log_metrics(step=i, **{"rolling/IC": ic})
            R.set_tags(**{ROLLING_TAG: self.rolling_exp})
            R.save_objects(**{"pred.pkl": res["pred"], "label.pkl": res["label"]})
            R.save_objects(config=self.wf.config)
            self._rid = rec.id
            self._window_ics = ics
        return rec

    def _update_rolling_rec(self) -> Recorder:
        """Run the YAML's records other than SignalRecord on the combined run."""
        rec = R.get_recorder(experiment_name=self.exp_name, recorder_id=self._rid)
        records = self._raw_conf()["task"].get("record", [])
        if isinstance(records, (dict, str)):
            records = [records]
        signal_cls = registry.components.resolve("SignalRecord", "qlib.workflow.record_temp")
        for i, record in enumerate(records):
            cls, _ = get_callable_kwargs(record, where=f"task.record.{i}")
            if signal_cls is not None and isinstance(cls, type) and issubclass(cls, signal_cls):
                continue
            r = init_instance_by_config(record, where=f"task.record.{i}", recorder=rec)
            with phase(type(r).__name__):
                r.generate()
        logger.info("the rolling evaluation is in experiment %r, run %s", self.exp_name, rec.id)
        return rec

    def run(self) -> Recorder:
        """Train the windows, combine them into one run and evaluate it; return that run. The shared handler
        is released at the end (a later rolling in this process computes the features again, from the data
        as it is then)."""
        try:
            self._train_rolling_tasks()
            self._ens_rolling()
            return self._update_rolling_rec()
        finally:
            self.release_handlers()

    def release_handlers(self) -> None:
        """Let go of the handlers this rolling shared in this process (workers drop theirs when the pickle
        goes)."""
        for key in dict.fromkeys(self._shared_keys):
            release_shared_handler(key)
        self._shared_keys.clear()

    @property
    def window_ics(self) -> list[float]:
        """Each window's IC (mean daily Pearson correlation of prediction and label)."""
        return list(getattr(self, "_window_ics", []))


def window_ic(pred: pd.DataFrame | pd.Series, label: pd.DataFrame | pd.Series) -> float:
    """The mean over days of the cross-sectional Pearson correlation of prediction and label."""
    p = pred.iloc[:, 0] if isinstance(pred, pd.DataFrame) else pred
    lab = label.iloc[:, 0] if isinstance(label, pd.DataFrame) else label
    df = pd.concat([p.rename("pred"), lab.rename("label")], axis=1, join="inner").dropna()
    if df.empty:
        return float("nan")
    ic = df.groupby(level="datetime").apply(lambda x: x["pred"].corr(x["label"]))
    return float(ic.mean())


def day_text(ts: Any) -> str:
    """A segment end as ``YYYY-MM-DD`` (``open`` for None)."""
    return "open" if ts is None else str(pd.Timestamp(ts).date())
