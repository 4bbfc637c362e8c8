"""A run's artifacts for the browser: the tree, checked paths, raw bytes and previews.

Paths are checked before anything is read: no ``..``, no absolute path, and for artifacts on the local
disk, nothing whose real path (symlinks resolved) leaves the run's artifact folder. Pickles are shown
through qexp's restricted unpickler only: data containers and the reconstructor functions pandas/numpy/pyarrow
pickles need, so a pickle can neither run code nor call a library function that reads or writes files
(``pandas.read_pickle``, ``DataFrame.to_pickle`` ...).
"""
from __future__ import annotations

import io
import json
import os
import posixpath
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from qexp.ext import ArtifactPathError, RestrictedUnpickler, clean_artifact_path, local_path

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
TEXT_EXT = {".txt", ".log", ".md", ".yaml", ".yml", ".json", ".csv", ".tsv", ".py", ".cfg", ".ini", ".toml",
            ".diff", ".patch", ".sh", ".html", ".svg", ".xml", ".rst"}
PREVIEW_MAX_BYTES = 64 << 20   # larger files are offered for download only
TEXT_MAX_CHARS = 200_000
HEAD_ROWS = 20


def unpickle(data: bytes) -> Any:
    return RestrictedUnpickler(io.BytesIO(data)).load()


