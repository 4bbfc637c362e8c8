"""Qlib's on-disk binary format, read and written exactly as ``scripts/dump_bin.py`` does.

Layout of a provider folder::

    calendars/day.txt            one YYYY-MM-DD per line, sorted; line number = calendar index
    instruments/<market>.txt     CODE<TAB>START<TAB>END per line, no header, both ends inclusive
    features/<code lower>/<field lower>.day.bin
                                 float32 little-endian; value 0 = calendar index of the first value,
                                 then one value per calendar day with no gaps (NaN = missing day)

Codes are written upper-case in instruments files and lower-case as feature folder names; Windows
reserved names (CON, PRN, AUX, NUL, COM0-9, LPT0-9) get the folder prefix ``_qlib_`` as in Qlib.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import InstrumentsFileError

FREQ = "day"
DATE_FORMAT = "%Y-%m-%d"
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
_PREFIX = "_qlib_"


def code_to_dirname(code: str) -> str:
    """Feature folder name of an instrument code (Qlib's ``code_to_fname(code).lower()``)."""
    code = str(code)
    if code.upper() in _RESERVED:
        code = _PREFIX + code
    return code.lower()


def dirname_to_code(name: str) -> str:
    """Instrument code (upper-case) of a feature folder name."""
    if name.startswith(_PREFIX):
        name = name[len(_PREFIX):]
    return name.upper()


def feature_path(root: Path, code: str, field: str, freq: str = FREQ) -> Path:
    return root / "features" / code_to_dirname(code) / f"{field.lower()}.{freq}.bin"


# ---------------------------------------------------------------------------------------------- calendar
def read_calendar(path: Path) -> pd.DatetimeIndex:
    """Read ``calendars/<freq>.txt``; blank lines are ignored."""
    with open(path, encoding="utf-8") as fh:
        lines = [ln.strip() for ln in fh if ln.strip()]
    try:
        cal = pd.DatetimeIndex(pd.to_datetime(lines, format="mixed"))
    except (ValueError, TypeError) as exc:
        raise InstrumentsFileError(f"Calendar file {path} has a line that is not a date: {exc}") from exc
    if not cal.is_monotonic_increasing or cal.has_duplicates:
        raise InstrumentsFileError(f"Calendar file {path} is not sorted and unique; rebuild the folder.")
    return cal


def format_dates(dates: Iterable[pd.Timestamp]) -> list[str]:
    return [pd.Timestamp(d).strftime(DATE_FORMAT) for d in dates]


def calendar_text(calendar: Sequence[pd.Timestamp]) -> str:
    return "".join(f"{d}\n" for d in format_dates(calendar))


# ---------------------------------------------------------------------------------------------- instruments
Spans = dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]


def read_instruments(path: Path) -> Spans:
    """Read ``instruments/<market>.txt`` into ``{CODE: [(start, end), ...]}`` (codes upper-cased).

    A malformed line raises :class:`InstrumentsFileError` naming the file and the 1-based line number.
    """
    spans: Spans = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                # Some hand-made files use spaces; accept them only when the split is unambiguous.
                parts = line.split()
            if len(parts) != 3:
                raise InstrumentsFileError(
                    f"{path}, line {lineno}: expected 'CODE<TAB>START<TAB>END', got {raw.rstrip()!r}")
            code, start, end = parts
            try:
                s, e = pd.Timestamp(start), pd.Timestamp(end)
            except (ValueError, TypeError):
                raise InstrumentsFileError(
                    f"{path}, line {lineno}: start/end are not dates in {raw.rstrip()!r}") from None
            if s is pd.NaT or e is pd.NaT or e < s:
                raise InstrumentsFileError(f"{path}, line {lineno}: end date is before start date in "
                                           f"{raw.rstrip()!r}")
            spans.setdefault(code.upper(), []).append((s, e))
    return spans


def instruments_text(spans: Mapping[str, Sequence[tuple[pd.Timestamp, pd.Timestamp]]]) -> str:
    rows = []
    for code in sorted(spans):
        for s, e in spans[code]:
            rows.append(f"{code.upper()}\t{pd.Timestamp(s).strftime(DATE_FORMAT)}\t"
                        f"{pd.Timestamp(e).strftime(DATE_FORMAT)}\n")
    return "".join(rows)


# ---------------------------------------------------------------------------------------------- features
def bin_bytes(start_index: int, values: np.ndarray) -> bytes:
    """Bytes of a .bin file exactly as dump_bin writes them: ``hstack([start, values]).astype('<f')``."""
    return np.hstack([[start_index], np.asarray(values, dtype=np.float64)]).astype("<f").tobytes()


def write_bin(path: Path, start_index: int, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(bin_bytes(start_index, values))


def bin_span(path: Path) -> tuple[int, int] | None:
    """``(first, last)`` calendar index a .bin file covers, reading only its header; None if empty."""
    n = os.path.getsize(path) // 4 - 1
    if n <= 0:
        return None
    with open(path, "rb") as fh:
        start = int(np.frombuffer(fh.read(4), dtype="<f4")[0])
    return start, start + n - 1


def read_bin(path: Path, first: int | None = None, last: int | None = None) -> tuple[int, np.ndarray]:
    """Values of a .bin file overlapping calendar indices ``[first, last]`` (inclusive; None = open end).

    Returns ``(start_index, values)`` where ``values[k]`` belongs to calendar index ``start_index + k``;
    an empty array when nothing overlaps. Only the needed bytes are read.
    """
    n = os.path.getsize(path) // 4 - 1
    with open(path, "rb") as fh:
        head = fh.read(4)
        if len(head) < 4 or n <= 0:
            return 0, np.empty(0, dtype="<f4")
        start = int(np.frombuffer(head, dtype="<f4")[0])
        lo = start if first is None else max(first, start)
        hi = start + n - 1 if last is None else min(last, start + n - 1)
        if hi < lo:
            return lo, np.empty(0, dtype="<f4")
        fh.seek(4 * (1 + lo - start))
        values = np.fromfile(fh, dtype="<f4", count=hi - lo + 1)
    return lo, values
