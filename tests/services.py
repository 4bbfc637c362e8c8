"""Skip or fail when a service a test needs is missing.

On a developer's machine a test whose server (PostgreSQL, MariaDB, Redis) or installed example plugin is
missing is skipped. In CI (``QEXP_REQUIRE_SERVICES=1``, set by ``.ci/run``) it fails instead, so a service that
did not start cannot turn a suite green by skipping what it was meant to test. Only services use this: the S&P
sample data (``../shared`` may be absent) and the browser tests keep skipping.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

REQUIRE_ENV = "QEXP_REQUIRE_SERVICES"


def services_required() -> bool:
    """Whether ``QEXP_REQUIRE_SERVICES`` asks for missing services to fail the tests (``1``/``true``/``yes``)."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def service_missing(message: str) -> NoReturn:
    """Skip with ``message``, or fail with it when services are required."""
    if services_required():
        pytest.fail(f"{message} [{REQUIRE_ENV}=1: a missing service fails the test instead of skipping it]",
                    pytrace=False)
    pytest.skip(message)


def import_client(module: str, reason: str | None = None) -> ModuleType:
    """``pytest.importorskip(module)`` for a service's client library; a failure when services are required."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        service_missing(reason or f"could not import {module!r}: {exc}")
