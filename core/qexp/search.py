"""MLflow's search grammar subset: ``<entity>.<key> <op> <value>`` clauses joined by AND.

Entities: ``metrics`` (numbers: = != < <= > >=), ``params`` and ``tags`` (quoted strings: = != LIKE ILIKE),
``attributes`` (``status``, ``run_name``, ``run_id``, ``artifact_uri`` strings with = != LIKE ILIKE and
``run_id IN (...)``; ``start_time``/``end_time`` numbers in ms). A bare key is an attribute.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .exceptions import FilterSyntaxError

ENTITY_ALIASES = {
    "metric": "metrics", "metrics": "metrics",
    "param": "params", "params": "params", "parameter": "params", "parameters": "params",
    "tag": "tags", "tags": "tags",
    "attribute": "attributes", "attributes": "attributes", "attr": "attributes", "run": "attributes",
}
STRING_ATTRS = {"status", "run_name", "run_id", "artifact_uri", "user_id", "experiment_id"}
NUMERIC_ATTRS = {"start_time", "end_time", "created"}
ATTR_ALIASES = {"run name": "run_name", "runname": "run_name", "created": "start_time", "name": "run_name"}
NUM_OPS = {"=", "!=", "<", "<=", ">", ">="}
STR_OPS = {"=", "!=", "LIKE", "ILIKE"}


@dataclass(frozen=True)
class Clause:
    entity: str   # metrics | params | tags | attributes
    key: str
    op: str       # = != < <= > >= LIKE ILIKE IN NOT IN
    value: Any    # float, str, or tuple of str for IN


@dataclass(frozen=True)
class Order:
    entity: str
    key: str
    ascending: bool


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<bt>`[^`]*`)
  | (?P<num>[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<punct>[(),.])
  | (?P<word>[A-Za-z_][A-Za-z0-9_\-:/]*)
""", re.VERBOSE)


def _tokenize(s: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            raise FilterSyntaxError(_err(s, pos, f"unexpected character {s[pos]!r}"))
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group(kind), pos))
        pos = m.end()
    return out


def _err(s: str, pos: int, msg: str) -> str:
    return f"invalid filter at position {pos}: {msg}\n  {s}\n  {' ' * pos}^"


def _unquote(tok: str) -> str:
    if tok[0] == "`":
        return tok[1:-1]
    q = tok[0]
    body = tok[1:-1]
    if q == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


