"""Qlib's expression language: tokenizer, parser, operator kernels and a panel evaluator.

    from qexp_data.expr import parse
    parse("Mean($close, 5) / $close").canon()  # 'Div(Mean($close,5),$close)'
"""
from .evaluator import Evaluator, Layout, top_frame
from .nodes import OPERATORS, Call, Const, Field, Node, Str
from .parser import parse
from .windows import extension, fields, max_window

__all__ = ["parse", "Evaluator", "Layout", "top_frame", "OPERATORS", "Call", "Const", "Field", "Node", "Str",
           "extension", "fields", "max_window"]
