"""``qexp run A.yaml B.yaml ... --executor URI``: one run per config, progress, one table, exit status."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

import qexp
from qexp import R
from qexp.multirun import MAX_EXIT_CODE, ConfigRun, exit_code

from .helpers import tiny_config, write_config


def _run(*args: str):
    from qexp.cli.main import get_cli
    return CliRunner().invoke(get_cli(), ["run", *args], catch_exceptions=False)


@pytest.mark.slow
def test_configs_on_a_process_pool_and_failures_counted(tiny_market, tmp_path):
    good_a = write_config(tmp_path / "a.yaml", tiny_config(tiny_market, num_leaves=7))
    good_b = write_config(tmp_path / "b.yaml", tiny_config(tiny_market, num_leaves=15))
    broken = write_config(tmp_path / "broken.yaml", tiny_config(tiny_market, loss="huber"))
    store = tmp_path / "store"
    r = _run(str(good_a), str(broken), str(tmp_path / "missing.yaml"), str(good_b), "--executor", "process://2",
             "--uri", str(store), "--experiment-name", "many")
    assert r.exit_code == 2, r.output
    out = r.output
    assert "missing.yaml: failed: config file" in out            # progress lines (not a terminal)
    assert "a.yaml: running" in out and "b.yaml: finished (run " in out
    assert "4 configs: 2 finished, 2 failed" in out and "Rank IC" in out
    assert "unknown loss 'huber'" in out
    qexp.init(uri=str(store))
    df = R.search_records([R.get_exp(experiment_name="many", create=False).id])
    assert sorted(df["status"]) == ["FAILED", "FINISHED", "FINISHED"]  # the missing file made no run


def test_several_configs_default_to_local_one_after_another(tiny_market, tmp_path):
    cfgs = [write_config(tmp_path / f"c{i}.yaml", tiny_config(tiny_market, num_leaves=4 + i)) for i in range(2)]
    store = tmp_path / "store"
    r = _run(*map(str, cfgs), "--uri", str(store), "--max-parallel", "1")
    assert r.exit_code == 0, r.output
    assert "2 configs: 2 finished, 0 failed" in r.output
    qexp.init(uri=str(store))
    assert len(R.search_records([R.get_exp(experiment_name="tiny", create=False).id])) == 2


def test_exit_status_is_the_number_that_did_not_finish_capped():
    runs = [ConfigRun(f"c{i}", None, state="failed") for i in range(150)]  # type: ignore[arg-type]
    assert exit_code(runs) == MAX_EXIT_CODE == 100
    assert exit_code([ConfigRun("a", None, state="finished")]) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("uri", ["process://0", "process://x"])
def test_a_bad_executor_uri_is_one_error_line(tiny_market, tmp_path, uri):
    cfg = write_config(tmp_path / "a.yaml", tiny_config(tiny_market))
    from qexp.cli.main import get_cli
    r = CliRunner().invoke(get_cli(), ["run", str(cfg), "--executor", uri, "--uri", str(tmp_path / "s")])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and uri in r.output, r.output
