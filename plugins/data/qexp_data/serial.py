"""``Serializable``: Qlib's pickling rule for data objects (``qlib/utils/serial.py``).

Pickling drops attributes whose names start with ``_`` (the loaded data frames live there) unless
``config(dump_all=True)``; ``exclude`` names are always dropped and ``include`` names always kept. This keeps
``R.save_objects(dataset=dataset)`` small: the saved dataset holds its configuration and fitted processor
statistics, not its data, and ``setup_data()`` reloads the data after unpickling.
"""
from __future__ import annotations

import os
from typing import Any

from qexp.ext import Pickled, pickle_dumps


class Serializable(Pickled):
    """Base class whose pickles leave out private (``_``-prefixed) attributes by default."""

    default_dump_all = False
    # attributes that steer pickling itself; never pickled
    config_attr = ["_include", "_exclude"]
    exclude_attr: list[str] = []
    include_attr: list[str] = []

    def __init__(self) -> None:
        self._dump_all = self.default_dump_all
        self._exclude: list[str] | None = None

    @property
    def dump_all(self) -> bool:
        """Whether private attributes are pickled too."""
        return getattr(self, "_dump_all", self.default_dump_all)

    def _attr_list(self, kind: str) -> list[str]:
        if hasattr(self, f"_{kind}"):
            res = getattr(self, f"_{kind}")
        else:
            res = getattr(type(self), f"{kind}_attr", [])
        return list(res or [])

    def _is_kept(self, key: str) -> bool:
        if key in self.config_attr:
            return False
        if key in self._attr_list("include"):
            return True
        if key in self._attr_list("exclude"):
            return False
        return self.dump_all or not key.startswith("_")

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if self._is_kept(k)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def config(self, recursive: bool = False, **kwargs: Any) -> None:
        """Set ``dump_all``, ``exclude`` or ``include``; ``recursive=True`` applies them to nested objects."""
        allowed = {"dump_all", "exclude", "include"}
        for key, value in kwargs.items():
            if key not in allowed:
                raise KeyError(f"{type(self).__name__}.config: unknown setting {key!r}; "
                               f"expected one of {sorted(allowed)}")
            setattr(self, f"_{key}", value)
        if recursive:
            for obj in list(self.__dict__.values()):
                children = obj if isinstance(obj, (list, tuple)) else [obj]
                for child in children:
                    if isinstance(child, Serializable) and child is not self:
                        child.config(recursive=True, **kwargs)

    def to_pickle_bytes(self) -> bytes:
        """The pickle ``R.save_objects`` stores (honours ``dump_all``/``exclude``)."""
        return pickle_dumps(self)

    def to_pickle(self, path: str | os.PathLike, **kwargs: Any) -> None:
        """Write the pickle to ``path`` atomically; ``kwargs`` go to :meth:`config` first. ``load`` (from
        :class:`qexp.ext.Pickled`) reads it back."""
        if kwargs:
            self.config(**kwargs)
        super().to_pickle(path)
