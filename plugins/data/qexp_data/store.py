"""Read access to one Qlib-format provider folder: calendar, markets, feature spans and panels.

Calendars and instrument lists are read through the active cache store (:mod:`qexp_data.metacache`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import binfmt, metacache
from .errors import CREATE_DATA_HINT, DataError, ProviderNotFoundError, UnknownMarketError

SUPPORTED_FREQS = ("day", "1d")


def freq_problems(freq: Any, where: str = "freq") -> list[str]:
    """What a handler's or loader's ``freq`` (a name, or Qlib's per-field-group dict) would stop at: qexp's
    provider serves daily bars only (for ``--dry-run``, which must catch what the run would hit)."""
    items = freq.items() if isinstance(freq, dict) else [(None, freq)]
    return [f"{where}{'.' + str(group) if group is not None else ''}: frequency {f!r} is not supported: qexp's "
            f"data provider serves daily data (freq: day)" for group, f in items if str(f) not in SUPPORTED_FREQS]


def check_freq(freq: str) -> None:
    if freq not in SUPPORTED_FREQS:
        raise DataError(f"Frequency {freq!r} is not supported: qexp's data provider serves daily data "
                        f"(freq='day').")


class QlibStore:
    """A provider folder as laid out by Qlib's ``dump_bin.py`` (see :mod:`qexp_data.binfmt`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        cal = self.root / "calendars" / f"{binfmt.FREQ}.txt"
        if not self.root.is_dir():
            raise ProviderNotFoundError(f"Data folder {self.root} does not exist. {CREATE_DATA_HINT}")
        if not cal.is_file():
            raise ProviderNotFoundError(f"{self.root} is not a Qlib-format data folder: {cal} is missing. "
                                        f"{CREATE_DATA_HINT}")
        self._calendar: pd.DatetimeIndex | None = None
        self._future: pd.DatetimeIndex | None = None
        self._markets: dict[str, binfmt.Spans] = {}
        self._fields: list[str] | None = None
        self._dirs: set[str] | None = None

    # -- calendar
    def calendar(self, future: bool = False) -> pd.DatetimeIndex:
        if future:
            path = self.root / "calendars" / f"{binfmt.FREQ}_future.txt"
            if path.is_file():
                if self._future is None:
                    self._future = metacache.read_calendar(path)
                return self._future
        if self._calendar is None:
            self._calendar = metacache.read_calendar(self.root / "calendars" / f"{binfmt.FREQ}.txt")
        return self._calendar

    # -- markets
    def markets(self) -> list[str]:
        folder = self.root / "instruments"
        return sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []

    def instruments(self, market: str) -> binfmt.Spans:
        """``{CODE: [(start, end), ...]}`` of ``instruments/<market>.txt`` (market name case-insensitive)."""
        key = market.lower()
        if key not in self._markets:
            path = self.root / "instruments" / f"{key}.txt"
            if not path.is_file():
                known = ", ".join(self.markets()) or "none"
                raise UnknownMarketError(f"No market {market!r} in {self.root}: {path} does not exist. "
                                         f"Markets available: {known}.")
            self._markets[key] = metacache.read_instruments(path)
        return self._markets[key]

    # -- features
    def feature_dirs(self) -> set[str]:
        if self._dirs is None:
            folder = self.root / "features"
            self._dirs = {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
        return self._dirs

    def fields(self) -> list[str]:
        """Field names that at least one instrument has a ``<field>.day.bin`` for."""
        if self._fields is None:
            suffix = f".{binfmt.FREQ}.bin"
            found: set[str] = set()
            folder = self.root / "features"
            for d in sorted(self.feature_dirs()):
                found.update(f.name[:-len(suffix)] for f in os.scandir(folder / d) if f.name.endswith(suffix))
            self._fields = sorted(found)
        return self._fields

    def has_instrument(self, code: str) -> bool:
        return binfmt.code_to_dirname(code) in self.feature_dirs()

    def spans(self, codes: Sequence[str], fields: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per code, the first and last calendar index covered by the union of its ``fields`` files
        (any field file when ``fields`` is empty); ``first > last`` for a code with none."""
        first = np.full(len(codes), np.iinfo(np.int64).max, dtype=np.int64)
        last = np.full(len(codes), -1, dtype=np.int64)
        suffix = f".{binfmt.FREQ}.bin"
        for i, code in enumerate(codes):
            folder = self.root / "features" / binfmt.code_to_dirname(code)
            if not folder.is_dir():
                continue
            names = list(fields) or sorted(f.name[:-len(suffix)] for f in os.scandir(folder)
                                           if f.name.endswith(suffix))[:1]
            for field in names:
                path = folder / f"{field}{suffix}"
                if path.is_file():
                    span = binfmt.bin_span(path)
                    if span is not None:
                        first[i] = min(first[i], span[0])
                        last[i] = max(last[i], span[1])
        return first, last

    def panel(self, codes: Sequence[str], field: str, lo: int, hi: int, pad: int = 0) -> np.ndarray:
        """float64 array ``(len(codes), pad + hi - lo + 1)``: column ``pad + k`` = calendar index ``lo + k``;
        NaN where a code has no value (missing file, outside its span, padding)."""
        out = np.full((len(codes), pad + hi - lo + 1), np.nan)
        for i, code in enumerate(codes):
            path = binfmt.feature_path(self.root, code, field)
            if not path.is_file():
                continue
            start, values = binfmt.read_bin(path, lo, hi)
            if len(values):
                out[i, pad + start - lo: pad + start - lo + len(values)] = values
        return out
