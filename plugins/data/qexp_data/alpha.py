"""Alpha158 and Alpha360: Qlib's feature sets (``qlib/contrib/data/loader.py``, ``handler.py``).

Column names, order and expressions follow Qlib exactly; the default processors too:
Alpha158 infers with ``[]`` and learns with ``[DropnaLabel, CSZScoreNorm(label)]``; Alpha360 infers with
``[ProcessInf, ZScoreNorm, Fillna]`` on all columns (the label included, as in Qlib) and learns the same way.
"""
from __future__ import annotations

import copy
import inspect
import warnings
from typing import Any, Sequence

from qexp.ext import ConfigError

from . import processor as processor_module
from .handler import DataHandlerLP
from .instantiate import class_and_kwargs
from .processor import Processor

LABEL_EXPR = "Ref($close, -2)/Ref($close, -1) - 1"
LABEL_EXPR_VWAP = "Ref($vwap, -2)/Ref($vwap, -1) - 1"
ROLLING_WINDOWS = [5, 10, 20, 30, 60]

_DEFAULT_LEARN_PROCESSORS = [
    {"class": "DropnaLabel"},
    {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}},
]
_DEFAULT_INFER_PROCESSORS = [
    {"class": "ProcessInf", "kwargs": {}},
    {"class": "ZScoreNorm", "kwargs": {}},
    {"class": "Fillna", "kwargs": {}},
]


class Alpha158DL:
    """Qlib's Alpha158 feature-config generator."""

    DEFAULT_CONFIG: dict = {
        "kbar": {},
        "price": {"windows": [0], "feature": ["OPEN", "HIGH", "LOW", "VWAP"]},
        "rolling": {},
    }

    @staticmethod
    def get_feature_config(config: dict | None = None) -> tuple[list[str], list[str]]:
        """``(exprs, names)`` for the blocks in ``config``: ``kbar``, ``price`` (``windows``, ``feature``),
        ``volume`` (``windows``) and ``rolling`` (``windows``, ``include``, ``exclude``)."""
        if config is None:
            config = Alpha158DL.DEFAULT_CONFIG
        fields: list[str] = []
        names: list[str] = []
        if "kbar" in config:
            fields += [
                "($close-$open)/$open",
                "($high-$low)/$open",
                "($close-$open)/($high-$low+1e-12)",
                "($high-Greater($open, $close))/$open",
                "($high-Greater($open, $close))/($high-$low+1e-12)",
                "(Less($open, $close)-$low)/$open",
                "(Less($open, $close)-$low)/($high-$low+1e-12)",
                "(2*$close-$high-$low)/$open",
                "(2*$close-$high-$low)/($high-$low+1e-12)",
            ]
            names += ["KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2"]
        if "price" in config:
            windows = (config["price"] or {}).get("windows", range(5))
            feature = (config["price"] or {}).get("feature", ["OPEN", "HIGH", "LOW", "CLOSE", "VWAP"])
            for field in feature:
                field = field.lower()
                fields += [f"Ref(${field}, {d})/$close" if d != 0 else f"${field}/$close" for d in windows]
                names += [field.upper() + str(d) for d in windows]
        if "volume" in config:
            windows = (config["volume"] or {}).get("windows", range(5))
            fields += [f"Ref($volume, {d})/($volume+1e-12)" if d != 0 else "$volume/($volume+1e-12)"
                       for d in windows]
            names += ["VOLUME" + str(d) for d in windows]
        if "rolling" in config:
            rolling = config["rolling"] or {}
            f, n = _rolling_fields(rolling.get("windows", ROLLING_WINDOWS), rolling.get("include"),
                                   rolling.get("exclude", []))
            fields += f
            names += n
        return fields, names


