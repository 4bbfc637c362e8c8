"""Printing for the CLI: rich tables on a terminal (plain text otherwise), JSON with ``--json``.

Every cell, title and header is plain text, never rich markup: user data such as ``[train]`` or
``[red]x`` prints verbatim. Numbers show 4 significant digits; NaN and infinities print as ``nan``, ``inf``
and ``-inf`` (a blank cell means "not logged"). ``--json`` output is strict JSON: NaN and +-inf, which JSON
cannot hold, are the strings ``"nan"``, ``"inf"`` and ``"-inf"``; ``null`` means "not logged".
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import click

WIDE = 250  # width of tables written to a pipe or file when $COLUMNS is not set: nothing is cut
GAP = 2     # spaces between two columns


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float replaced by ``"nan"``/``"inf"``/``"-inf"`` (recursively)."""
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def _default(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):
        return json_safe(v.item())
    return str(v)


def print_json(obj: Any) -> None:
    """Strict JSON on stdout (see the module docstring for NaN and infinities)."""
    click.echo(json.dumps(json_safe(_numpy_floats(obj)), indent=2, default=_default, sort_keys=False,
                          allow_nan=False))


def _numpy_floats(v: Any) -> Any:
    # numpy floats are floats for json_safe; pandas' NaT and NA become None
    if isinstance(v, dict):
        return {k: _numpy_floats(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_numpy_floats(x) for x in v]
    if type(v).__module__ == "numpy" and hasattr(v, "item"):
        return v.item()
    if type(v).__name__ in ("NaTType", "NAType"):
        return None
    return v


def fmt(v: Any) -> str:
    """A cell: numbers with 4 significant digits, ``nan``/``inf``/``-inf`` spelled out, None blank."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) or type(v).__name__.startswith("float"):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f"{f:.4g}"
    return str(v)


def terminal_width() -> int:
    """``$COLUMNS`` when set, else the terminal's width, else :data:`WIDE` (a pipe or a file)."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return int(cols)
    if sys.stdout.isatty():
        import shutil
        return shutil.get_terminal_size((100, 24)).columns
    return WIDE


def _console(width: int | None = None) -> Any:
    from rich.console import Console
    return Console(file=sys.stdout, soft_wrap=False, width=width or terminal_width(), highlight=False,
                   emoji=False, markup=False)


def _text(s: Any) -> Any:
    from rich.text import Text
    return Text(s if isinstance(s, str) else fmt(s))


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A table of ``rows``; long text folds inside its cell, numbers never split."""
    from rich import box
    from rich.table import Table
    table = Table(title=_text(title) if title else None, box=box.SIMPLE_HEAD, show_edge=False,
                  title_justify="left")
    cells = [[fmt(v) for v in r] for r in rows]
    for i, c in enumerate(columns):
        numeric = bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows)
        longest = max([len(cell[i]) for cell in cells] or [0])
        table.add_column(_text(str(c)), no_wrap=numeric, overflow="fold", min_width=longest if numeric else None)
    for r in cells:
        table.add_row(*[_text(v) for v in r])
    _console().print(table)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) or type(v).__name__.startswith("float")


@dataclass
class Col:
    """A column of :func:`print_fitted_table`: ``fixed`` columns keep their width (ids, numbers), the others
    shrink to ``min_width`` with an ellipsis; ``drop`` ranks the columns left out first when even that is too
    wide (lower first; None never)."""
    header: str
    fixed: bool = True
    min_width: int = 6
    drop: int | None = None
    right: bool = False


def print_fitted_table(cols: Sequence[Col], rows: Sequence[Sequence[Any]], width: int | None = None) -> list[str]:
    """One line per row at the terminal's width: no cell wraps; columns are dropped (returned, by header)
    and text columns shortened with an ellipsis until the table fits."""
    from rich import box
    from rich.table import Table
    width = width or terminal_width()
    cells = [[fmt(v) for v in r] for r in rows]
    natural = [max([len(line) for line in c.header.split("\n")] + [len(r[i]) for r in cells])
               for i, c in enumerate(cols)]
    keep = list(range(len(cols)))

    def total(idx: list[int], shrunk: bool) -> int:
        w = [min(natural[i], cols[i].min_width) if shrunk and not cols[i].fixed else natural[i] for i in idx]
        return sum(w) + GAP * (len(idx) - 1)

    dropped: list[str] = []
    for i in sorted((i for i, c in enumerate(cols) if c.drop is not None), key=lambda i: cols[i].drop):  # type: ignore[arg-type, return-value]
        if total(keep, shrunk=True) <= width:
            break
        keep.remove(i)
        dropped.append(cols[i].header)
    # share what is left between the text columns, none over its natural width
    flex = [i for i in keep if not cols[i].fixed]
    widths = {i: natural[i] for i in keep}
    spare = width - total([i for i in keep if cols[i].fixed], shrunk=False) - GAP * len(flex)
    for n, i in enumerate(sorted(flex, key=lambda i: natural[i])):
        share = max(cols[i].min_width, spare // (len(flex) - n))
        widths[i] = min(natural[i], share)
        spare -= widths[i]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for i in keep:
        table.add_column(_text(cols[i].header), no_wrap=True, overflow="ellipsis", width=widths[i],
                         justify="right" if cols[i].right else "left")
    for r in cells:
        table.add_row(*[_text(r[i]) for i in keep])
    _console(max(width, sum(widths.values()) + GAP * (len(keep) - 1))).print(table)
    return dropped