class _Parser:
    def __init__(self, s: str):
        self.s = s
        self.toks = _tokenize(s)
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str, int]:
        t = self.peek()
        if t is None:
            raise FilterSyntaxError(_err(self.s, len(self.s), "unexpected end of filter"))
        self.i += 1
        return t

    def parse(self) -> list[Clause]:
        clauses = [self.clause()]
        while self.peek() is not None:
            kind, text, pos = self.take()
            if kind == "word" and text.upper() == "AND":
                clauses.append(self.clause())
            elif kind == "word" and text.upper() == "OR":
                raise FilterSyntaxError(_err(self.s, pos, "OR is not supported; only AND joins clauses"))
            else:
                raise FilterSyntaxError(_err(self.s, pos, f"expected AND, found {text!r}"))
        return clauses

    def key(self) -> tuple[str, str]:
        kind, text, pos = self.take()
        if kind in ("str", "bt"):
            return "attributes", self._attr(_unquote(text), pos)
        if kind != "word":
            raise FilterSyntaxError(_err(self.s, pos, f"expected a key like metrics.x, params.y, tags.z or "
                                                      f"attributes.status, found {text!r}"))
        nxt = self.peek()
        if nxt is not None and nxt[1] == "." and text.lower() in ENTITY_ALIASES:
            self.take()
            entity = ENTITY_ALIASES[text.lower()]
            parts = []
            kind2, text2, pos2 = self.take()
            if kind2 in ("str", "bt"):
                parts.append(_unquote(text2))
            elif kind2 == "word":
                parts.append(text2)
                # dotted keys such as params.model.kwargs.lr
                while (nxt2 := self.peek()) is not None and nxt2[1] == ".":
                    self.take()
                    k3, t3, p3 = self.take()
                    if k3 not in ("word", "num"):
                        raise FilterSyntaxError(_err(self.s, p3, f"expected a key part after '.', found {t3!r}"))
                    parts.append(t3)
            else:
                raise FilterSyntaxError(_err(self.s, pos2, f"expected a key after '{text}.', found {text2!r}"))
            key = ".".join(parts)
            if entity == "attributes":
                key = self._attr(key, pos2)
            return entity, key
        if text.lower() in ENTITY_ALIASES and nxt is not None and nxt[1] != ".":
            raise FilterSyntaxError(_err(self.s, pos, f"'{text}' must be followed by '.' and a key"))
        return "attributes", self._attr(text, pos)

    def _attr(self, key: str, pos: int) -> str:
        k = ATTR_ALIASES.get(key.lower(), key.lower())
        if k not in STRING_ATTRS and k not in NUMERIC_ATTRS:
            raise FilterSyntaxError(_err(self.s, pos, f"unknown attribute {key!r}; known: "
                                                      f"{', '.join(sorted(STRING_ATTRS | NUMERIC_ATTRS))}"))
        return k

    def clause(self) -> Clause:
        entity, key = self.key()
        kind, text, pos = self.take()
        op = text.upper()
        if kind == "word" and op == "NOT":
            k2, t2, p2 = self.take()
            if t2.upper() != "IN":
                raise FilterSyntaxError(_err(self.s, p2, f"expected IN after NOT, found {t2!r}"))
            op = "NOT IN"
        elif kind == "op":
            op = {"==": "=", "<>": "!="}.get(text, text)
        elif not (kind == "word" and op in ("LIKE", "ILIKE", "IN")):
            raise FilterSyntaxError(_err(self.s, pos, f"expected an operator (= != < <= > >= LIKE ILIKE IN), "
                                                      f"found {text!r}"))
        numeric = entity == "metrics" or (entity == "attributes" and key in NUMERIC_ATTRS)
        if op in ("IN", "NOT IN"):
            if entity != "attributes" or key not in ("run_id", "status", "run_name"):
                raise FilterSyntaxError(_err(self.s, pos, f"{op} is only supported for attributes.run_id, "
                                                          f"status and run_name"))
            return Clause(entity, key, op, self.value_list())
        allowed = NUM_OPS if numeric else STR_OPS
        if op not in allowed:
            raise FilterSyntaxError(_err(self.s, pos, f"operator {op} is not valid for {entity}.{key}; "
                                                      f"use one of {' '.join(sorted(allowed))}"))
        vk, vt, vp = self.take()
        if numeric:
            if vk != "num":
                raise FilterSyntaxError(_err(self.s, vp, f"{entity}.{key} compares numbers; found {vt!r}"))
            return Clause(entity, key, op, float(vt))
        if vk != "str":
            raise FilterSyntaxError(_err(self.s, vp, f"{entity}.{key} compares strings; quote the value, "
                                                     f"e.g. '{vt}'"))
        return Clause(entity, key, op, _unquote(vt))

    def value_list(self) -> tuple[str, ...]:
        k, t, p = self.take()
        if t != "(":
            raise FilterSyntaxError(_err(self.s, p, "expected '(' to start the IN list"))
        vals = []
        while True:
            k, t, p = self.take()
            if k != "str":
                raise FilterSyntaxError(_err(self.s, p, f"IN lists hold quoted strings, found {t!r}"))
            vals.append(_unquote(t))
            k, t, p = self.take()
            if t == ")":
                return tuple(vals)
            if t != ",":
                raise FilterSyntaxError(_err(self.s, p, f"expected ',' or ')' in the IN list, found {t!r}"))


def parse_filter(filter_string: str) -> list[Clause]:
    """Parse a filter; an empty string gives no clauses. Errors show the position of the problem."""
    if not filter_string or not filter_string.strip():
        return []
    return _Parser(filter_string).parse()


def parse_order_by(order_by: list[str]) -> list[Order]:
    """Parse ``["metrics.ic DESC", "params.lr", "attributes.start_time ASC"]``."""
    out = []
    for item in order_by:
        p = _Parser(item)
        entity, key = p.key()
        asc = True
        t = p.peek()
        if t is not None:
            p.take()
            if t[1].upper() not in ("ASC", "DESC"):
                raise FilterSyntaxError(_err(item, t[2], f"expected ASC or DESC, found {t[1]!r}"))
            asc = t[1].upper() == "ASC"
            extra = p.peek()
            if extra is not None:
                raise FilterSyntaxError(_err(item, extra[2], "unexpected text after the direction"))
        out.append(Order(entity, key, asc))
    return out


def like_to_regex(pattern: str, case_insensitive: bool) -> re.Pattern:
    """SQL LIKE (``%`` any run, ``_`` one character) as an anchored regex."""
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(f"^{rx}$", re.S | (re.I if case_insensitive else 0))


def row_value(row: dict, entity: str, key: str) -> Any:
    if entity == "attributes":
        return {"run_name": row.get("run_name"), "created": row.get("start_time")}.get(key, row.get(key))
    return (row.get(entity) or {}).get(key)


def matches(clause: Clause, row: dict) -> bool:
    """In-memory evaluation of one clause against a search row (used by backends without a query engine)."""
    v = row_value(row, clause.entity, clause.key)
    if v is None:
        return False
    op, target = clause.op, clause.value
    if op in ("IN", "NOT IN"):
        return (str(v) in target) == (op == "IN")
    if op in ("LIKE", "ILIKE"):
        return bool(like_to_regex(target, op == "ILIKE").match(str(v)))
    if isinstance(target, float):
        try:
            v = float(v)
        except (TypeError, ValueError):
            return False
    else:
        v = str(v)
    return {"=": v == target, "!=": v != target, "<": v < target, "<=": v <= target,
            ">": v > target, ">=": v >= target}[op]