def _rolling_fields(windows: Sequence[int], include: Sequence[str] | None,
                    exclude: Sequence[str]) -> tuple[list[str], list[str]]:
    # (config key, column prefix, expression template with {d}); order is Qlib's
    groups = [
        ("ROC", "ROC", "Ref($close, {d})/$close"),
        ("MA", "MA", "Mean($close, {d})/$close"),
        ("STD", "STD", "Std($close, {d})/$close"),
        ("BETA", "BETA", "Slope($close, {d})/$close"),
        ("RSQR", "RSQR", "Rsquare($close, {d})"),
        ("RESI", "RESI", "Resi($close, {d})/$close"),
        ("MAX", "MAX", "Max($high, {d})/$close"),
        ("LOW", "MIN", "Min($low, {d})/$close"),
        ("QTLU", "QTLU", "Quantile($close, {d}, 0.8)/$close"),
        ("QTLD", "QTLD", "Quantile($close, {d}, 0.2)/$close"),
        ("RANK", "RANK", "Rank($close, {d})"),
        ("RSV", "RSV", "($close-Min($low, {d}))/(Max($high, {d})-Min($low, {d})+1e-12)"),
        ("IMAX", "IMAX", "IdxMax($high, {d})/{d}"),
        ("IMIN", "IMIN", "IdxMin($low, {d})/{d}"),
        ("IMXD", "IMXD", "(IdxMax($high, {d})-IdxMin($low, {d}))/{d}"),
        ("CORR", "CORR", "Corr($close, Log($volume+1), {d})"),
        ("CORD", "CORD", "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), {d})"),
        ("CNTP", "CNTP", "Mean($close>Ref($close, 1), {d})"),
        ("CNTN", "CNTN", "Mean($close<Ref($close, 1), {d})"),
        ("CNTD", "CNTD", "Mean($close>Ref($close, 1), {d})-Mean($close<Ref($close, 1), {d})"),
        ("SUMP", "SUMP", "Sum(Greater($close-Ref($close, 1), 0), {d})/(Sum(Abs($close-Ref($close, 1)), {d})+1e-12)"),
        ("SUMN", "SUMN", "Sum(Greater(Ref($close, 1)-$close, 0), {d})/(Sum(Abs($close-Ref($close, 1)), {d})+1e-12)"),
        ("SUMD", "SUMD", "(Sum(Greater($close-Ref($close, 1), 0), {d})-Sum(Greater(Ref($close, 1)-$close, 0), {d}))"
                         "/(Sum(Abs($close-Ref($close, 1)), {d})+1e-12)"),
        ("VMA", "VMA", "Mean($volume, {d})/($volume+1e-12)"),
        ("VSTD", "VSTD", "Std($volume, {d})/($volume+1e-12)"),
        ("WVMA", "WVMA", "Std(Abs($close/Ref($close, 1)-1)*$volume, {d})"
                         "/(Mean(Abs($close/Ref($close, 1)-1)*$volume, {d})+1e-12)"),
        ("VSUMP", "VSUMP", "Sum(Greater($volume-Ref($volume, 1), 0), {d})"
                           "/(Sum(Abs($volume-Ref($volume, 1)), {d})+1e-12)"),
        ("VSUMN", "VSUMN", "Sum(Greater(Ref($volume, 1)-$volume, 0), {d})"
                           "/(Sum(Abs($volume-Ref($volume, 1)), {d})+1e-12)"),
        ("VSUMD", "VSUMD", "(Sum(Greater($volume-Ref($volume, 1), 0), {d})-Sum(Greater(Ref($volume, 1)-$volume, 0), {d}))"
                           "/(Sum(Abs($volume-Ref($volume, 1)), {d})+1e-12)"),
    ]
    known = {g[0] for g in groups}
    unknown = [x for x in list(include or []) + list(exclude) if x not in known]
    if unknown:
        # Qlib ignores them silently; a warning catches typos without breaking Qlib configs
        warnings.warn(f"Alpha158 rolling include/exclude names {unknown} match no group and are ignored; "
                      f"the groups are {sorted(known)} (MIN columns come from the 'LOW' group)", stacklevel=3)
    fields: list[str] = []
    names: list[str] = []
    for key, prefix, template in groups:
        if key in exclude or (include is not None and key not in include):
            continue
        fields += [template.format(d=d) for d in windows]
        names += [f"{prefix}{d}" for d in windows]
    return fields, names


class Alpha360DL:
    """Qlib's Alpha360 feature-config generator: 6 blocks x lags 59..0."""

    @staticmethod
    def get_feature_config() -> tuple[list[str], list[str]]:
        fields: list[str] = []
        names: list[str] = []
        for field in ("close", "open", "high", "low", "vwap"):
            fields += [f"Ref(${field}, {d})/$close" for d in range(59, 0, -1)]
            fields += [f"${field}/$close"]
            names += [f"{field.upper()}{d}" for d in range(59, -1, -1)]
        fields += [f"Ref($volume, {d})/($volume+1e-12)" for d in range(59, 0, -1)]
        fields += ["$volume/($volume+1e-12)"]
        names += [f"VOLUME{d}" for d in range(59, -1, -1)]
        return fields, names


def check_transform_proc(proc_l: list | None, fit_start_time: Any, fit_end_time: Any) -> list:
    """Inject ``fit_start_time``/``fit_end_time`` into processor configs whose class takes both."""
    out: list = []
    for proc in proc_l or []:
        if isinstance(proc, Processor):
            out.append(proc)
            continue
        klass, pkwargs = class_and_kwargs(proc, processor_module, where="processor")
        params = inspect.signature(klass).parameters
        if "fit_start_time" in params and "fit_end_time" in params:
            if fit_start_time is None or fit_end_time is None:
                raise ConfigError(f"{klass.__name__} is fitted on a time window: pass fit_start_time and "
                                  "fit_end_time to the handler (e.g. the start and end of the train segment)")
            pkwargs.update({"fit_start_time": fit_start_time, "fit_end_time": fit_end_time})
        conf: dict = {"class": klass, "kwargs": pkwargs}
        out.append(conf)
    return out


