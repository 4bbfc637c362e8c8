"""The core CLI commands, through click's runner and through real subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import qexp
from qexp import R
from qexp.cli.main import get_cli


@pytest.fixture
def populated(tmp_path):
    store = str(tmp_path / "store")
    qexp.init(uri=store)
    ids = []
    for i, lr in enumerate(["0.1", "0.2", "0.3"]):
        with R.start(experiment_name="cli", recorder_name=f"run{i}"):
            R.log_params(lr=lr, fixed="same")
            R.log_metrics(IC=0.01 * (i + 1))
            ids.append(R.get_recorder().id)
    R.get_exp(experiment_name="to-delete")
    return store, ids


def invoke(*args):
    result = CliRunner().invoke(get_cli(), list(args), catch_exceptions=False)
    return result


def test_exp_list_and_delete(populated):
    store, _ = populated
    out = json.loads(invoke("exp", "list", "--uri", store, "--json").stdout)
    assert {e["name"] for e in out} == {"cli", "to-delete"}
    r = invoke("exp", "delete", "to-delete", "--uri", store, "--yes")
    assert r.exit_code == 0 and "deleted" in r.output
    assert {e["name"] for e in json.loads(invoke("exp", "list", "--uri", store, "--json").stdout)} == {"cli"}
    r = invoke("exp", "delete", "nope", "--uri", store, "--yes")
    assert r.exit_code != 0 and "nope" in r.output


def test_runs_list_filter_order_max(populated):
    store, ids = populated
    out = json.loads(invoke("runs", "list", "--uri", store, "--json", "--filter", "metrics.IC > 0.015",
                            "--order-by", "metrics.IC ASC").stdout)
    assert [r["run_id"] for r in out] == [ids[1], ids[2]]
    out = json.loads(invoke("runs", "list", "--uri", store, "--exp", "cli", "--max", "1", "--json").stdout)
    assert [r["run_id"] for r in out] == [ids[2]]
    table = invoke("runs", "list", "--uri", store).stdout
    assert ids[0][:8] in table and ids[0] not in table and "IC" in table  # short ids
    bad = invoke("runs", "list", "--uri", store, "--filter", "metrics.IC >> 1")
    assert bad.exit_code != 0 and "position 12" in bad.output


def test_runs_list_columns(tmp_path):
    store = str(tmp_path / "cols")
    qexp.init(uri=store)
    with R.start(experiment_name="cols"):
        R.log_metrics(**{"IC": 0.04, "Rank IC": 0.05, "1day.excess_return_with_cost.annualized_return": 0.2,
                         "l2.valid": 0.99, "zeta": 7.0})
    table = invoke("runs", "list", "--uri", store).output
    # headline metrics by default, the rest counted and reachable
    assert "Rank IC" in table and "excess" in table and "(cost)" in table and "0.04" in table
    assert "zeta" not in table and "l2.valid" not in table and "2 more metric(s)" in table
    picked = invoke("runs", "list", "--uri", store, "-m", "zeta", "--metric", "l2.valid").output
    assert "zeta" in picked and "0.99" in picked and "Rank IC" not in picked
    bad = invoke("runs", "list", "--uri", store, "-m", "nope")
    assert bad.exit_code != 0 and "'nope'" in bad.output and "l2.valid" in bad.output


def test_runs_show_compare_delete(populated):
    store, ids = populated
    shown = json.loads(invoke("runs", "show", ids[0], "--uri", store, "--json").stdout)
    assert shown["params"]["lr"] == "0.1" and shown["metrics"]["IC"] == pytest.approx(0.01)
    assert shown["info"]["status"] == "FINISHED"
    assert "lr" in invoke("runs", "show", ids[0], "--uri", store).output
    cmp = json.loads(invoke("runs", "compare", ids[0], ids[2], "--uri", store, "--json").stdout)
    assert cmp["params"] == {"lr": ["0.1", "0.3"]}  # equal params are hidden
    assert cmp["metrics"]["IC"] == pytest.approx([0.01, 0.03])
    full = json.loads(invoke("runs", "compare", ids[0], ids[2], "--uri", store, "--json", "--all-params").stdout)
    assert full["params"]["fixed"] == ["same", "same"]
    assert invoke("runs", "delete", ids[0], "--uri", store, "--yes").exit_code == 0
    missing = invoke("runs", "show", ids[0], "--uri", store)
    assert missing.exit_code != 0 and ids[0] in missing.output


def test_index_rebuild_command(populated):
    store, _ = populated
    r = invoke("index", "rebuild", "--uri", store)
    assert r.exit_code == 0 and "indexed 3 runs" in r.output


def test_uri_from_environment_and_module_entry(populated):
    store, ids = populated
    env = {**os.environ, "QEXP_URI": store}
    p = subprocess.run([sys.executable, "-m", "qexp", "runs", "list", "--json"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert {r["run_id"] for r in json.loads(p.stdout)} == set(ids)
    p = subprocess.run(["qexp", "--help"], capture_output=True, text=True, timeout=120,
                       env={**env, "PATH": os.path.dirname(sys.executable) + os.pathsep + env["PATH"]})
    assert p.returncode == 0 and "runs" in p.stdout
