"""Write a complete Qlib-format folder atomically (used by ``data synth`` and ``data import-csv``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from . import binfmt
from .atomic import atomic_dir


@dataclass
class InstrumentData:
    """One instrument's series: ``values[field][k]`` belongs to calendar index ``start + k`` (no gaps)."""
    code: str
    start: int
    values: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + len(next(iter(self.values.values()))) - 1


def write_instrument(root: Path, inst: InstrumentData) -> None:
    """Write every field's .bin file of one instrument under ``root/features``."""
    folder = root / "features" / binfmt.code_to_dirname(inst.code)
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in inst.values.items():
        with open(folder / f"{name.lower()}.{binfmt.FREQ}.bin", "wb") as fh:
            fh.write(binfmt.bin_bytes(inst.start, values))


def write_calendar(root: Path, calendar: pd.DatetimeIndex) -> None:
    (root / "calendars").mkdir(parents=True, exist_ok=True)
    (root / "calendars" / f"{binfmt.FREQ}.txt").write_text(binfmt.calendar_text(calendar), encoding="utf-8")


def write_markets(root: Path, markets: Mapping[str, Mapping[str, list[tuple[pd.Timestamp, pd.Timestamp]]]]) -> None:
    (root / "instruments").mkdir(parents=True, exist_ok=True)
    for name, spans in markets.items():
        (root / "instruments" / f"{name.lower()}.txt").write_text(binfmt.instruments_text(spans),
                                                                  encoding="utf-8")


def write_folder(dst: str | os.PathLike, calendar: pd.DatetimeIndex, instruments: Iterable[InstrumentData],
                 markets: Mapping[str, Mapping[str, list]]) -> Path:
    """Write calendar, instruments and features into a temp folder beside ``dst``, then swap it in (``dst``
    must be missing, empty or a data folder: see :func:`~qexp_data.atomic.check_output_folder`)."""
    dst = Path(dst).expanduser().absolute()
    with atomic_dir(dst) as tmp:
        write_calendar(tmp, calendar)
        for inst in instruments:
            write_instrument(tmp, inst)
        write_markets(tmp, markets)
    return dst
