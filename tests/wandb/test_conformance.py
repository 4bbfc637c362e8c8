"""The shipped conformance suite on the wandb:// backend, offline over a local file store (the autouse
``wandb_env`` fixture puts every W&B folder under tmp_path)."""
from __future__ import annotations

import pytest

from qexp.testing import BackendConformance


class TestWandbBackend(BackendConformance):
    @pytest.fixture
    def store_uri(self, request: pytest.FixtureRequest, tmp_path) -> str:
        pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install \"qexp[wandb]\")")
        from qexp_wandb.mirror import finish_all_mirrors
        request.addfinalizer(finish_all_mirrors)  # W&B runs reopened by writes to finished recorders
        return f"wandb://qexp-test?mode=offline&store={tmp_path / 'local'}"
