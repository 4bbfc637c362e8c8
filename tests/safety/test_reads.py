"""Issue 13 item 3: read commands never create a store (probe 37: `qexp runs list` in the wrong folder or
with a mistyped --uri made an empty store and printed an empty table with exit status 0)."""
from __future__ import annotations

import json

import pytest

import qexp
from qexp import R
from qexp.ext import StoreNotFoundError, create_manager

from .conftest import cli, workflow_config, write_config

READS = [["runs", "list"], ["runs", "show", "0123abcd"], ["runs", "compare", "0123abcd", "4567abcd"],
         ["exp", "list"], ["index", "rebuild"], ["runs", "report", "0123abcd"],
         ["runs", "rerun-records", "0123abcd"], ["runs", "delete", "0123abcd", "--yes"], ["exp", "delete", "x", "--yes"],
         ["runs", "sync-wandb", "--dry-run"]]


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a[:2]))
def test_a_missing_store_is_an_error_naming_path_and_source(args, tmp_path):
    typo = tmp_path / "qexp_rusn"
    r = cli(*args, "--uri", str(typo))
    assert r.exit_code == 1, r.output
    assert str(typo) in r.output and "came from --uri" in r.output and "Traceback" not in r.output
    assert not typo.exists()


def test_the_source_of_the_uri_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QEXP_URI")
    r = cli("runs", "list")
    assert r.exit_code == 1 and str(tmp_path / "qexp_runs") in r.output and "the default ./qexp_runs" in r.output
    r = cli("exp", "list", env={"QEXP_URI": str(tmp_path / "elsewhere")})
    assert r.exit_code == 1 and "$QEXP_URI" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created in the working directory
    (tmp_path / "plain").mkdir()
    r = cli("runs", "list", "--uri", str(tmp_path / "plain"))
    assert r.exit_code == 1 and "not a qexp store" in r.output
    assert list((tmp_path / "plain").iterdir()) == []


def test_listings_name_the_store_on_stderr_and_json_stays_pure(tmp_path):
    store = tmp_path / "s"
    qexp.init(uri=str(store))
    with R.start(experiment_name="e"):
        R.log_metrics(IC=0.1)
    for args in (["runs", "list"], ["exp", "list"]):
        r = cli(*args, "--uri", str(store), "--json")
        assert r.exit_code == 0
        json.loads(r.stdout)  # stdout is JSON only
        assert r.stderr.count(f"store: {store} (from --uri)") == 1


def test_backends_tell_a_missing_store_without_creating_it(tmp_path):
    with pytest.raises(StoreNotFoundError):
        create_manager(str(tmp_path / "none"), create=False)
    with pytest.raises(StoreNotFoundError):
        create_manager(f"file://{tmp_path / 'none2'}", create=False)
    with pytest.raises(StoreNotFoundError):
        create_manager(f"wandb://proj?store={tmp_path / 'none3'}&mode=offline", create=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    m = create_manager(str(tmp_path / "made"))  # a write (qexp.init, qexp run) creates it as before
    assert (tmp_path / "made" / ".qexp").is_dir() and create_manager(m.uri, create=False).uri == m.uri


def test_dry_run_neither_creates_nor_needs_the_store(tiny_market, tmp_path):
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market))
    store = tmp_path / "runs"
    r = cli("run", str(cfg), "--dry-run", "--uri", str(store))
    assert r.exit_code == 0, r.output
    assert "config OK" in r.stderr and not store.exists()
    r = cli("run", str(cfg), "--dry-run", "--uri", "foo://x")
    assert r.exit_code == 1 and "Unknown backend URI scheme 'foo'" in r.output