def _loader_config(feature: tuple, label: Any, filter_pipe: Any, freq: Any, inst_processors: Any) -> dict:
    return {
        "class": "QlibDataLoader",
        "kwargs": {
            "config": {"feature": feature, "label": label},
            "filter_pipe": filter_pipe,
            "freq": freq,
            "inst_processors": inst_processors,
        },
    }


class Alpha158(DataHandlerLP):
    """Qlib's Alpha158 handler: 158 price/volume features and the label ``LABEL0``.

    ``label=(exprs, names)`` or ``label=[expr]`` overrides the label (a plain list names the column by its
    expression, as Qlib's yamls do).
    """

    def __init__(self, instruments: Any = "csi500", start_time: Any = None, end_time: Any = None,
                 freq: str = "day", infer_processors: list | None = None, learn_processors: list | None = None,
                 fit_start_time: Any = None, fit_end_time: Any = None, process_type: str = DataHandlerLP.PTYPE_A,
                 filter_pipe: list | None = None, inst_processors: list | None = None, **kwargs: Any):
        infer_processors = [] if infer_processors is None else infer_processors
        learn_processors = copy.deepcopy(_DEFAULT_LEARN_PROCESSORS) if learn_processors is None \
            else learn_processors
        infer_processors = check_transform_proc(infer_processors, fit_start_time, fit_end_time)
        learn_processors = check_transform_proc(learn_processors, fit_start_time, fit_end_time)
        data_loader = _loader_config(self.get_feature_config(), kwargs.pop("label", self.get_label_config()),
                                     filter_pipe, freq, inst_processors)
        super().__init__(instruments=instruments, start_time=start_time, end_time=end_time,
                         data_loader=data_loader, infer_processors=infer_processors,
                         learn_processors=learn_processors, process_type=process_type, **kwargs)

    def get_feature_config(self) -> tuple[list[str], list[str]]:
        return Alpha158DL.get_feature_config(copy.deepcopy(Alpha158DL.DEFAULT_CONFIG))

    def get_label_config(self) -> tuple[list[str], list[str]]:
        return [LABEL_EXPR], ["LABEL0"]


class Alpha158vwap(Alpha158):
    """Alpha158 with the label on ``$vwap``."""

    def get_label_config(self) -> tuple[list[str], list[str]]:
        return [LABEL_EXPR_VWAP], ["LABEL0"]


class Alpha360(DataHandlerLP):
    """Qlib's Alpha360 handler: 60 days of normalised close/open/high/low/vwap/volume and ``LABEL0``.

    The default infer processors include ``ZScoreNorm``, so ``fit_start_time`` and ``fit_end_time`` are needed
    unless ``infer_processors`` is overridden.
    """

    def __init__(self, instruments: Any = "csi500", start_time: Any = None, end_time: Any = None,
                 freq: str = "day", infer_processors: list | None = None, learn_processors: list | None = None,
                 fit_start_time: Any = None, fit_end_time: Any = None, filter_pipe: list | None = None,
                 inst_processors: list | None = None, **kwargs: Any):
        infer_processors = copy.deepcopy(_DEFAULT_INFER_PROCESSORS) if infer_processors is None \
            else infer_processors
        learn_processors = copy.deepcopy(_DEFAULT_LEARN_PROCESSORS) if learn_processors is None \
            else learn_processors
        infer_processors = check_transform_proc(infer_processors, fit_start_time, fit_end_time)
        learn_processors = check_transform_proc(learn_processors, fit_start_time, fit_end_time)
        data_loader = _loader_config(Alpha360DL.get_feature_config(),
                                     kwargs.pop("label", self.get_label_config()), filter_pipe, freq,
                                     inst_processors)
        super().__init__(instruments=instruments, start_time=start_time, end_time=end_time,
                         data_loader=data_loader, infer_processors=infer_processors,
                         learn_processors=learn_processors, **kwargs)

    def get_label_config(self) -> tuple[list[str], list[str]]:
        return [LABEL_EXPR], ["LABEL0"]


class Alpha360vwap(Alpha360):
    """Alpha360 with the label on ``$vwap``."""

    def get_label_config(self) -> tuple[list[str], list[str]]:
        return [LABEL_EXPR_VWAP], ["LABEL0"]
