"""Issue 13 item 9: non-finite metrics (probe 40: inf became NaN in search, `metrics.x > 1` missed it, NaN and
inf showed blank like "never logged", `--json` printed bare NaN; "0.5" and True were coerced silently)."""
from __future__ import annotations

import json
import math

import pytest

import qexp
from qexp import R
from qexp.ext import QexpError

from .conftest import cli


@pytest.fixture
def store(tmp_path):
    uri = str(tmp_path / "s")
    qexp.init(uri=uri)
    with R.start(experiment_name="nf", recorder_name="odd"):
        R.log_metrics(up=float("inf"), down=float("-inf"), nan=float("nan"), ok=0.5)
    with R.start(experiment_name="nf", recorder_name="plain"):
        R.log_metrics(ok=2.0)
    return uri


def test_infinities_are_kept_in_search(store):
    df = R.search_records(filter_string="metrics.up > 1")
    assert len(df) == 1 and df["metrics.up"].iloc[0] == math.inf and df["metrics.down"].iloc[0] == -math.inf
    assert len(R.search_records(filter_string="metrics.down < -1e300")) == 1
    assert len(R.search_records(filter_string="metrics.nan > -1")) == 0  # NaN compares false, as in MLflow
    assert list(R.search_records(order_by=["metrics.up DESC"])["tags.mlflow.runName"]) == ["odd", "plain"]
    R.exp_manager.rebuild_index()  # the rebuilt index keeps them too
    assert len(R.search_records(filter_string="metrics.up > 1")) == 1


def test_tables_spell_them_out_and_json_stays_valid(store):
    table = cli("runs", "list", "--uri", store, "-m", "up", "-m", "down", "-m", "nan", "-m", "ok").stdout
    row = next(line for line in table.splitlines() if "odd" in line).split()
    assert row[-4:] == ["inf", "-inf", "nan", "0.5"]
    plain = next(line for line in table.splitlines() if "plain" in line).split()
    assert plain[-1] == "2" and "nan" not in plain  # never logged stays blank

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    rows = {r["run_name"]: r for r in strict(cli("runs", "list", "--uri", store, "--json").stdout)}
    assert rows["odd"]["metrics.up"] == "inf" and rows["odd"]["metrics.down"] == "-inf"
    assert rows["odd"]["metrics.nan"] == "nan" and rows["plain"]["metrics.nan"] is None
    rid = R.search_records(filter_string="attributes.run_name = 'odd'").run_id.iloc[0]
    shown = strict(cli("runs", "show", rid, "--uri", store, "--json").stdout)
    assert shown["metrics"] == {"up": "inf", "down": "-inf", "nan": "nan", "ok": 0.5}


@pytest.mark.parametrize("value", ["0.5", True, b"1", None, [1, 2]])
def test_text_and_booleans_are_refused(tmp_path, value):
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="nf"):
        with pytest.raises(QexpError, match="metric 'm' must be a number"):
            R.log_metrics(m=value)
        R.log_metrics(m=1)  # ints, floats and numpy scalars are numbers
        import numpy as np
        R.log_metrics(f32=np.float32(0.25), i64=np.int64(3))
        assert R.get_recorder().list_metrics() == {"m": 1.0, "f32": 0.25, "i64": 3.0}
