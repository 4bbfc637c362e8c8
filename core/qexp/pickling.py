"""Pickle helpers: the allow-list unpickler used by ``load_object(name, restricted=True)``."""
from __future__ import annotations

import io
import pickle
from typing import Any

# Modules whose classes are trusted wholesale: data containers, not code runners.
SAFE_MODULE_PREFIXES = ("pandas", "numpy", "datetime", "collections", "pathlib", "decimal", "fractions",
                        "uuid", "zoneinfo", "pytz", "dateutil", "pyarrow")
SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float",
                 "complex", "bool", "slice", "range", "object", "NoneType", "type"}
# numpy/pandas reconstructors go through these helpers
SAFE_EXTRA = {("copyreg", "_reconstructor"), ("builtins", "getattr"), ("functools", "partial")}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles data containers only: builtins, numpy, pandas and a few stdlib modules.

    Anything else (a model class, ``os.system``) raises :class:`pickle.UnpicklingError` naming it,
    so loading an artifact from an untrusted store cannot run code.
    """

    extra_allowed: set[tuple[str, str]] = set()

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in SAFE_BUILTINS:
            return super().find_class(module, name)
        if (module, name) in SAFE_EXTRA or (module, name) in self.extra_allowed:
            if (module, name) == ("builtins", "getattr"):
                return _safe_getattr
            return super().find_class(module, name)
        root = module.split(".", 1)[0]
        if root in SAFE_MODULE_PREFIXES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"restricted unpickler refused global '{module}.{name}'; load it with restricted=False only if "
            f"you trust the store it came from")


def _safe_getattr(obj: Any, name: str) -> Any:
    root = getattr(obj, "__module__", None) or getattr(type(obj), "__module__", "")
    if name.startswith("__") or root.split(".", 1)[0] not in SAFE_MODULE_PREFIXES + ("builtins",):
        raise pickle.UnpicklingError(f"restricted unpickler refused getattr({obj!r}, {name!r})")
    return getattr(obj, name)


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` (protocol 4 as Qlib; objects with ``to_pickle_bytes`` choose their own form)."""
    return pickle.dumps(obj, protocol=4)


def loads(data: bytes, restricted: bool = False, unpickler: type[pickle.Unpickler] | None = None) -> Any:
    cls = unpickler or (RestrictedUnpickler if restricted else pickle.Unpickler)
    return cls(io.BytesIO(data)).load()
