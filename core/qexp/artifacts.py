"""The artifact store contract: where a run's files live.

Plugins register stores by URI scheme (``register_artifact_stores``); the file backend builds one for each
run with ``create_by_scheme("artifact_store", <the run's artifact URI>)``, so ``qexp.init(artifact_root=...)``
can keep the artifacts of file-tracked runs in any store a plugin serves.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ArtifactStore(Protocol):
    """Files under one root URI; paths are relative, '/'-separated and already validated.

    A store may also offer ``put_bytes(data, path)`` and ``open(path) -> binary file``; a backend uses them
    when present to skip a temp file or a second copy in memory.
    """

    root_uri: str

    def put(self, local_path: str, artifact_path: str | None) -> None:
        """Copy a local file or folder under ``artifact_path`` (keeping its base name)."""

    def get_bytes(self, path: str) -> bytes:
        """The bytes of one file; FileNotFoundError when missing."""

    def list(self, path: str | None, recursive: bool) -> list[str]:
        """Relative paths under ``path``: one level (files and folders) or every file."""

    def download(self, path: str, dst_dir: str) -> str:
        """Copy a file or folder into ``dst_dir``; return the local path of the copy."""

    def delete(self, path: str | None) -> None:
        """Remove the file or folder ``path``, or everything under the root (``None``: a deleted run's
        artifacts); a path that is not there is no error."""
