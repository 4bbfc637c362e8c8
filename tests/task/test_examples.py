"""examples/rolling: the TrainerRM example with two `qexp worker` processes, on the tiny market; the S&P 500
rolling config checked and rolled into its windows on an import of the shared sample data."""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

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


SP500_CONFIGS = sorted(EXAMPLES.glob("*sp500*rolling*.yaml"))
SP500_STOCKS = 20  # a slice: the windows depend only on the calendar, which every stock of the sample shares


@pytest.fixture(scope="module")
def sp500_slice(tmp_path_factory):
    """The first stocks of ../shared/data/sp500_5yr imported as the example's comment says (qexp data import-csv)."""
    from tests.conftest import SP500_DIR
    if not SP500_DIR.is_dir() or not any(SP500_DIR.glob("*.csv")):
        pytest.skip(f"the S&P 500 sample data is not at {SP500_DIR} (set QEXP_SHARED_DATA to its folder); the "
                    f"S&P rolling example needs it")
    src = tmp_path_factory.mktemp("sp_src")
    for f in sorted(SP500_DIR.glob("*.csv"))[:SP500_STOCKS]:
        os.symlink(f, src / f.name)
    from qexp.cli.main import get_cli
    dst = tmp_path_factory.mktemp("sp_data") / "sp500"
    result = CliRunner().invoke(get_cli(), ["data", "import-csv", str(src), "--out", str(dst), "--symbol-col", "Name"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return dst


def test_the_sp500_rolling_example_is_there():
    assert SP500_CONFIGS, f"no *sp500*rolling*.yaml in {EXAMPLES}: the test below would have nothing to check"


@pytest.mark.parametrize("config", SP500_CONFIGS, ids=lambda p: p.name)
def test_the_sp500_rolling_example_loads_and_rolls_into_five_windows(config, sp500_slice, tmp_path):
    from qexp.cli.main import get_cli
    from qexp.task.gen import RollingGen
    from qexp.task.rolling import Rolling
    data = f"qlib_init.provider_uri={sp500_slice}"
    dry = CliRunner().invoke(get_cli(), ["run", str(config), "--dry-run", "--set", data, "--uri", str(tmp_path / "runs")],
                             catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert "config OK" in dry.output and not (tmp_path / "runs").exists()
    # the command of the example's comment: --step 63 --horizon 1 (five windows over 2017-01..2018-02)
    rolling = Rolling(config, step=63, horizon=1, uri=str(tmp_path / "runs"), overrides=[data])
    tasks = rolling.get_task_list()
    rolling.release_handlers()
    assert rolling.rtype == RollingGen.ROLL_EX and len(tasks) == 5
    segs = [t["dataset"]["kwargs"]["segments"] for t in tasks]
    cal = pd.DatetimeIndex(pd.read_csv(sp500_slice / "calendars" / "day.txt", header=None)[0])
    starts = [cal.get_loc(s["test"][0]) for s in segs]
    assert str(segs[0]["test"][0].date()) == "2017-01-03"  # the first trading day of 2017
    assert [b - a for a, b in zip(starts, starts[1:])] == [63] * 4
    assert all(cal.get_loc(s["test"][1]) == cal.get_loc(s["test"][0]) + 62 for s in segs[:-1])
    assert segs[-1]["test"][1] is None or str(pd.Timestamp(segs[-1]["test"][1]).date()) == "2018-02-07"
    for s in segs:
        assert str(pd.Timestamp(s["train"][0]).date()) == "2013-02-08"  # expanding: the train start stays
        assert cal.get_loc(s["valid"][1]) == cal.get_loc(s["test"][0]) - 2  # trunc_days = horizon + 1
    assert all(t["record"] == ["qlib.workflow.record_temp.SignalRecord"] for t in tasks)
