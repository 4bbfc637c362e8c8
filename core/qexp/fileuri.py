"""Conversions between ``file:`` URIs and local paths (kept for old imports; the code lives in :mod:`qexp.uri`)."""
from __future__ import annotations

from .uri import file_uri_to_path, path_to_file_uri

__all__ = ["file_uri_to_path", "path_to_file_uri"]
