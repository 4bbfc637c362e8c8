"""Printing for the CLI: rich tables on a terminal (plain text otherwise), JSON with ``--json``."""
from __future__ import annotations

import json
import math
import sys
from typing import Any, Sequence

import click


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    return v


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=_jsonable, sort_keys=False))


def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.6g}"
    return str(v)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(str(c), overflow="fold")
    for r in rows:
        table.add_row(*[fmt(v) for v in r])
    stream = sys.stdout
    Console(file=stream, soft_wrap=False, width=None if stream.isatty() else 200).print(table)
