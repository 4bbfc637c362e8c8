"""examples/rolling: the TrainerRM example with two `qexp worker` processes, on the tiny market."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from .test_rolling import TINY

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rolling"


def load(name):
    spec = importlib.util.spec_from_file_location(f"rolling_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_trainer_rm_with_two_workers(tiny_market, tmp_path, capsys):
    ex = load("trainer_rm_workers")
    recs, pred, ic = ex.main(str(tmp_path / "runs"), workers=2, step=60,
                             extra=[f"qlib_init.provider_uri={tiny_market}", *TINY])
    out = capsys.readouterr().out
    assert len(recs) == 3 and "worker 0: worker done" in out and "worker 1: worker done" in out
    trained = [int(line.split("worker done: ")[1].split(" ")[0]) for line in out.splitlines() if "worker done:" in line]
    assert sum(trained) == 3
    assert str(pred.index.get_level_values("datetime").min().date()) == "2019-07-01" and math.isfinite(ic)
    from qexp.task import TaskManager
    assert TaskManager(ex.POOL).task_stat() == {"done": 3}
