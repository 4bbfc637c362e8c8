"""Old home of ``qexp.init`` and URI helpers, kept so existing imports work.

The code now lives in :mod:`qexp.uri` (URIs), :mod:`qexp.backends` (the manager factory) and
:mod:`qexp.session` (``init``); plugins import these names from :mod:`qexp.ext`.
"""
from __future__ import annotations

from .backends import create_manager
from .session import clear_mirrors, get_settings, init
from .uri import DEFAULT_URI, default_uri, resolve_uri

__all__ = ["DEFAULT_URI", "clear_mirrors", "create_manager", "default_uri", "get_settings", "init", "resolve_uri"]
