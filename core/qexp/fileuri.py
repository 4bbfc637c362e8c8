"""Conversions between ``file:`` URIs and local paths."""
from __future__ import annotations

import os
from urllib.parse import unquote, urlparse
from urllib.request import pathname2url


def file_uri_to_path(uri: str) -> str:
    """``file:///a/b`` and ``file:/a/b`` -> ``/a/b``; ``file:rel`` -> ``rel``; a bare path is returned as is."""
    if not uri.startswith("file:"):
        return uri
    parsed = urlparse(uri)
    path = unquote(parsed.path)
    if parsed.netloc and parsed.netloc not in ("localhost",):
        # file://rel/dir: Qlib treats the netloc as a relative folder
        path = os.path.join(parsed.netloc, path.lstrip("/"))
    return path or "."


def path_to_file_uri(path: str) -> str:
    return "file://" + pathname2url(os.path.abspath(path))
