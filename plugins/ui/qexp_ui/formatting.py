"""Jinja filters and small helpers shared by the pages."""
from __future__ import annotations

import datetime as dt
import math
import re
import time
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup, escape

STATUS_CLASS = {"RUNNING": "running", "FINISHED": "finished", "FAILED": "failed", "SCHEDULED": "scheduled"}


def ms_time(ms: Any) -> str:
    if ms is None:
        return "—"
    return dt.datetime.fromtimestamp(int(ms) / 1000).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: Any) -> str:
    if ms is None or ms < 0:
        return "—"
    s = int(ms // 1000)
    if s < 60:
        return f"{ms / 1000:.1f} s" if ms < 10_000 else f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    return f"{h // 24}d {h % 24}h"


def ago(ms: Any) -> str:
    if ms is None:
        return "—"
    return duration(now_ms() - int(ms)) + " ago"


def now_ms() -> int:
    return int(time.time() * 1000)


def num(v: Any) -> str:
    """Metric values: 6 significant digits, no exponent for ordinary magnitudes."""
    if v is None:
        return "—"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if f == int(f) and abs(f) < 1e12:
        return str(int(f))
    if 1e-4 <= abs(f) < 1e9:
        return f"{f:.6g}"
    return f"{f:.4e}"


def short(v: Any, n: int = 48) -> str:
    s = "" if v is None else str(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def query(base: str, params: list[tuple[str, Any]]) -> str:
    """``base?k=v&...`` keeping repeated keys and dropping empty values."""
    items = [(k, v) for k, v in params if v not in (None, "")]
    return base + ("?" + urlencode(items) if items else "")


def dotbreak(v: Any) -> Markup:
    """A dotted key escaped; a long one (``model.kwargs.learning_rate``) may break after each dot."""
    if len(str(v)) <= 16:
        return Markup(escape(str(v)))
    return Markup("<wbr>").join(escape(part) for part in re.split(r"(?<=\.)", str(v)))


def status_class(status: str | None) -> str:
    return STATUS_CLASS.get(status or "", "scheduled")


FILTERS = {"ms_time": ms_time, "duration": duration, "ago": ago, "num": num, "short": short,
           "status_class": status_class, "dotbreak": dotbreak}
