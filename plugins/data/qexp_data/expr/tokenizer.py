"""Tokenizer for Qlib expression strings (``Mean($close, 5) / $close``). Hand-written: no eval."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ExpressionError

# Longest operators first so ">=" is not read as ">" then "=".
_OPERATORS = ("**", ">=", "<=", "==", "!=", "+", "-", "*", "/", ">", "<", "&", "|", "~", "(", ")", ",")


@dataclass(frozen=True)
class Token:
    kind: str   # NUMBER, FIELD, NAME, STRING, OP, END
    text: str
    pos: int    # 0-based character offset in the expression


def caret(text: str, pos: int) -> str:
    """The expression with a caret line under ``pos``, for error messages."""
    return f"\n  {text}\n  {' ' * pos}^"


def error_at(text: str, pos: int, message: str) -> ExpressionError:
    return ExpressionError(f"{message} at position {pos} in expression {text!r}:{caret(text, pos)}")


def _scan_number(text: str, i: int) -> int:
    n = len(text)
    j = i
    while j < n and text[j].isdigit():
        j += 1
    if j < n and text[j] == ".":
        j += 1
        while j < n and text[j].isdigit():
            j += 1
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k].isdigit():
            while k < n and text[k].isdigit():
                k += 1
            j = k
    return j


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; an unknown character raises :class:`ExpressionError` with its position."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            j = _scan_number(text, i)
            if j < n and (text[j].isalpha() or text[j] == "_"):
                raise error_at(text, j, f"Malformed number {text[i:j + 1]!r}")
            tokens.append(Token("NUMBER", text[i:j], i))
            i = j
            continue
        if ch == "$":
            j = i + 1
            if j < n and text[j] == "$":
                raise error_at(text, i, "Point-in-time fields ($$name) are not supported")
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if j == i + 1:
                raise error_at(text, i, "Expected a field name after '$'")
            tokens.append(Token("FIELD", text[i + 1:j], i))
            i = j
            continue
        if ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            tokens.append(Token("NAME", text[i:j], i))
            i = j
            continue
        if ch in "'\"":
            j = text.find(ch, i + 1)
            if j < 0:
                raise error_at(text, i, "Unterminated string")
            tokens.append(Token("STRING", text[i + 1:j], i))
            i = j + 1
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(Token("OP", op, i))
                i += len(op)
                break
        else:
            raise error_at(text, i, f"Unexpected character {ch!r}")
    tokens.append(Token("END", "", n))
    return tokens
