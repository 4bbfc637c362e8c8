"""The artifact store contract: where a run's files live. Backends pick one by the scheme of the run's
artifact URI (``registry.artifact_stores``), so a file-tracked run can keep artifacts elsewhere."""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ArtifactStore(Protocol):
    """Files under one root URI; paths are relative, '/'-separated and already validated."""

    root_uri: str

    def put(self, local_path: str, artifact_path: str | None) -> None:
        """Copy a local file or folder under ``artifact_path`` (keeping its base name)."""

    def get_bytes(self, path: str) -> bytes:
        """The bytes of one file; FileNotFoundError when missing."""

    def list(self, path: str | None, recursive: bool) -> list[str]:
        """Relative paths under ``path``: one level (files and folders) or every file."""

    def download(self, path: str, dst_dir: str) -> str:
        """Copy a file or folder into ``dst_dir``; return the local path of the copy."""
