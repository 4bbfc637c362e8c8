"""Recursive-descent parser for Qlib expressions. No ``eval``: the grammar is explicit.

Precedence follows Python's (Qlib builds expressions with Python operators), lowest first::

    comparison  a > b, >=, <, <=, ==, !=   (not chained: write (a > b) & (b > c))
    |           Or
    &           And
    + -         Add, Sub
    * /         Mul, Div
    unary - + ~ Neg, (identity), Not
    **          Power (right-associative)
    primary     number, $field, 'string', Name(args...), (expr)
"""
from __future__ import annotations

from functools import lru_cache

from ..errors import ExpressionError
from .nodes import (
    ARITY,
    EWM_CAPABLE,
    INSTRUMENT,
    INSTRUMENT_SIGNATURE,
    OPERATORS,
    PAIR_ROLLING,
    QUANTILE,
    REF,
    ROLLING,
    SIGNATURE,
    Call,
    Const,
    Field,
    Node,
    Str,
)
from .tokenizer import Token, error_at, tokenize

_COMPARISONS = {">": "Gt", ">=": "Ge", "<": "Lt", "<=": "Le", "==": "Eq", "!=": "Ne"}


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # -- helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "OP" and self.tok.text in ops

    def expect(self, op: str) -> Token:
        if not self.is_op(op):
            raise self.unexpected(f"expected {op!r}")
        return self.advance()

    def unexpected(self, what: str, tok: Token | None = None) -> ExpressionError:
        tok = tok or self.tok
        shown = "end of expression" if tok.kind == "END" else f"{tok.text!r}"
        return error_at(self.text, tok.pos, f"Unexpected {shown}: {what}")

    # -- grammar
    def parse(self) -> Node:
        if self.tok.kind == "END":
            raise ExpressionError("Empty expression: write a field such as '$close' or an operator call "
                                  "such as 'Mean($close, 5)'")
        node = self.comparison()
        if self.tok.kind != "END":
            raise self.unexpected("expected an operator or the end of the expression")
        return node

    def comparison(self) -> Node:
        left = self.or_expr()
        if self.is_op(*_COMPARISONS):
            op = self.advance()
            right = self.or_expr()
            if self.is_op(*_COMPARISONS):
                raise error_at(self.text, self.tok.pos, "Chained comparisons are not supported (Qlib would "
                               "silently misread them); write (a > b) & (b > c)")
            left = Call(_COMPARISONS[op.text], (left, right))
        return left

    def or_expr(self) -> Node:
        left = self.and_expr()
        while self.is_op("|"):
            self.advance()
            left = Call("Or", (left, self.and_expr()))
        return left

    def and_expr(self) -> Node:
        left = self.additive()
        while self.is_op("&"):
            self.advance()
            left = Call("And", (left, self.additive()))
        return left

    def additive(self) -> Node:
        left = self.term()
        while self.is_op("+", "-"):
            op = self.advance().text
            left = Call("Add" if op == "+" else "Sub", (left, self.term()))
        return left

    def term(self) -> Node:
        left = self.unary()
        while self.is_op("*", "/"):
            op = self.advance().text
            left = Call("Mul" if op == "*" else "Div", (left, self.unary()))
        return left

    def unary(self) -> Node:
        if self.is_op("-"):
            self.advance()
            operand = self.unary()
            if isinstance(operand, Const):
                return Const(-operand.value)
            return Call("Neg", (operand,))
        if self.is_op("+"):
            self.advance()
            return self.unary()
        if self.is_op("~"):
            self.advance()
            return Call("Not", (self.unary(),))
        return self.power()

    def power(self) -> Node:
        base = self.primary()
        if self.is_op("**"):
            self.advance()
            return Call("Power", (base, self.unary()))
        return base

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "NUMBER":
            self.advance()
            is_float = any(c in tok.text for c in ".eE")
            return Const(float(tok.text) if is_float else int(tok.text))
        if tok.kind == "FIELD":
            self.advance()
            return Field(tok.text.lower())
        if tok.kind == "STRING":
            self.advance()
            return Str(tok.text)
        if tok.kind == "NAME":
            return self.call()
        if self.is_op("("):
            self.advance()
            node = self.comparison()
            self.expect(")")
            return node
        raise self.unexpected("expected a number, a $field, an operator call or '('")

    def call(self) -> Node:
        name_tok = self.advance()
        name = name_tok.text
        if name not in OPERATORS:
            known = ", ".join(sorted(OPERATORS))
            raise error_at(self.text, name_tok.pos, f"Unknown operator {name!r} (known: {known})")
        if not self.is_op("("):
            raise self.unexpected(f"expected '(' after {name}")
        self.advance()
        args: list[tuple[Node, Token]] = []
        if not self.is_op(")"):
            while True:
                start = self.tok
                args.append((self.comparison(), start))
                if self.is_op(","):
                    self.advance()
                    continue
                break
        close = self.expect(")")
        return _validate(self.text, name, args, name_tok, close)


