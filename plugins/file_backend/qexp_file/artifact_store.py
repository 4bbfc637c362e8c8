"""Artifacts as plain files in a local folder."""
from __future__ import annotations

import os
import shutil
from typing import BinaryIO

from qexp.ext import file_uri_to_path, path_to_file_uri

from .fsutil import atomic_write_bytes, atomic_writer


class LocalArtifactStore:
    """A folder of files; every copy goes through a temp name and a rename."""

    def __init__(self, root_uri: str):
        self.root_uri = root_uri
        self.root = file_uri_to_path(root_uri)

    def _abs(self, path: str | None) -> str:
        return os.path.join(self.root, *path.split("/")) if path else self.root

    def put(self, local_path: str, artifact_path: str | None) -> None:
        dest_dir = self._abs(artifact_path)
        _ensure_dir(dest_dir)
        base = os.path.basename(os.path.normpath(local_path))
        if os.path.isdir(local_path):
            for dirpath, _, files in os.walk(local_path):
                rel = os.path.relpath(dirpath, local_path)
                target = os.path.normpath(os.path.join(dest_dir, base, rel))
                os.makedirs(target, exist_ok=True)
                for f in files:
                    _copy_atomic(os.path.join(dirpath, f), os.path.join(target, f))
        else:
            _copy_atomic(local_path, os.path.join(dest_dir, base))

    def put_bytes(self, data: bytes, path: str) -> None:
        """Write ``data`` as the file ``path`` (temp name + rename)."""
        target = self._abs(path)
        _ensure_dir(os.path.dirname(target))
        atomic_write_bytes(target, data)

    def put_pickle(self, obj: object, path: str) -> None:
        """Pickle ``obj`` straight into the file ``path`` (temp name + rename), protocol 4 as Qlib."""
        import pickle
        target = self._abs(path)
        _ensure_dir(os.path.dirname(target))
        with atomic_writer(target) as f:
            pickle.dump(obj, f, protocol=4)

    def open(self, path: str) -> BinaryIO:
        p = self._abs(path)
        if os.path.isdir(p):
            raise IsADirectoryError(f"artifact {path!r} is a folder")
        return open(p, "rb")

    def put_link(self, blob: str, path: str) -> None:
        """Make ``path`` a hard link to the immutable file ``blob`` (a copy where links are unsupported).

        Creating a file costs far more than linking one on common file systems, and the content is shared.
        Replacing the artifact later renames over the link, so the blob itself is never modified."""
        target = self._abs(path)
        _ensure_dir(os.path.dirname(target))
        tmp = f"{target}.{os.getpid()}.link.tmp"
        try:
            os.link(blob, tmp)
        except OSError:
            with open(blob, "rb") as f:
                atomic_write_bytes(target, f.read())
            return
        os.replace(tmp, target)

    def get_bytes(self, path: str) -> bytes:
        p = self._abs(path)
        if os.path.isdir(p):
            raise IsADirectoryError(f"artifact {path!r} is a folder; list it with list_artifacts({path!r})")
        with open(p, "rb") as f:
            return f.read()

    def list(self, path: str | None, recursive: bool) -> list[str]:
        base = self._abs(path)
        if not os.path.isdir(base):
            return [path] if path and os.path.isfile(base) else []
        prefix = f"{path}/" if path else ""
        if not recursive:
            return sorted(prefix + e for e in os.listdir(base) if not e.startswith(".tmp-"))
        out = []
        for dirpath, _, files in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            for f in files:
                if not f.startswith(".tmp-"):
                    out.append(prefix + (f if rel == "." else f"{rel.replace(os.sep, '/')}/{f}"))
        return sorted(out)

    def download(self, path: str, dst_dir: str) -> str:
        src = self._abs(path)
        if not os.path.exists(src):
            raise FileNotFoundError(f"no artifact {path!r} under {self.root}")
        target = os.path.join(dst_dir, os.path.basename(os.path.normpath(src)))
        if os.path.isdir(src):
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, target)
        return target

    def delete(self, path: str | None) -> None:
        target = self._abs(path)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        else:
            try:
                os.unlink(target)
            except FileNotFoundError:
                pass

    def local_path(self, path: str | None = None) -> str:
        return self._abs(path)


def _ensure_dir(path: str) -> None:
    if not os.path.isdir(path):  # a failed mkdir is a slow syscall too
        os.makedirs(path, exist_ok=True)


def _copy_atomic(src: str, dst: str) -> None:
    with open(src, "rb") as fin, atomic_writer(dst) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def local_store_factory(uri: str) -> LocalArtifactStore:
    return LocalArtifactStore(uri)


__all__ = ["LocalArtifactStore", "local_store_factory", "path_to_file_uri"]
