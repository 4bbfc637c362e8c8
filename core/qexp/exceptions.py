"""Errors raised by qexp. Each names the problem and, where there is one, the fix."""
from __future__ import annotations


class QexpError(Exception):
    """Base class of qexp's errors."""


class UnknownSchemeError(QexpError, ValueError):
    """No backend (or provider, store, mirror) is registered for a URI scheme."""


class MissingExtraError(QexpError, ImportError):
    """An optional dependency is not installed."""


class ExpNotFoundError(QexpError, ValueError):
    """No experiment matches the id or name."""


class ExpAlreadyExistError(QexpError):
    """An experiment with this name already exists."""


class RecorderNotFoundError(QexpError, ValueError):
    """No recorder matches the id or name."""


class AmbiguousRunIdError(RecorderNotFoundError):
    """A short run id (a prefix) matches several runs; the message lists them."""


class StoreNotFoundError(QexpError, FileNotFoundError):
    """A read found no tracking store at the URI (reads never create one)."""


class NoActiveRecorderError(QexpError, RuntimeError):
    """An operation needs an active recorder and none is active."""


class LoadObjectError(QexpError):
    """An artifact could not be loaded as an object."""


class ArtifactNotFoundError(LoadObjectError, FileNotFoundError):
    """The run has no artifact with this name (as opposed to one that exists but cannot be unpickled)."""


class ArtifactPathError(QexpError, ValueError):
    """An artifact path is unsafe (absolute, or escapes the run with '..')."""


class FilterSyntaxError(QexpError, ValueError):
    """A search filter string could not be parsed."""


class ConfigError(QexpError, ValueError):
    """A config is invalid; the message names the key path."""


class RecorderInitializationError(QexpError):
    """qexp.init was called while an experiment is active."""