def _signature(name: str) -> str:
    kind = OPERATORS[name]
    return name + (INSTRUMENT_SIGNATURE[name] if kind == INSTRUMENT else SIGNATURE[kind])


def _window(text: str, name: str, node: Node, tok: Token, *, allow_negative: bool = False) -> Const:
    """Validate a window argument N: a number literal, integer (or 0 < N < 1 where Qlib allows it)."""
    if not isinstance(node, Const):
        raise error_at(text, tok.pos, f"{name}: N must be a number literal, got {node.canon()!r}")
    v = node.value
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, float):
        if name in EWM_CAPABLE and 0 < v < 1:
            return Const(v)
        allowed = " or a fraction in (0, 1) for an exponentially weighted mean" if name in EWM_CAPABLE else ""
        raise error_at(text, tok.pos, f"{name}: N must be an integer{allowed}, got {node.value!r}")
    if v < 0 and not allow_negative:
        raise error_at(text, tok.pos, f"{name}: N must be >= 0 (0 = expanding window), got {v}")
    return Const(v)


def _feature(text: str, name: str, node: Node, tok: Token) -> Node:
    if isinstance(node, Str):
        raise error_at(text, tok.pos, f"{name}: a string is not a feature; write a $field or an expression")
    return node


def _validate(text: str, name: str, args: list[tuple[Node, Token]], name_tok: Token, close: Token) -> Node:
    kind = OPERATORS[name]
    if len(args) != ARITY[kind]:
        raise error_at(text, name_tok.pos, f"{name} takes {ARITY[kind]} argument(s) {_signature(name)}, "
                       f"got {len(args)}")
    nodes = [a for a, _ in args]
    toks = [t for _, t in args]
    if kind == INSTRUMENT:
        code_i = 0 if name == "ChangeInstrument" else 1
        code = nodes[code_i]
        if not isinstance(code, Str):
            raise error_at(text, toks[code_i].pos, f"{name}: the instrument must be a quoted code, "
                           f"e.g. {_signature(name)}")
        out: list[Node] = [nodes[0], nodes[1]]
        out[code_i] = Str(code.value.upper())
        out[1 - code_i] = _feature(text, name, nodes[1 - code_i], toks[1 - code_i])
        return Call(name, tuple(out))
    if kind == REF:
        return Call(name, (_feature(text, name, nodes[0], toks[0]),
                           _window(text, name, nodes[1], toks[1], allow_negative=True)))
    if kind == ROLLING:
        return Call(name, (_feature(text, name, nodes[0], toks[0]), _window(text, name, nodes[1], toks[1])))
    if kind == QUANTILE:
        q = nodes[2]
        if not isinstance(q, Const) or not 0 <= q.value <= 1:
            raise error_at(text, toks[2].pos, f"Quantile: q must be a number in [0, 1], got {q.canon()!r}")
        return Call(name, (_feature(text, name, nodes[0], toks[0]), _window(text, name, nodes[1], toks[1]),
                           Const(float(q.value))))
    if kind == PAIR_ROLLING:
        return Call(name, (_feature(text, name, nodes[0], toks[0]), _feature(text, name, nodes[1], toks[1]),
                           _window(text, name, nodes[2], toks[2])))
    return Call(name, tuple(_feature(text, name, n, t) for n, t in zip(nodes, toks)))


@lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """Parse a Qlib expression into a tree; raises :class:`~qexp_data.errors.ExpressionError` showing where."""
    if not isinstance(text, str):
        raise ExpressionError(f"An expression must be a string, got {type(text).__name__}")
    return _Parser(text).parse()
