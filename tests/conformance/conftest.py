from __future__ import annotations

import pytest

from .backends import BACKENDS


@pytest.fixture(params=sorted(BACKENDS))
def backend_uri(request, tmp_path):
    """A fresh store URI of each registered backend."""
    return BACKENDS[request.param](tmp_path, request)


@pytest.fixture
def store(backend_uri):
    """qexp initialised on a fresh store of each backend; yields the URI."""
    import qexp
    qexp.init(uri=backend_uri)
    yield backend_uri
