"""The filter grammar on its own: clauses, aliases, quoting and error positions."""
from __future__ import annotations

import pytest

from qexp.exceptions import FilterSyntaxError
from qexp.search import Clause, Order, like_to_regex, matches, parse_filter, parse_order_by


def test_clauses_and_aliases():
    assert parse_filter("") == []
    assert parse_filter("metrics.ic > 0.5") == [Clause("metrics", "ic", ">", 0.5)]
    assert parse_filter("metric.`f1-score` >= 1e-3") == [Clause("metrics", "f1-score", ">=", 0.001)]
    assert parse_filter("params.model.kwargs.lr = '0.1'") == [Clause("params", "model.kwargs.lr", "=", "0.1")]
    assert parse_filter('tag."my tag" LIKE "%x%"') == [Clause("tags", "my tag", "LIKE", "%x%")]
    assert parse_filter("status = 'FINISHED'") == [Clause("attributes", "status", "=", "FINISHED")]
    assert parse_filter("attributes.run_name ILIKE 'a%' and metrics.x != -2") == [
        Clause("attributes", "run_name", "ILIKE", "a%"), Clause("metrics", "x", "!=", -2.0)]
    assert parse_filter("run_id IN ('a', 'b')") == [Clause("attributes", "run_id", "IN", ("a", "b"))]
    assert parse_filter("run_id NOT IN ('a')") == [Clause("attributes", "run_id", "NOT IN", ("a",))]
    assert parse_filter("params.x = 'it''s'") == [Clause("params", "x", "=", "it's")]
    assert parse_filter("attributes.start_time > 1000") == [Clause("attributes", "start_time", ">", 1000.0)]


@pytest.mark.parametrize("bad,pos,words", [
    ("metrics.ic >> 1", 12, "compares numbers"),
    ("params.x > 'a'", 9, "not valid"),
    ("params.x = a", 11, "quote"),
    ("metrics.a > 1 OR metrics.b > 1", 14, "OR"),
    ("metrics. > 1", 9, "expected a key"),
    ("foo = 'x'", 0, "unknown attribute"),
    ("metrics.a > 1 metrics.b > 2", 14, "expected AND"),
    ("metrics.a >", 11, "end of filter"),
    ("metrics.a ~ 1", 10, "unexpected character"),
    ("params.a IN ('x')", 9, "IN is only"),
])
def test_errors_show_position(bad, pos, words):
    with pytest.raises(FilterSyntaxError) as err:
        parse_filter(bad)
    msg = str(err.value)
    assert f"position {pos}" in msg and words in msg
    assert msg.splitlines()[-1].index("^") - 2 == pos  # the caret points at it


def test_order_by():
    assert parse_order_by(["metrics.ic DESC", "params.lr", "start_time asc"]) == [
        Order("metrics", "ic", False), Order("params", "lr", True), Order("attributes", "start_time", True)]
    with pytest.raises(FilterSyntaxError):
        parse_order_by(["metrics.ic SIDEWAYS"])


def test_in_memory_matching():
    row = {"status": "FINISHED", "run_name": "abc", "metrics": {"ic": 0.1}, "params": {"m": "LGB"}, "tags": {}}
    assert matches(Clause("metrics", "ic", ">", 0.05), row)
    assert not matches(Clause("metrics", "missing", ">", 0.05), row)
    assert matches(Clause("params", "m", "ILIKE", "lg%"), row)
    assert not matches(Clause("params", "m", "LIKE", "lg%"), row)
    assert like_to_regex("a_c%", False).match("abcdef")
    assert not like_to_regex("a.c", False).match("abc")
