"""The backends the conformance suite runs against. A backend plugin adds an entry here; the tests in
test_backend_conformance.py run unchanged on every entry.

Each entry maps an id to a function ``(tmp_path, request) -> uri`` that returns a fresh, empty store.
It may call ``pytest.skip`` with a reason when its service or extra is unavailable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

BackendFactory = Callable[[Path, pytest.FixtureRequest], str]


def file_store(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return str(tmp_path / "store")


def file_uri_store(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return "file://" + str(tmp_path / "store_uri")


BACKENDS: dict[str, BackendFactory] = {
    "file": file_store,
    "file-uri": file_uri_store,
}