def stamp(recorder: Any, paths: list[str]) -> Any:
    """What changes when one of the artifacts ``paths`` changes: their mtimes and sizes when the run's artifacts
    are on the local disk, else the run's status and end time (a finished run's artifacts stay as they are)."""
    root = artifact_root(recorder)
    if root is None:
        return ("run", recorder.status, getattr(recorder, "end_time", None))
    out: list[tuple[str, int | None, int | None]] = []
    for p in paths:
        try:
            st = os.stat(os.path.join(root, *p.split("/")))
            out.append((p, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((p, None, None))
    return tuple(out)


class DerivedCache:
    """Values computed from a run's artifacts (its config as YAML, its backtest curves), kept by run and name
    while the artifacts' :func:`stamp` is the same, so a page view does not read and unpickle them again."""

    def __init__(self, max_entries: int = 256):
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, str], tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, recorder: Any, name: str, paths: list[str], compute: Callable[[], Any]) -> Any:
        """``compute()``'s value for this run's artifacts ``paths``, again only when one of them changed."""
        return self.get_by((str(recorder.id), name), stamp(recorder, paths), compute)

    def get_by(self, key: tuple[str, str], current: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``'s value under ``key``, again only when ``current`` (what it depends on) changed."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == current:
                self._items.move_to_end(key)
                return hit[1]
        value = compute()
        with self._lock:
            self._items[key] = (current, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return value


def check_path(recorder: Any, path: str) -> str:
    """The cleaned artifact path, or :class:`ArtifactPathError` when it is empty, absolute, climbs out
    with ``..`` or (on local disk) resolves outside the run's artifact folder."""
    clean = clean_artifact_path(path)
    if clean is None:
        raise ArtifactPathError("artifact path is empty")
    root = artifact_root(recorder)
    if root is not None:
        real_root = os.path.realpath(root)
        real = os.path.realpath(os.path.join(root, *clean.split("/")))
        if real != real_root and not real.startswith(real_root + os.sep):
            raise ArtifactPathError(f"artifact path {path!r} leaves the run's artifact folder (a symlink?)")
    return clean


def artifact_root(recorder: Any) -> str | None:
    """The run's artifact folder when it is on the local disk."""
    try:
        return local_path(recorder.get_artifact_uri())
    except Exception:  # a store without artifact URIs
        return None


def read(recorder: Any, path: str) -> bytes:
    clean = check_path(recorder, path)
    return recorder.read_artifact(clean)


def size_of(recorder: Any, clean: str) -> int | None:
    root = artifact_root(recorder)
    if root is None:
        return None
    try:
        return os.path.getsize(os.path.join(root, *clean.split("/")))
    except OSError:
        return None


@dataclass
class Node:
    name: str
    path: str
    children: dict[str, Node] = field(default_factory=dict)

    @property
    def is_dir(self) -> bool:
        return bool(self.children)

    def sorted_children(self) -> list[Node]:
        return sorted(self.children.values(), key=lambda n: (not n.is_dir, n.name.lower()))


def tree(paths: list[str]) -> Node:
    """Nest ``a/b/c`` style paths into folders."""
    root = Node("", "")
    for p in sorted(paths):
        node = root
        parts = p.split("/")
        for i, part in enumerate(parts):
            node = node.children.setdefault(part, Node(part, "/".join(parts[: i + 1])))
    return root


def content_type(path: str) -> str | None:
    return IMAGE_TYPES.get(posixpath.splitext(path)[1].lower())


@dataclass
class Preview:
    kind: str                       # image | text | json | table | object | refused | binary | too_large
    text: str = ""
    html: str = ""
    note: str = ""
    shape: str = ""


def preview(recorder: Any, path: str) -> Preview:
    """What the artifact page shows for ``path``."""
    clean = check_path(recorder, path)
    if content_type(clean):
        return Preview("image")
    size = size_of(recorder, clean)
    if size is not None and size > PREVIEW_MAX_BYTES:
        return Preview("too_large", note=f"{size / 1e6:.1f} MB: too large to preview; download it")
    data = recorder.read_artifact(clean)
    return preview_bytes(clean, data)


def preview_bytes(path: str, data: bytes) -> Preview:
    ext = posixpath.splitext(path)[1].lower()
    if data[:1] == b"\x80" and ext not in TEXT_EXT:
        return _pickle_preview(data)
    text = _as_text(data, ext)
    if text is None:
        return Preview("binary", note=f"{len(data)} bytes of binary data")
    if ext == ".json":
        try:
            return Preview("json", text=json.dumps(json.loads(text), indent=2)[:TEXT_MAX_CHARS])
        except ValueError:
            pass
    note = f"first {TEXT_MAX_CHARS} characters" if len(text) > TEXT_MAX_CHARS else ""
    return Preview("text", text=text[:TEXT_MAX_CHARS], note=note)


def _as_text(data: bytes, ext: str) -> str | None:
    head = data[:8192]
    if ext not in TEXT_EXT and b"\x00" in head:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1") if ext in TEXT_EXT else None


def _pickle_preview(data: bytes) -> Preview:
    try:
        obj = unpickle(data)
    except Exception as exc:
        return Preview("refused", note=f"not shown: {exc}")
    return describe(obj)


def describe(obj: Any) -> Preview:
    """A table for frames, series and arrays; YAML or text for other data."""
    import numpy as np
    import pandas as pd
    if isinstance(obj, pd.Series):
        obj = obj.to_frame()
    if isinstance(obj, pd.DataFrame):
        return Preview("table", html=obj.head(HEAD_ROWS).to_html(escape=True, border=0, classes="data"),
                       shape=f"{type(obj).__name__} {obj.shape[0]} rows x {obj.shape[1]} columns",
                       note=f"first {min(HEAD_ROWS, len(obj))} rows")
    if isinstance(obj, np.ndarray):
        frame = pd.DataFrame(obj.reshape(len(obj), -1) if obj.ndim else obj.reshape(1, 1))
        return Preview("table", html=frame.head(HEAD_ROWS).to_html(escape=True, border=0, classes="data"),
                       shape=f"ndarray {obj.shape} {obj.dtype}", note=f"first {min(HEAD_ROWS, len(frame))} rows")
    return Preview("object", text=to_yaml(obj)[:TEXT_MAX_CHARS], shape=type(obj).__name__)


def to_yaml(obj: Any) -> str:
    import yaml
    try:
        return yaml.safe_dump(obj, sort_keys=False, default_flow_style=None, allow_unicode=True)
    except yaml.YAMLError:
        import pprint
        return pprint.pformat(obj, width=110)
