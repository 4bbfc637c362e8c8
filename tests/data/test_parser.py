"""The hand-written expression parser: Qlib syntax, Python precedence, clear errors, no eval."""
from __future__ import annotations

import pytest

from qexp_data.errors import ExpressionError
from qexp_data.expr import extension, parse


@pytest.mark.parametrize("text,canon", [
    ("$close", "$close"),
    ("$Close", "$close"),
    ("Ref($close, 1)", "Ref($close,1)"),
    ("Ref($close,-2)/Ref($close,-1) - 1", "Sub(Div(Ref($close,-2),Ref($close,-1)),1)"),
    ("1 + 2 * 3", "Add(1,Mul(2,3))"),
    ("-$close ** 2", "Neg(Power($close,2))"),
    ("$a - $b - $c", "Sub(Sub($a,$b),$c)"),
    ("($close > 1) & ($open < 2) | ($high == 3)", "Or(And(Gt($close,1),Lt($open,2)),Eq($high,3))"),
    ("$close > $open & $high", "Gt($close,And($open,$high))"),     # Python: & binds tighter than >
    ("Quantile($close, 10, 0.8)", "Quantile($close,10,0.8)"),
    ("Mean($close, 0.5)", "Mean($close,0.5)"),
    ("Mean($close, 5.0)", "Mean($close,5)"),
    ("($high-$low+1e-12)", "Add(Sub($high,$low),1e-12)"),
    ("Corr($close, Log($volume+1), 5)", "Corr($close,Log(Add($volume,1)),5)"),
    ("ChangeInstrument('sh000300', $close)", "ChangeInstrument('SH000300',$close)"),
    ("Mask($close, \"sz000001\")", "Mask($close,'SZ000001')"),
    ("~($close > 1)", "Not(Gt($close,1))"),
    ("If($close>$open, 1, -1)", "If(Gt($close,$open),1,-1)"),
])
def test_parse_canonical(text, canon):
    assert parse(text).canon() == canon


@pytest.mark.parametrize("text,pos,fragment", [
    ("Mean($close, 5", 14, "expected ')'"),
    ("Mean($close 5)", 12, "Unexpected '5'"),
    ("Ref($close, 1) #", 15, "Unexpected character '#'"),
    ("$close +", 8, "end of expression"),
    ("Foo($close)", 0, "Unknown operator 'Foo'"),
    ("Mean($close)", 0, "Mean takes 2 argument(s) Mean(feature, N), got 1"),
    ("Mean($close, -3)", 13, "N must be >= 0"),
    ("Rank($close, 0.5)", 13, "N must be an integer"),
    ("Mean($close, $open)", 13, "N must be a number literal"),
    ("Quantile($close, 5, 2)", 20, "q must be a number in [0, 1]"),
    ("$a > $b > $c", 8, "Chained comparisons"),
    ("$", 0, "Expected a field name"),
    ("$$roe", 0, "Point-in-time"),
    ("12abc", 2, "Malformed number"),
    ("'oops", 0, "Unterminated string"),
    ("__import__('os')", 0, "Unknown operator '__import__'"),
    ("Mean('x', 5)", 5, "a string is not a feature"),
    ("ChangeInstrument($close, $open)", 17, "the instrument must be a quoted code"),
])
def test_malformed_input_reports_position_and_token(text, pos, fragment):
    with pytest.raises(ExpressionError) as exc:
        parse(text)
    msg = str(exc.value)
    assert fragment in msg
    assert f"at position {pos}" in msg
    # The caret line points under the offending character.
    lines = msg.splitlines()
    assert lines[-1].index("^") - 2 == pos and lines[-2].strip() == text.strip()


def test_empty_expression():
    with pytest.raises(ExpressionError, match="Empty expression"):
        parse("   ")


@pytest.mark.parametrize("text,ext", [
    ("$close", (0, 0)), ("Ref($close, 3)", (3, 0)), ("Ref($close, -2)", (0, 2)), ("Mean($close, 5)", (4, 0)),
    ("Mean(Ref($close, 1), 5)", (5, 0)), ("Ref($close, 0)", (0, 0)), ("Ref(Mean($close, 5), 0)", (0, 0)),
    ("Corr($close, Ref($volume, 2), 10)", (11, 0)), ("Ref($close,-2)/Ref($close,-1)", (0, 2)),
    ("Delta($close, 3)", (2, 0)), ("EMA($close, 0.5)", (18, 0)), ("Mean($close, 0)", (0, 0)),
])
def test_extension_matches_qlib(text, ext):
    assert extension(parse(text)) == ext
