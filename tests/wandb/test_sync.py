"""`qexp runs sync-wandb`: finding offline W&B runs through the qexp tags, and what it says without login."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

pytest.importorskip("wandb")

import qexp  # noqa: E402
from qexp import R  # noqa: E402
from qexp.cli.main import get_cli  # noqa: E402


@pytest.fixture
def two_runs(wandb_uri):
    """Two finished runs in two experiments, mirrored offline; returns {experiment: recorder}."""
    qexp.init(uri=wandb_uri)
    recs = {}
    for exp in ("sync-a", "sync-b"):
        with R.start(experiment_name=exp):
            R.log_metrics(step=0, x=1.0)
            recs[exp] = R.get_recorder()
    return recs


def invoke(*args: str):
    return CliRunner().invoke(get_cli(), ["runs", "sync-wandb", *args], catch_exceptions=False)


def test_command_is_listed_under_runs():
    result = CliRunner().invoke(get_cli(), ["runs", "--help"])
    assert result.exit_code == 0 and "sync-wandb" in result.output


def test_without_credentials_it_lists_the_folders_and_says_what_is_needed(two_runs, wandb_uri):
    result = invoke("--uri", wandb_uri)
    assert result.exit_code == 1
    out = result.output
    assert "2 qexp run(s) with offline W&B runs" in out
    for rec in two_runs.values():
        assert rec.id in out and rec.list_tags()["wandb.dir"] in out
    assert "no W&B credentials" in out and "wandb login" in out and "WANDB_API_KEY" in out
    assert "-m wandb sync" in out
    assert all("wandb.synced" not in r.list_tags() for r in two_runs.values())


def test_dry_run_and_experiment_filter(two_runs, wandb_uri):
    result = invoke("--uri", wandb_uri, "--exp", "sync-b", "--dry-run")
    assert result.exit_code == 0
    assert two_runs["sync-b"].id in result.output and two_runs["sync-a"].id not in result.output
    result = invoke("--uri", wandb_uri, "--exp", "missing-exp")
    assert result.exit_code == 1 and "missing-exp" in result.output


def test_with_credentials_it_runs_wandb_sync_and_marks_the_runs(two_runs, wandb_uri, monkeypatch):
    import qexp_wandb.sync as sync
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="done", stderr="")

    monkeypatch.setattr(sync, "run_command", fake_run)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    local_store = wandb_uri.split("store=")[1]
    result = invoke("--uri", local_store)  # the local store itself works as well as the wandb:// URI
    assert result.exit_code == 0, result.output
    assert sorted(c[-1] for c in calls) == sorted(r.list_tags()["wandb.dir"] for r in two_runs.values())
    assert all(c[:4] == [sys.executable, "-m", "wandb", "sync"] for c in calls)
    assert all("wandb.synced" in r.list_tags() for r in two_runs.values())
    assert "no offline W&B runs to sync" in invoke("--uri", wandb_uri).output  # synced runs are skipped
    calls.clear()
    assert invoke("--uri", wandb_uri, "--all").exit_code == 0 and len(calls) == 2


def test_a_failed_sync_is_an_error_and_the_run_stays_unsynced(two_runs, wandb_uri, monkeypatch):
    import qexp_wandb.sync as sync
    monkeypatch.setattr(sync, "run_command",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, stdout="", stderr="401 unauthorized"))
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    result = invoke("--uri", wandb_uri, "--exp", "sync-a")
    assert result.exit_code == 1 and "401 unauthorized" in result.output and "1 of 1 run(s) failed" in result.output
    assert "wandb.synced" not in two_runs["sync-a"].list_tags()


def test_a_deleted_folder_is_reported_not_synced(two_runs, wandb_uri):
    shutil.rmtree(two_runs["sync-a"].list_tags()["wandb.dir"])
    result = invoke("--uri", wandb_uri, "--dry-run")
    assert result.exit_code == 0
    assert "offline folder is gone" in result.output and "1 qexp run(s) with offline W&B runs" in result.output


def test_nothing_to_sync(tmp_path):
    from qexp.ext import create_manager
    create_manager(str(tmp_path / "empty"))  # an existing store without W&B runs
    result = invoke("--uri", str(tmp_path / "empty"))
    assert result.exit_code == 0 and "no offline W&B runs to sync" in result.output


def test_a_missing_store_is_an_error_not_a_new_store(tmp_path):
    result = invoke("--uri", str(tmp_path / "TYPO"), "--dry-run")
    assert result.exit_code == 1 and "came from --uri" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "TYPO").exists()
