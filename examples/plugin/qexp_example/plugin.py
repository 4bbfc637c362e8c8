"""The module the ``qexp`` entry point names: hook implementations only, importing nothing heavy.

    [project.entry-points.qexp]
    example = "qexp_example.plugin"
"""
from __future__ import annotations

import json
import os
from typing import Any

from qexp.ext import ComponentRegister, hookimpl

JOURNAL_ENV = "QEXP_EXAMPLE_JOURNAL"


@hookimpl
def register_models(register: ComponentRegister) -> None:
    from .model import OneFeature
    register(OneFeature, module_paths=("qexp_example",))


@hookimpl
def register_record_templates(register: ComponentRegister) -> None:
    from .record import TopkExcessRecord
    register(TopkExcessRecord, module_paths=("qexp_example",))


@hookimpl
def recorder_ended(recorder: Any, status: str) -> None:
    """Append one JSON line per ended run to ``$QEXP_EXAMPLE_JOURNAL`` (nothing when it is not set)."""
    path = os.environ.get(JOURNAL_ENV)
    if not path:
        return
    line = {"run_id": recorder.id, "experiment_id": recorder.experiment_id, "name": recorder.name,
            "status": status, "metrics": recorder.list_metrics()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")
