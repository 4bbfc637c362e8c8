"""The default provider when ``qexp.init()`` gets no ``provider_uri``: the built-in synthetic market,
generated on first data access (tracking-only users never pay for it) into a cache folder.

Cache: ``$QEXP_CACHE_DIR`` or ``~/.cache/qexp``, folder ``synth-v<generator>-n<N>-<start>-<end>-seed<S>``.
Generation happens under a file lock, into a temp folder renamed at the end, so concurrent processes
generate it once and never see a half-written folder.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from filelock import FileLock

from .synth import SynthParams, write_synth


def cache_dir() -> Path:
    return Path(os.environ.get("QEXP_CACHE_DIR") or Path.home() / ".cache" / "qexp").expanduser()


def ensure_synth(params: SynthParams | None = None) -> Path:
    """Path of the cached synthetic market for ``params``, generating it once if absent."""
    params = params or SynthParams()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / params.folder_name()
    if (target / "calendars" / "day.txt").is_file():
        return target
    with FileLock(str(root / f".{params.folder_name()}.lock")):
        if not (target / "calendars" / "day.txt").is_file():
            write_synth(target, params)
    return target


class LazySynthProvider:
    """A :class:`~qexp_data.provider.LocalProvider` over the synthetic market, created on first use."""

    def __init__(self, params: SynthParams | None = None):
        self.params = params or SynthParams()
        self.uri = f"synth:{self.params.folder_name()}"
        self._inner: Any = None
        self._lock = threading.Lock()

    @property
    def generated(self) -> bool:
        return self._inner is not None

    def _provider(self) -> Any:
        if self._inner is None:
            with self._lock:
                if self._inner is None:
                    from .provider import LocalProvider
                    self._inner = LocalProvider(str(ensure_synth(self.params)))
        return self._inner

    def calendar(self, *args: Any, **kwargs: Any):
        return self._provider().calendar(*args, **kwargs)

    def list_instruments(self, *args: Any, **kwargs: Any):
        return self._provider().list_instruments(*args, **kwargs)

    def features(self, *args: Any, **kwargs: Any):
        return self._provider().features(*args, **kwargs)

    @property
    def root(self) -> Path:
        return self._provider().root

    def __repr__(self) -> str:
        return f"LazySynthProvider({self.params})"
