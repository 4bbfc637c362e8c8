"""Errors of the data plugin. Each names the problem and, where there is one, the fix."""
from __future__ import annotations

from qexp.ext import QexpError

CREATE_DATA_HINT = ("Create a data folder with `qexp data synth --out DIR` (synthetic market) or "
                    "`qexp data import-csv SRC --out DIR` (your own CSV/parquet files).")


class DataError(QexpError):
    """A data folder is missing, malformed, or lacks what was asked for."""


class ProviderNotFoundError(DataError, FileNotFoundError):
    """The provider folder (``provider_uri``) does not exist or is not a Qlib-format folder."""


class InstrumentsFileError(DataError, ValueError):
    """A line of ``instruments/<market>.txt`` cannot be parsed."""


class UnknownFieldError(DataError, KeyError):
    """An expression names a ``$field`` that no ``features/*/<field>.day.bin`` file provides."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownMarketError(DataError, KeyError):
    """No ``instruments/<market>.txt`` exists for the market asked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ExpressionError(QexpError, ValueError):
    """An expression string is malformed or uses an operator wrongly; the message shows where."""
