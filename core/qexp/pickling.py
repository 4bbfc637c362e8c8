"""Pickle helpers: the allow-list unpickler used by ``load_object(name, restricted=True)``."""
from __future__ import annotations

import io
import pickle
import re
from types import ModuleType
from typing import Any, Iterable

# Modules whose classes are trusted wholesale: data containers, not code runners.
SAFE_MODULE_PREFIXES = ("pandas", "numpy", "datetime", "collections", "pathlib", "decimal", "fractions",
                        "uuid", "zoneinfo", "pytz", "dateutil", "pyarrow")
SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float",
                 "complex", "bool", "slice", "range", "object", "NoneType", "type"}
# numpy/pandas reconstructors go through these helpers
SAFE_EXTRA = {("copyreg", "_reconstructor"), ("builtins", "getattr"), ("functools", "partial")}
# Inside the trusted libraries a pickle may call classes and the private helpers their __reduce__ methods
# name (numpy's _reconstruct, pandas' _unpickle_block/_new_Index, pyarrow's _restore_array ...), never a
# public function: pandas.read_pickle or DataFrame.to_pickle would read or write any file.
RECONSTRUCTOR = re.compile(r"unpickle|reconstruct|^_new_|^_restore|^_frombuffer$|^scalar$|^py_buffer$|"
                           r"^type_for_alias$")
# ... and not the classes of those libraries that open files or processes when called
IO_CLASS = re.compile(r"Store|Writer|Reader|File|Excel|HDF|Stata|SQL|Parser|Stream|Socket|Popen|Connection|"
                      r"memmap", re.I)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles data containers only: builtins, numpy, pandas and a few stdlib modules.

    Anything else (a model class, ``os.system``) raises :class:`pickle.UnpicklingError` naming it,
    so loading an artifact from an untrusted store cannot run code. ``allow`` trusts more: classes,
    ``"module.Name"`` strings, or ``"package.*"`` for everything in a package, e.g.
    ``load_object("params.pkl", restricted=True, allow=["qexp_models.*", "lightgbm.*"])`` for an LGBModel.
    """

    extra_allowed: set[tuple[str, str]] = set()

    def __init__(self, file: Any, *, allow: Iterable[Any] = (), **kwargs: Any):
        super().__init__(file, **kwargs)
        self.allowed_names, self.allowed_prefixes = parse_allow(allow)

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in SAFE_BUILTINS:
            return super().find_class(module, name)
        if (module, name) in SAFE_EXTRA or (module, name) in self.extra_allowed:
            if (module, name) == ("builtins", "getattr"):
                return _safe_getattr
            return super().find_class(module, name)
        root = module.split(".", 1)[0]
        if "." in name and (root in SAFE_MODULE_PREFIXES or "__" in name):
            # protocol 4 follows dotted names, so "_new_Index.__builtins__.get" would reach exec through a
            # trusted module; data pickles never need a dotted name inside these libraries
            raise pickle.UnpicklingError(f"restricted unpickler refused the dotted global '{module}.{name}'")
        if f"{module}.{name}" in self.allowed_names \
                or any(module == p or module.startswith(p + ".") for p in self.allowed_prefixes):
            return super().find_class(module, name)
        if root in SAFE_MODULE_PREFIXES:
            obj = super().find_class(module, name)
            if _harmless(obj, name):
                return obj
            raise pickle.UnpicklingError(
                f"restricted unpickler refused '{module}.{name}': only data classes and their reconstructors are "
                f"loaded, not functions or classes that can read or write files")
        raise pickle.UnpicklingError(
            f"restricted unpickler refused global '{module}.{name}'; if you trust the store it came from, allow it: "
            f"load_object(..., restricted=True, allow=['{module}.{name}']) (or '{root}.*' for its whole package), "
            f"or load with restricted=False")


def parse_allow(allow: Iterable[Any]) -> tuple[set[str], tuple[str, ...]]:
    """``(exact "module.Name" globals, module prefixes)`` from classes, names and ``"package.*"`` patterns."""
    names: set[str] = set()
    prefixes: list[str] = []
    for item in [allow] if isinstance(allow, (str, type)) else allow:
        if isinstance(item, type) or callable(item) and hasattr(item, "__qualname__"):
            names.add(f"{item.__module__}.{item.__qualname__}")
        elif isinstance(item, str) and item.endswith(".*"):
            prefixes.append(item[:-2])
        elif isinstance(item, str) and item:
            names.add(item)
        else:
            raise TypeError(f"allow takes classes, 'module.Name' strings or 'package.*' patterns, got {item!r}")
    return names, tuple(prefixes)


def _harmless(obj: Any, name: str) -> bool:
    """A class that opens nothing, a reconstructor helper, or a plain value (``pyarrow.NA``), defined in a
    trusted library (not a module, nor something a trusted module merely imported from elsewhere)."""
    if isinstance(obj, ModuleType):  # getattr on a module reaches anything it imported (ctypes.CDLL ...)
        return False
    if isinstance(obj, type) or callable(obj):
        owner = getattr(obj, "__self__", None)  # a method bound to a class: judged by that class (ZoneInfo._unpickle)
        source = owner if isinstance(owner, type) else obj
        home = str(getattr(source, "__module__", None) or "").split(".", 1)[0]
        if home not in SAFE_MODULE_PREFIXES:
            return False
    if isinstance(obj, type):
        return not IO_CLASS.search(name)
    return bool(RECONSTRUCTOR.search(name)) or not callable(obj)


def _safe_getattr(obj: Any, name: str) -> Any:
    root = obj.__name__ if isinstance(obj, ModuleType) else \
        str(getattr(obj, "__module__", None) or getattr(type(obj), "__module__", ""))
    if name.startswith("__") or isinstance(obj, ModuleType) \
            or root.split(".", 1)[0] not in SAFE_MODULE_PREFIXES + ("builtins",):
        raise pickle.UnpicklingError(f"restricted unpickler refused getattr({obj!r}, {name!r})")
    value = getattr(obj, name)
    if not _harmless(value, name):  # e.g. getattr(DataFrame, "to_pickle"), then called with a path
        raise pickle.UnpicklingError(f"restricted unpickler refused getattr({obj!r}, {name!r})")
    return value


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` (protocol 4 as Qlib; objects with ``to_pickle_bytes`` choose their own form)."""
    return pickle.dumps(obj, protocol=4)


def dump_object(obj: Any) -> bytes:
    """The bytes ``R.save_objects`` and ``to_pickle`` store for ``obj``: its ``to_pickle_bytes()`` when it
    has one (a data ``Serializable`` leaves its loaded data out), else :func:`dumps`."""
    to_bytes = getattr(obj, "to_pickle_bytes", None)
    if callable(to_bytes):
        return to_bytes()
    return dumps(obj)


def make_unpickler(stream: Any, restricted: bool = False, unpickler: type[pickle.Unpickler] | None = None,
                   allow: Iterable[Any] = ()) -> pickle.Unpickler:
    """The unpickler ``load_object`` uses: ``unpickler`` if given, else the restricted one (with ``allow``)
    or the plain one."""
    if unpickler is not None:
        return unpickler(stream)
    if restricted:
        return RestrictedUnpickler(stream, allow=allow)
    return pickle.Unpickler(stream)


def loads(data: bytes, restricted: bool = False, unpickler: type[pickle.Unpickler] | None = None,
          allow: Iterable[Any] = ()) -> Any:
    return make_unpickler(io.BytesIO(data), restricted, unpickler, allow).load()
