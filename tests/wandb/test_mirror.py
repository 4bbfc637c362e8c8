"""The wandb:// mirror on top of other backends: qexp.init(uri=..., mirrors=["wandb://..."])."""
from __future__ import annotations

import pytest

pytest.importorskip("wandb")

import qexp  # noqa: E402
from qexp import R  # noqa: E402
from qexp.exceptions import ConfigError  # noqa: E402
from qexp_wandb.reader import wait_for_offline_run  # noqa: E402

from .conftest import offline_run, run_folders  # noqa: E402


@pytest.fixture(autouse=True)
def _drop_mirrors():
    yield
    from qexp.session import _install_mirrors
    _install_mirrors([])  # the mirror plugins must not outlive the test


def test_mirror_on_the_file_backend(tmp_path, wandb_env):
    qexp.init(uri=str(tmp_path / "files"), mirrors=["wandb://mirror-proj?mode=offline"])
    with R.start(experiment_name="mirrored", recorder_name="r1"):
        R.log_params(lr=0.01)
        R.log_metrics(step=0, ic=0.02)
        R.log_metrics(step=1, ic=0.03)
        R.set_tags(model="lgb")
        rec = R.get_recorder()
    assert type(R.exp_manager).__name__ == "FileExpManager"
    run = offline_run(rec)
    assert run.project == "mirror-proj" and run.group == "mirrored"  # experiment name found in the store
    assert run.config["lr"] == 0.01 and run.config["qexp.run_id"] == rec.id and run.tags == ["model=lgb"]
    assert run.metric_history("ic") == [(0, 0.02), (1, 0.03)] and run.exit_code == 0
    assert rec.list_tags()["wandb.run_id"] == run.run_id
    assert len(run_folders(wandb_env)) == 1


def test_backend_and_mirror_on_the_same_project_mirror_once(tmp_path, wandb_env):
    qexp.init(uri=f"wandb://same?mode=offline&store={tmp_path / 'local'}", mirrors=["wandb://same?mode=offline"])
    with R.start(experiment_name="once"):
        R.log_metrics(step=0, x=1.0)
        rec = R.get_recorder()
    assert len(run_folders(wandb_env)) == 1
    assert offline_run(rec).metric_history("x") == [(0, 1.0)]


def test_backend_and_mirror_on_another_project_write_both(tmp_path, wandb_env):
    qexp.init(uri=f"wandb://main-proj?mode=offline&store={tmp_path / 'local'}",
              mirrors=["wandb://copy-proj?mode=offline"])
    with R.start(experiment_name="twice"):
        R.log_metrics(step=0, x=1.0)
    runs = [wait_for_offline_run(str(f)) for f in run_folders(wandb_env)]
    assert sorted(r.project for r in runs) == ["copy-proj", "main-proj"]
    assert all(r.metric_history("x") == [(0, 1.0)] and r.exit_code == 0 for r in runs)


def test_mirror_uri_with_a_store_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="store="):
        qexp.init(uri=str(tmp_path / "files"), mirrors=[f"wandb://p?store={tmp_path}"])
