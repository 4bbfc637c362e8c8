"""The shipped conformance suite on the built-in file backend, as a bare path and as a file: URI."""
from __future__ import annotations

import pytest

from qexp.testing import BackendConformance


class TestFileBackend(BackendConformance):
    @pytest.fixture(params=["path", "file-uri"])
    def store_uri(self, request: pytest.FixtureRequest, tmp_path) -> str:
        path = tmp_path / "store"
        return str(path) if request.param == "path" else f"file://{path}"
