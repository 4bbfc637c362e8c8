"""What a run records about its context: command line, host, versions, git (no shell, silent outside git)."""
from __future__ import annotations

import os
import subprocess
import sys

import qexp
from qexp import R
from qexp.autolog import git_state


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_git_state_logged_in_a_repo(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "init")
    (repo / "tracked.py").write_text("x = 1\n")
    git(repo, "add", "tracked.py")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "add")
    (repo / "tracked.py").write_text("x = 2\n")
    monkeypatch.chdir(repo)
    git_state.cache_clear()
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="git"):
        rec = R.get_recorder()
    tags = rec.list_tags()
    assert len(tags["mlflow.source.git.commit"]) == 40 and tags["git.branch"] == "main"
    assert tags["git.dirty"] == "True"
    assert tags["hostname"] and tags["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert tags["qexp_version"] == qexp.__version__ and "cmd-sys.argv" in tags
    assert "x = 2" in rec.read_artifact("code_diff.txt").decode()
    assert "tracked.py" in rec.read_artifact("code_status.txt").decode()


def test_silent_outside_git(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    git_state.cache_clear()
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="nogit"):
        rec = R.get_recorder()
    assert "mlflow.source.git.commit" not in rec.list_tags()
    assert not [a for a in rec.list_artifacts() if a.startswith("code_")]
    # nothing but qexp's own log lines (Qlib's format, on by default since the logging work): no git noise
    err = capfd.readouterr().err.splitlines()
    assert [line for line in err if not line.startswith(f"[{os.getpid()}:")] == [], err


def test_autolog_can_be_turned_off(tmp_path):
    qexp.init(uri=str(tmp_path / "s"), autolog=False)
    with R.start(experiment_name="quiet"):
        rec = R.get_recorder()
    assert "hostname" not in rec.list_tags()
