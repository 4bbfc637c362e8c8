"""``qexp data check``: find problems in a Qlib-format folder.

Per instrument: missing days (NaN rows in close), the longest NaN run, suspicious jumps (|close/prev - 1|
> 50% between consecutive valid closes), fields missing compared to the folder's field set, .bin files whose
span disagrees with the instruments file, and unreadable files.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import binfmt
from .store import QlibStore

JUMP = 0.5


@dataclass
class InstrumentCheck:
    code: str
    days: int = 0
    missing_days: int = 0
    longest_nan_run: int = 0
    jumps: list[str] = field(default_factory=list)       # "YYYY-MM-DD: +63.2%"
    missing_fields: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.jumps or self.missing_fields or self.problems)


@dataclass
class CheckReport:
    root: str
    days: int
    fields: list[str]
    markets: dict[str, int]
    instruments: list[InstrumentCheck]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(i.ok for i in self.instruments)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        for item, inst in zip(d["instruments"], self.instruments):
            item["ok"] = inst.ok
        return d


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return int((np.nonzero(edges == -1)[0] - np.nonzero(edges == 1)[0]).max())


def check_folder(root: str | Path, max_nan_run: int | None = None) -> CheckReport:
    """Check every instrument with a features folder; ``max_nan_run`` flags NaN runs longer than it."""
    store = QlibStore(root)
    cal = store.calendar()
    fields = store.fields()
    problems: list[str] = []
    markets: dict[str, int] = {}
    declared: dict[str, tuple[int, int]] = {}
    for market in store.markets():
        try:
            spans = store.instruments(market)
        except Exception as exc:  # a bad instruments file is a finding, not a crash
            problems.append(str(exc))
            continue
        markets[market] = len(spans)
        if market == "all":
            declared = {c: (int(cal.searchsorted(min(s for s, _ in v))),
                            int(cal.searchsorted(max(e for _, e in v), "right")) - 1) for c, v in spans.items()}
    if "all" not in markets:
        problems.append(f"{store.root}/instruments/all.txt is missing")
    for market in markets:
        unknown = [c for c in store.instruments(market) if not store.has_instrument(c)]
        if unknown:
            problems.append(f"market {market}: {len(unknown)} instrument(s) without features folder "
                            f"({', '.join(sorted(unknown)[:5])}{'...' if len(unknown) > 5 else ''})")

    results = []
    for dirname in sorted(store.feature_dirs()):
        code = binfmt.dirname_to_code(dirname)
        res = InstrumentCheck(code)
        folder = store.root / "features" / dirname
        present = {p.name[:-len(".day.bin")] for p in folder.glob("*.day.bin")}
        res.missing_fields = sorted(set(fields) - present)
        close_path = folder / "close.day.bin"
        if close_path.is_file():
            try:
                start, close = binfmt.read_bin(close_path)
            except (OSError, ValueError) as exc:
                res.problems.append(f"unreadable close.day.bin: {exc}")
                start, close = 0, np.empty(0, dtype="<f4")
            if start + len(close) > len(cal):
                res.problems.append(f"close.day.bin runs {start + len(close) - len(cal)} day(s) past the "
                                    f"calendar end")
                close = close[:max(0, len(cal) - start)]
            res.days = len(close)
            nan = np.isnan(close)
            res.missing_days = int(nan.sum())
            res.longest_nan_run = _longest_run(nan)
            if max_nan_run is not None and res.longest_nan_run > max_nan_run:
                res.problems.append(f"NaN run of {res.longest_nan_run} days (> {max_nan_run})")
            if res.days and res.missing_days == res.days:
                res.problems.append("close is NaN on every day")
            valid = np.nonzero(~nan)[0]
            if len(valid) > 1:
                v = close[valid].astype(np.float64)
                with np.errstate(all="ignore"):
                    ret = v[1:] / v[:-1] - 1
                for k in np.nonzero(np.abs(ret) > JUMP)[0]:
                    day = cal[start + valid[k + 1]]
                    res.jumps.append(f"{day:%Y-%m-%d}: {ret[k]:+.1%}")
            if code in declared and res.days:
                lo, hi = declared[code]
                if (lo, hi) != (start, start + len(close) - 1):
                    res.problems.append(f"data spans {cal[start]:%Y-%m-%d}..{cal[start + res.days - 1]:%Y-%m-%d} "
                                        f"but all.txt says {cal[lo]:%Y-%m-%d}..{cal[hi]:%Y-%m-%d}")
        for name in sorted(present):
            size = (folder / f"{name}.day.bin").stat().st_size
            if size % 4 or size < 4:
                res.problems.append(f"{name}.day.bin has {size} bytes, not a whole number of float32 values")
        results.append(res)
    return CheckReport(str(store.root), len(cal), fields, markets, results, problems)
