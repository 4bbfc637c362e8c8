"""The runs table: its query (experiments, filter, sort, columns, page) parsed from the URL, and the
columns to show."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from qexp.ext import FilterSyntaxError, parse_order_by

from .formatting import query
from .quant import HEADLINE_METRICS

DEFAULT_ORDER = "attributes.start_time DESC"
PAGE_SIZES = (25, 50, 100, 250, 500, 1000)
DEFAULT_SIZE = 100
ATTRIBUTE_COLUMNS = {"run_name": "name", "status": "status", "start_time": "started", "end_time": "ended"}
MAX_DEFAULT_METRICS = 6
MAX_DEFAULT_PARAMS = 4
# Qlib's long portfolio metric names, as `qexp runs list` heads them
SHORT_LABELS = {"1day.excess_return_with_cost.annualized_return": "ann. excess (cost)",
                "1day.excess_return_with_cost.information_ratio": "IR (cost)",
                "1day.excess_return_with_cost.max_drawdown": "max DD (cost)",
                "1day.excess_return_without_cost.annualized_return": "ann. excess",
                "1day.excess_return_without_cost.information_ratio": "IR",
                "1day.excess_return_without_cost.max_drawdown": "max DD"}


@dataclass
class Column:
    kind: str   # metrics | params | tags
    key: str

    @property
    def id(self) -> str:
        return f"{self.kind}.{self.key}"

    @property
    def label(self) -> str:
        return SHORT_LABELS.get(self.key, self.key)

    def value(self, row: dict[str, Any]) -> Any:
        return row.get(self.kind, {}).get(self.key)

    def order_key(self) -> str | None:
        return None if "`" in self.key else f"{self.kind}.`{self.key}`"


@dataclass
class RunsQuery:
    exp_ids: list[str]
    filter: str = ""
    order: str = DEFAULT_ORDER
    columns: list[Column] = field(default_factory=list)
    chosen: bool = False        # columns came from the URL (else picked from the page's rows)
    size: int = DEFAULT_SIZE
    token: str | None = None
    _parsed: Any = None         # the order, parsed once (None: not yet; False: malformed)

    @classmethod
    def from_params(cls, params: Any) -> RunsQuery:
        exp_ids = [e for e in params.getlist("exp") if e]
        cols = []
        for c in params.getlist("col"):
            kind, _, key = c.partition(".")
            if kind in ("metrics", "params", "tags") and key:
                cols.append(Column(kind, key))
        try:
            size = int(params.get("size") or DEFAULT_SIZE)
        except ValueError:
            size = DEFAULT_SIZE
        return cls(exp_ids=exp_ids, filter=params.get("filter", "").strip(),
                   order=params.get("order", "").strip() or DEFAULT_ORDER, columns=cols, chosen=bool(cols),
                   size=min(max(size, 1), PAGE_SIZES[-1]), token=params.get("page_token") or None)

    def order_list(self) -> list[str]:
        return [self.order]

    def check_order(self) -> None:
        """:class:`FilterSyntaxError` with the position when the order is malformed."""
        self._parsed = False
        self._parsed = parse_order_by(self.order_list())[0]

    def params(self, **changes: Any) -> list[tuple[str, Any]]:
        """The URL query of this table, with ``changes`` (``order``, ``page_token`` ...)."""
        d = {"filter": self.filter, "order": self.order if self.order != DEFAULT_ORDER else "",
             "size": self.size if self.size != DEFAULT_SIZE else "", "page_token": self.token}
        d.update(changes)
        out: list[tuple[str, Any]] = [("exp", e) for e in self.exp_ids]
        out += [(k, d[k]) for k in ("filter", "order", "size")]
        if self.chosen:
            out += [("col", c.id) for c in self.columns]
        if d.get("page_token"):
            out.append(("page_token", d["page_token"]))
        return out

    def url(self, base: str = "/runs", **changes: Any) -> str:
        return query(base, self.params(**changes))

    def header(self, order_key: str | None) -> tuple[str | None, str | None]:
        """``(link, direction)`` of a column header: the link sorts descending first, ascending when already
        descending; the direction (``ASC``/``DESC``) when the table is sorted by this key."""
        if order_key is None:
            return None, None
        current = self.sorted_by(order_key)
        new = f"{order_key} ASC" if current == "DESC" else f"{order_key} DESC"
        return self.url(order=new, page_token=None), current

    def sorted_by(self, order_key: str) -> str | None:
        """``ASC``/``DESC`` when the table is sorted by this key."""
        if self._parsed is None:
            try:
                self.check_order()
            except FilterSyntaxError:
                pass
        if not self._parsed:
            return None
        try:
            mine = _parse_key(order_key)
        except FilterSyntaxError:
            return None
        cur = self._parsed
        if (mine.entity, mine.key) == (cur.entity, cur.key):
            return "ASC" if cur.ascending else "DESC"
        return None


@lru_cache(maxsize=4096)
def _parse_key(order_key: str) -> Any:
    return parse_order_by([order_key])[0]


def default_columns(rows: list[dict[str, Any]]) -> list[Column]:
    """Headline metrics present in these rows (else the first few), then params that differ between them."""
    metric_keys = sorted({k for r in rows for k in r.get("metrics", {})})
    metrics = [k for k in HEADLINE_METRICS if k in metric_keys][:MAX_DEFAULT_METRICS]
    if not metrics:
        metrics = [k for k in metric_keys if not k.startswith("system/")][:MAX_DEFAULT_METRICS]
    param_keys = sorted({k for r in rows for k in r.get("params", {})})
    varying = [k for k in param_keys if len({r.get("params", {}).get(k) for r in rows}) > 1]
    varying.sort(key=lambda k: (max(len(str(r.get("params", {}).get(k, ""))) for r in rows) > 40, k))
    return [Column("metrics", k) for k in metrics] + [Column("params", k) for k in varying[:MAX_DEFAULT_PARAMS]]


def available_keys(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Metric/param/tag keys of these rows, for the column chooser."""
    return {kind: sorted({k for r in rows for k in r.get(kind, {})}) for kind in ("metrics", "params", "tags")}
