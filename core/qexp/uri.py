"""URIs on the ground floor: the default store, scheme parsing and ``file:`` <-> path conversion.

Every extension point (backends, executors, task stores, cache stores, data providers) is chosen by the
scheme of a URI, so this module imports nothing else from qexp.
"""
from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlparse
from urllib.request import pathname2url

DEFAULT_URI = "./qexp_runs"

# Schemes whose meaning is fixed even though they contain '+': the whole name is the scheme.
COMPOUND_SCHEMES = frozenset({"mlflow+file", "dask+local", "dask+file"})

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def default_uri() -> str:
    """``QEXP_URI`` if set, else ``./qexp_runs`` (resolved to an absolute path at init)."""
    return os.environ.get("QEXP_URI") or DEFAULT_URI


def uri_scheme(uri: str | os.PathLike) -> str:
    """The scheme of ``uri``; ``""`` for a bare path (including ``C:\\`` drive paths).

    A dialect suffix selects the base scheme (``postgresql+psycopg2://`` -> ``postgresql``), except for the
    compound schemes qexp names itself (``mlflow+file``, ``dask+local``).
    """
    uri = os.fspath(uri)
    if _WINDOWS_DRIVE.match(uri):
        return ""
    if uri.startswith("databricks"):
        return "databricks"
    m = _SCHEME.match(uri)
    if not m:
        return ""
    scheme = m.group(1).lower()
    if scheme not in COMPOUND_SCHEMES and "+" in scheme:
        return scheme.split("+", 1)[0]
    return scheme


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
    """An absolute ``file://`` URI for a local path."""
    return "file://" + pathname2url(os.path.abspath(path))


def resolve_uri(uri: str | os.PathLike | None) -> str:
    """Make a bare or ``file:`` path absolute, so later changes of the working directory do not move the
    store (Qlib's CWD-relative lock path bug). ``None`` means :func:`default_uri`."""
    uri = os.fspath(uri) if uri is not None else default_uri()
    scheme = uri_scheme(uri)
    if scheme == "":
        return os.path.abspath(os.path.expanduser(uri))
    if scheme == "file":
        return path_to_file_uri(os.path.abspath(os.path.expanduser(file_uri_to_path(uri))))
    return uri


def local_path(uri: str) -> str | None:
    """The local folder of a bare-path or ``file:`` URI; None for any other scheme."""
    scheme = uri_scheme(uri)
    if scheme == "":
        return os.path.abspath(os.path.expanduser(uri))
    if scheme == "file":
        return os.path.abspath(os.path.expanduser(file_uri_to_path(uri)))
    return None


_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|secret|api_key)=)[^&#]*")


def mask_uri(uri: str | os.PathLike) -> str:
    """``uri`` fit to print or log: a password in it becomes ``***`` (``postgresql://u:***@host/db``,
    ``redis://:***@host:6379/0``, ``...?password=***``). Every message and tag that shows a URI goes through
    this one function."""
    text = os.fspath(uri)
    head, sep, rest = text.partition("://")
    if sep and "@" in rest:
        # the last '@' ends the credentials: an unencoded '/' or '@' in a password is still masked whole
        cred, at, host = rest.rpartition("@")
        if ":" in cred and "/" not in cred.split(":", 1)[0]:
            text = f"{head}://{cred.split(':', 1)[0]}:***{at}{host}"
    return _SECRET_QUERY.sub(r"\1***", text)
