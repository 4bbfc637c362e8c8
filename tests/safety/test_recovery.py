"""Issue 13 item 10: recovery (probe 51: a corrupt experiment meta.json hid all its runs after `qexp index
rebuild`, which said "indexed 0 runs" and exited 0; probe 54: a backtest that failed after a long fit needed a
new fit). The dataset cache cap and `qexp cache` are issue 17's."""
from __future__ import annotations

import hashlib
import json

import pytest

import qexp
from qexp import R

from .conftest import cli, workflow_config, write_config


@pytest.fixture
def broken_store(tmp_path):
    store = tmp_path / "s"
    qexp.init(uri=str(store))
    ids = []
    for _ in range(2):
        with R.start(experiment_name="baseline"):
            R.log_metrics(IC=0.1)
            ids.append(R.get_recorder().id)
    exp_id = R.get_exp(experiment_name="baseline", create=False).id
    return store, exp_id, ids


def test_rebuild_reports_a_corrupt_experiment_and_repair_brings_its_runs_back(broken_store):
    store, exp_id, ids = broken_store
    meta = store / exp_id / "meta.json"
    meta.write_text("xx")
    r = cli("index", "rebuild", "--uri", str(store))
    assert r.exit_code == 1
    assert str(store / exp_id) in r.output and "--repair" in r.output and "indexed 0 runs" in r.output
    assert json.loads(cli("runs", "list", "--uri", str(store), "--json").stdout) == []
    r = cli("index", "rebuild", "--uri", str(store), "--repair")
    assert r.exit_code == 0, r.output
    assert "indexed 2 runs" in r.output and f"repaired {meta}" in r.output and "recovered-1" in r.output
    listed = json.loads(cli("runs", "list", "--uri", str(store), "--json").stdout)
    assert sorted(x["run_id"] for x in listed) == sorted(ids)
    assert {x["experiment_name"] for x in listed} == {f"recovered-{exp_id}"}
    kept = list((store / exp_id).glob("meta.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == "xx"  # the broken file is kept, never deleted


def test_a_corrupt_run_meta_gets_a_run_hint_and_repair_brings_the_run_back(broken_store):
    store, exp_id, ids = broken_store
    run_meta = store / exp_id / ids[0] / "meta.json"
    good = json.loads(run_meta.read_text())
    run_meta.write_text('{"run_id": "' + ids[0] + '", "run_name": "mlflow_recorder", "status": "FINI')
    r = cli("index", "rebuild", "--uri", str(store))
    assert r.exit_code == 1 and "indexed 1 runs" in r.output and str(run_meta) in r.output
    assert "rewrites unreadable run metas from the runs' own files" in r.output
    assert "experiment metas" not in r.output, r.output        # the hint fits the problem
    r = cli("index", "rebuild", "--uri", str(store), "--repair")
    assert r.exit_code == 0, r.output
    assert "indexed 2 runs" in r.output and f"repaired {run_meta}" in r.output
    rec = R.get_recorder(recorder_id=ids[0], experiment_name="baseline")
    assert rec.status == "FAILED" and rec.name == good["run_name"] and rec.list_metrics() == {"IC": 0.1}
    assert "meta.json was unreadable" in rec.list_tags()["qexp.failure_reason"]
    assert rec.info["start_time"] is not None
    kept = list(run_meta.parent.glob("meta.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text().endswith('"FINI')


def test_repair_salvages_the_name_when_it_survives(broken_store):
    store, exp_id, _ = broken_store
    (store / exp_id / "meta.json").write_text('{"creation_time": 1, "id": "1", "lifecycle": "active", "name": "baseline", "x')
    assert cli("index", "rebuild", "--uri", str(store), "--repair").exit_code == 0
    assert [e["name"] for e in json.loads(cli("exp", "list", "--uri", str(store), "--json").stdout)] == ["baseline"]


def test_rerun_records_on_a_failed_run_needs_no_new_fit(tiny_market, tmp_path, monkeypatch):
    from qexp_records.port_ana_record import PortAnaRecord
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market))
    store = tmp_path / "runs"
    real = PortAnaRecord._generate

    def broken(self, **kwargs):
        raise RuntimeError("the backtest broke after the fit")
    monkeypatch.setattr(PortAnaRecord, "_generate", broken)
    r = cli("run", str(cfg), "--uri", str(store))
    assert r.exit_code == 1 and "the backtest broke" in r.output
    qexp.init(uri=str(store))
    rec = R.get_recorder(recorder_id=R.search_records().run_id.iloc[0])
    assert rec.status == "FAILED" and "1day.excess_return_with_cost.mean" not in rec.list_metrics()
    model_bytes = hashlib.sha256(rec.read_artifact("params.pkl")).hexdigest()
    monkeypatch.setattr(PortAnaRecord, "_generate", real)
    r = cli("runs", "rerun-records", rec.id[:8], "--record", "PortAnaRecord", "--uri", str(store))
    assert r.exit_code == 0, r.output
    assert f"re-ran PortAnaRecord on run {rec.id} (FINISHED)" in r.stdout
    rec = R.get_recorder(recorder_id=rec.id)
    assert rec.status == "FINISHED" and "1day.excess_return_with_cost.mean" in rec.list_metrics()
    assert hashlib.sha256(rec.read_artifact("params.pkl")).hexdigest() == model_bytes  # the same model
    tags = rec.list_tags()
    assert tags["qexp.records_rerun"] == "PortAnaRecord" and "qexp.failure_reason" not in tags
    r = cli("runs", "rerun-records", rec.id[:8], "--record", "NoSuchRecord", "--uri", str(store))
    assert r.exit_code == 1 and "SignalRecord, SigAnaRecord, PortAnaRecord" in r.output
