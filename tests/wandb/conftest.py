"""W&B tests run offline, with every W&B folder and credential file under tmp_path."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline W&B with no credentials; returns the W&B root folder (``$WANDB_DIR``)."""
    for var, sub in (("WANDB_DIR", "wandb-root"), ("WANDB_CACHE_DIR", "wandb-cache"),
                     ("WANDB_DATA_DIR", "wandb-data"), ("WANDB_CONFIG_DIR", "wandb-config"),
                     ("WANDB_ARTIFACT_DIR", "wandb-artifacts")):
        (tmp_path / sub).mkdir(exist_ok=True)
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # a ~/.netrc login must not leak in
    yield tmp_path / "wandb-root"
    if "qexp_wandb.mirror" in __import__("sys").modules:
        from qexp_wandb.mirror import finish_all_mirrors
        finish_all_mirrors()


@pytest.fixture
def wandb_uri(tmp_path: Path) -> str:
    """A wandb:// backend URI over a fresh local store."""
    pytest.importorskip("wandb")
    return f"wandb://qexp-test?mode=offline&store={tmp_path / 'local'}"


def offline_run(recorder):
    """The W&B run of a qexp recorder, read back from its offline folder (tag ``wandb.dir``)."""
    from qexp_wandb.reader import wait_for_offline_run
    folder = recorder.list_tags()["wandb.dir"]
    assert os.path.isdir(folder), folder
    return wait_for_offline_run(folder)


def run_folders(root: Path) -> list[Path]:
    return sorted((root / "wandb").glob("offline-run-*")) if (root / "wandb").is_dir() else []
