"""The task layer's classes under Qlib's module paths, so a config naming ``qlib.workflow.task.gen.RollingGen``
or ``{class: TrainerR, module_path: qlib.model.trainer}`` resolves to qexp's. ``load_plugins`` calls
:func:`register_components` after the plugins (as plugin ``qexp``)."""
from __future__ import annotations

from typing import Any, Callable


def register_components(register: Callable[..., None]) -> None:
    from .. import trainer
    from ..ens import ensemble, group
    from ..online import manager, strategy, update, utils as online_utils
    from . import collect, gen, manage, rolling, utils

    table: list[tuple[str, Any, tuple[str, ...]]] = [
        ("qlib.workflow.task.gen", gen, ("task_generator", "TaskGen", "RollingGen", "MultiHorizonGenBase",
                                         "handler_mod", "trunc_segments")),
        ("qlib.workflow.task.utils", utils, ("TimeAdjuster", "list_recorders", "replace_task_handler_with_cache",
                                             "get_date_by_shift", "transform_end_date")),
        ("qlib.workflow.task.manage", manage, ("TaskManager", "run_task")),
        ("qlib.workflow.task.collect", collect, ("Collector", "MergeCollector", "RecorderCollector")),
        ("qlib.model.trainer", trainer, ("task_train", "begin_task_train", "end_task_train", "Trainer", "TrainerR",
                                         "DelayTrainerR", "TrainerRM", "DelayTrainerRM")),
        ("qlib.model.ens.ensemble", ensemble, ("Ensemble", "SingleKeyEnsemble", "RollingEnsemble",
                                               "AverageEnsemble")),
        ("qlib.model.ens.group", group, ("Group", "RollingGroup")),
        ("qlib.workflow.online.manager", manager, ("OnlineManager",)),
        ("qlib.workflow.online.strategy", strategy, ("OnlineStrategy", "RollingStrategy")),
        ("qlib.workflow.online.utils", online_utils, ("OnlineTool", "OnlineToolR")),
        ("qlib.workflow.online.update", update, ("RMDLoader", "RecordUpdater", "DSBasedUpdater", "PredUpdater",
                                                 "LabelUpdater")),
        ("qlib.contrib.rolling.base", rolling, ("Rolling",)),
    ]
    # the packages re-export their classes: qlib.model.ens.X, qlib.workflow.task.X, qlib.workflow.online.X
    packages = {"qlib.model.ens.ensemble": "qlib.model.ens", "qlib.model.ens.group": "qlib.model.ens",
                "qlib.contrib.rolling.base": "qlib.contrib.rolling"}
    for qlib_path, module, names in table:
        for name in names:
            paths = (qlib_path, packages[qlib_path]) if qlib_path in packages else (qlib_path,)
            register(getattr(module, name), name=name, module_paths=paths)
