"""``qexp data import-csv``: per-symbol CSV/parquet files -> a Qlib-format folder.

Follows Qlib's ``dump_bin.py`` (union calendar, ``all`` market from each symbol's first and last date,
duplicate dates keep the first row, each symbol reindexed to the calendar between its own first and last
date with NaN for missing days) and fills the fields Qlib's pipelines expect when the files lack them:

* ``factor`` = 1.0: the input prices are taken as already adjusted, so adjusted = raw.
* ``vwap`` = (high + low + close) / 3, the typical price, the usual stand-in when intraday volume-weighted
  prices are unknown (NaN where any of the three is missing); a ``vwap`` column in the files is kept.
* ``change`` = close / previous close - 1 on the forward-filled close (Qlib's Yahoo convention), NaN on
  days without a close and on the first day.

Rows that cannot be parsed (bad date, non-numeric text in a numeric column, missing symbol) are reported
with file, line and reason, and skipped; empty cells are missing values (NaN), not errors.
"""
from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import DataError
from .writer import InstrumentData, write_folder

SUFFIXES = (".csv", ".parquet", ".pq")
BASE_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass
class BadRow:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class ImportReport:
    dst: Path
    symbols: int = 0
    days: int = 0
    fields: list[str] = field(default_factory=list)
    markets: dict[str, int] = field(default_factory=dict)
    bad_rows: list[BadRow] = field(default_factory=list)
    duplicates: int = 0


@dataclass
class _Table:
    """Parsed rows of one file: dates (datetime64), symbols, numeric columns, source line numbers."""
    dates: np.ndarray
    symbols: np.ndarray
    columns: dict[str, np.ndarray]
    lines: np.ndarray


def find_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise DataError(f"Source {src} does not exist: pass a folder of per-symbol .csv or .parquet files.")
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"No .csv or .parquet files in {src}.")
    return files


def _read_raw(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows (as strings) and their 1-based line numbers."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None) or []
            rows, lines = [], []
            for row in reader:
                if row:
                    rows.append(row)
                    lines.append(reader.line_num)
        return [h.strip() for h in header], rows, lines
    import pyarrow.parquet as pq
    table = pq.read_table(path).to_pandas()
    header = [str(c) for c in table.columns]
    rows = table.astype(str).where(table.notna(), "").to_numpy().tolist()
    return header, rows, list(range(1, len(rows) + 1))


def _parse_fast(path: Path, date_col: str, symbol_col: str | None) -> _Table | None:
    """Clean files (every date ISO, every numeric cell a number or empty) in one vectorised read; None
    sends the file to the line-by-line path, which can say which line is wrong."""
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, low_memory=False)
        else:
            df = pd.read_parquet(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    lower = {str(c).strip().lower(): c for c in df.columns}
    if date_col.lower() not in lower or (symbol_col and symbol_col.lower() not in lower):
        return None
    raw_dates = df[lower[date_col.lower()]]
    dates = pd.to_datetime(raw_dates.astype(str), errors="coerce", format="ISO8601") \
        if not pd.api.types.is_datetime64_any_dtype(raw_dates) else raw_dates
    if dates.isna().any():
        return None
    if symbol_col:
        sym = df[lower[symbol_col.lower()]]
        if sym.isna().any():
            return None
        symbols = sym.astype(str).str.strip().str.upper().to_numpy(dtype=object)
        if (symbols == "").any():
            return None
    else:
        symbols = np.full(len(df), path.stem.strip().upper(), dtype=object)
    skip = {date_col.lower()} | ({symbol_col.lower()} if symbol_col else set())
    columns: dict[str, np.ndarray] = {}
    for name, col in lower.items():
        if name in skip:
            continue
        values = df[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            columns[name] = values.to_numpy(dtype=np.float64)
        elif name in BASE_FIELDS or name in ("vwap", "factor", "change") or \
                pd.to_numeric(values, errors="coerce").notna().any():
            return None   # numbers mixed with text: find the offending lines the slow way
    dates = pd.DatetimeIndex(dates).tz_localize(None) if getattr(dates.dt, "tz", None) else dates
    return _Table(dates.dt.normalize().to_numpy(), symbols, columns, np.arange(2, len(df) + 2))


def parse_file(path: Path, date_col: str, symbol_col: str | None, bad: list[BadRow]) -> _Table:
    """Parse one file; rows that cannot be parsed are appended to ``bad`` and left out."""
    fast = _parse_fast(path, date_col, symbol_col)
    if fast is not None:
        return fast
    header, rows, lines = _read_raw(path)
    lower = {h.lower(): i for i, h in enumerate(header)}
    if date_col.lower() not in lower:
        raise DataError(f"{path}: no date column {date_col!r} (columns: {', '.join(header)}); "
                        f"pass --date-col.")
    if symbol_col and symbol_col.lower() not in lower:
        raise DataError(f"{path}: no symbol column {symbol_col!r} (columns: {', '.join(header)}); "
                        f"pass --symbol-col, or leave it out to use the file name.")
    width = len(header)
    keep = []
    for k, row in enumerate(rows):
        if len(row) != width:
            bad.append(BadRow(str(path), lines[k], f"{len(row)} fields, expected {width}"))
        else:
            keep.append(k)
    grid = np.array([rows[k] for k in keep], dtype=object).reshape(len(keep), width)
    line_no = np.array([lines[k] for k in keep], dtype=np.int64)
    ok = np.ones(len(keep), dtype=bool)

    raw_dates = grid[:, lower[date_col.lower()]].astype(str)
    dates = pd.to_datetime(pd.Series(raw_dates), errors="coerce", format="ISO8601")
    odd = dates.isna().to_numpy() & (raw_dates != "")
    if odd.any():   # other layouts (01/31/2020, 31 Jan 2020...) parsed one by one; ISO is the fast path
        dates[odd] = pd.to_datetime(pd.Series(raw_dates[odd]), errors="coerce", format="mixed").to_numpy()
    dates = dates.dt.normalize()
    for k in np.nonzero(dates.isna().to_numpy())[0].tolist():
        bad.append(BadRow(str(path), int(line_no[k]), f"cannot parse date {str(raw_dates[k])!r}"))
    ok &= dates.notna().to_numpy()

    if symbol_col:
        symbols = np.array([s.strip().upper() for s in grid[:, lower[symbol_col.lower()]].astype(str)],
                           dtype=object)
        missing = symbols == ""
        for k in np.nonzero(missing & ok)[0].tolist():
            bad.append(BadRow(str(path), int(line_no[k]), "empty symbol"))
        ok &= ~missing
    else:
        symbols = np.full(len(keep), path.stem.strip().upper(), dtype=object)

    skip = {date_col.lower()} | ({symbol_col.lower()} if symbol_col else set())
    columns: dict[str, np.ndarray] = {}
    for name, j in lower.items():
        if name in skip:
            continue
        text = pd.Series(grid[:, j].astype(str)).str.strip()
        values = pd.to_numeric(text.where(text != "", None), errors="coerce")
        bad_cells = values.isna().to_numpy() & (text != "").to_numpy() & \
            ~text.str.lower().isin(["nan", "null", "none", "na", "n/a"]).to_numpy()
        if name in BASE_FIELDS or name in ("vwap", "factor", "change") or not bad_cells.all():
            for k in np.nonzero(bad_cells & ok)[0].tolist():
                bad.append(BadRow(str(path), int(line_no[k]), f"column {header[j]!r}: {text[k]!r} is not a number"))
            ok &= ~bad_cells
            columns[name] = values.to_numpy(dtype=np.float64)
        # else: a text column (name, sector, ...): not a feature, left out
    return _Table(dates.to_numpy()[ok], symbols[ok], {k: v[ok] for k, v in columns.items()}, line_no[ok])


def _fill_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """factor, vwap and change when the files lack them (see the module docstring)."""
    if "factor" not in frame:
        frame["factor"] = np.where(frame["close"].notna(), 1.0, np.nan) if "close" in frame else 1.0
    if "vwap" not in frame and {"high", "low", "close"} <= set(frame):
        frame["vwap"] = (frame["high"] + frame["low"] + frame["close"]) / 3
    if "change" not in frame and "close" in frame:
        filled = frame["close"].ffill()
        change = filled / filled.shift(1) - 1
        frame["change"] = change.where(frame["close"].notna())
    return frame


def read_markets(specs: Sequence[str]) -> dict[str, set[str]]:
    """``NAME=FILE`` pairs; FILE lists codes separated by newlines, commas or whitespace (# comments)."""
    markets: dict[str, set[str]] = {}
    for spec in specs:
        if "=" not in spec:
            raise DataError(f"--market {spec!r}: expected NAME=FILE, e.g. --market sp100=sp100.txt")
        name, file = spec.split("=", 1)
        path = Path(file).expanduser()
        if not path.is_file():
            raise DataError(f"--market {spec!r}: file {path} does not exist.")
        codes: set[str] = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0]
            codes.update(c.strip().upper() for c in line.replace(",", " ").split() if c.strip())
        markets[name.strip().lower()] = codes
    return markets


def import_csv(src: str | os.PathLike, dst: str | os.PathLike, date_col: str = "date",
               symbol_col: str | None = None, markets: Sequence[str] = (),
               progress: bool | None = None,
               on_bad_row: Callable[[BadRow], None] | None = None) -> ImportReport:
    """Convert per-symbol files in ``src`` into a Qlib-format folder at ``dst``: a new or empty folder, or a data
    folder it replaces atomically; a folder holding anything else is refused before any file is read."""
    from tqdm import tqdm

    from .atomic import check_output_folder
    check_output_folder(dst)  # before the (long) read: a folder that is not ours is refused at once
    files = find_files(Path(src).expanduser())
    market_codes = read_markets(markets)
    report = ImportReport(Path(dst).expanduser().absolute())
    show = sys.stderr.isatty() if progress is None else progress

    per_symbol: dict[str, list[pd.DataFrame]] = {}
    for path in (tqdm(files, desc="reading", unit="file", disable=not show)):
        before = len(report.bad_rows)
        table = parse_file(path, date_col, symbol_col, report.bad_rows)
        if on_bad_row:
            for row in report.bad_rows[before:]:
                on_bad_row(row)
        frame = pd.DataFrame(table.columns)
        frame.insert(0, "_date", table.dates)
        frame.insert(1, "_symbol", table.symbols)
        for symbol, part in frame.groupby("_symbol", sort=False):
            per_symbol.setdefault(str(symbol), []).append(part.drop(columns="_symbol"))
    if not per_symbol:
        raise DataError(f"No parseable rows in {src}; see the reported rows.")

    symbols: dict[str, pd.DataFrame] = {}
    for symbol, parts in per_symbol.items():
        frame = pd.concat(parts, ignore_index=True)
        dup = frame["_date"].duplicated(keep="first")
        report.duplicates += int(dup.sum())
        frame = frame[~dup].sort_values("_date").set_index("_date")
        symbols[symbol] = frame
    calendar = pd.DatetimeIndex(sorted(set().union(*(f.index for f in symbols.values()))))
    all_fields = sorted(set().union(*(f.columns for f in symbols.values())) | {"factor", "vwap", "change"})

    def instruments() -> Iterable[InstrumentData]:
        for symbol in tqdm(sorted(symbols), desc="writing", unit="symbol", disable=not show):
            frame = symbols[symbol]
            lo = calendar.searchsorted(frame.index[0])
            hi = calendar.searchsorted(frame.index[-1])
            frame = _fill_derived(frame.reindex(calendar[lo:hi + 1]))
            yield InstrumentData(symbol, int(lo), {c: frame[c].to_numpy(np.float64) for c in frame.columns})

    spans = {s: [(f.index[0], f.index[-1])] for s, f in symbols.items()}
    out_markets = {"all": spans}
    for name, codes in market_codes.items():
        out_markets[name] = {c: spans[c] for c in codes if c in spans}
    write_folder(dst, calendar, instruments(), out_markets)
    report.symbols, report.days, report.fields = len(symbols), len(calendar), all_fields
    report.markets = {k: len(v) for k, v in out_markets.items()}
    return report
