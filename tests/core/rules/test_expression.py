"""The rule expression language: semantics, safety and error messages."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.core.rules.expression import (
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING,
    Expression,
    RuleError,
    compile_expression,
)

FIELDS = {"a": 1, "b": 2, "c": 3, "amount": 250.0, "channel": "ecom", "zero": 0, "name": "bob", "flag": True}


def ev(source: str, values: dict[str, Any] | None = None) -> Any:
    return compile_expression(source).evaluate(FIELDS if values is None else values)


# --- precedence and associativity --------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a + b * c", 7),
        ("(a + b) * c", 9),
        ("c - b - a", 0),  # left-associative
        ("c - (b - a)", 2),
        ("c * 8 / b / 4", 3.0),  # left-associative
        ("b * c / 4", 1.5),
        ("-b * c", -6),
        ("-b - c", -5),
        ("- -b", 2),
        ("c - -b", 5),
        ("a + b * c - c / b", 5.5),
        ("-(a + b)", -3),
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ("not false or true", True),
        ("not (false or true)", False),
        ("not a > b", True),  # not binds looser than comparison
        ("a + b == c and c > b", True),
        ("a < b < c", True),  # chained, as in Python
        ("c > b > b", False),
        ("a < c > b", True),
        ("a == 1 == 1.0", True),
        ("a or b and zero", True),
        ("zero or a and b", True),
        ("zero and a or b", True),
        ("not not flag", True),
        ("a < b == true", False),  # chained: (a < b) and (b == true)
        ("(a < b) == true", True),
    ],
)
def test_precedence_and_associativity(source: str, expected: Any) -> None:
    result = ev(source)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [("1 + 2 * 3", 7), ("10 - 4 - 3", 3), ("64 / 4 / 2", 8.0), ("-2 * 3", -6), ("2 * 3 * 4 > 23", True)],
)
def test_constant_expressions_fold_to_the_same_value(source: str, expected: Any) -> None:
    assert ev(source, {}) == expected


@given(st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_arithmetic_and_chains_agree_with_python(a: int, b: int, c: int) -> None:
    values = {"a": a, "b": b, "c": c}
    assert ev("a + b * c", values) == a + b * c
    assert ev("a - b - c", values) == a - b - c
    assert ev("-a * b + -c", values) == -a * b + -c
    assert ev("a < b <= c", values) == (a < b <= c)
    assert ev("a == b or b != c and not a > c", values) == (a == b or (b != c and not a > c))
    if c != 0:
        assert ev("a / c * b", values) == a / c * b


# --- every operator ------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a == 1", True),
        ("a != 1", False),
        ("a < 2", True),
        ("a <= 1", True),
        ("a > 1", False),
        ("a >= 1", True),
        ("a + 1.5", 2.5),
        ("a - 3", -2),
        ("b * 2.5", 5.0),
        ("c / 2", 1.5),
        ("-amount", -250.0),
        ("flag and a", True),
        ("zero or a", True),
        ("not zero", True),
        ("channel == 'ecom'", True),
        ('channel != "pos"', True),
        ("name < 'carol'", True),  # strings order as strings
        ("name >= 'bob'", True),
        ("1e3", 1000.0),
        ("1.5E-2", 0.015),
        (".5 + 5.", 5.5),
        ("7 / 2", 3.5),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'a\\tb\\n\\\\'", "a\tb\n\\"),
        ("true", True),
        ("false", False),
        ("null", None),
        ("amount > 220 and b >= 2", True),
    ],
)
def test_operators(source: str, expected: Any) -> None:
    result = ev(source)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ('channel in ("ecom", "moto")', {"channel": "ecom"}, True),
        ('channel in ("ecom", "moto")', {"channel": "pos"}, False),
        ('channel not in ("ecom", "moto")', {"channel": "pos"}, True),
        ('channel not in ("ecom", "moto")', {"channel": "moto"}, False),
        ('channel in ("ecom",)', {"channel": "ecom"}, True),  # trailing comma
        ("mcc in (5411, 5812)", {"mcc": 5411.0}, True),  # numbers compare by value
        ("x in (a, b, 'z')", {"x": 2, "a": 1, "b": 2}, True),  # the list need not be constant
        ("x not in (a, b)", {"x": 3, "a": 1}, True),  # a missing item equals nothing
        ("x + 1 in (2, 3)", {"x": 1}, True),
        ("channel in ('ecom') and a == 1", {"channel": "ecom", "a": 1}, True),
        ('channel in ("ecom", "moto")', {}, False),  # a missing value is in nothing ...
        ('channel not in ("ecom", "moto")', {}, False),  # ... and not in nothing either
        ('channel in ("ecom",)', {"channel": ["ecom"]}, False),  # unhashable: no exception
        ('channel not in ("ecom",)', {"channel": ["ecom"]}, True),
        ("x in (1, 2) in (true,)", {"x": 1}, False),  # chained: (x in (1,2)) and ((1,2) in (true,))
    ],
)
def test_membership(source: str, values: dict[str, Any], expected: bool) -> None:
    assert compile_expression(source).evaluate(values) is expected


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("abs(x)", {"x": -3}, 3),
        ("abs(-2.5)", {}, 2.5),
        ("min(x, 2, 7)", {"x": 5}, 2),
        ("max(x, 2, 7)", {"x": 5}, 7),
        ("max(abs(x), 1) * 2", {"x": -4}, 8),
        ("min(amount, 100) > 99", {"amount": 250}, True),
        ("abs(x)", {}, None),
        ("abs(x)", {"x": "3"}, None),
        ("abs(x)", {"x": True}, None),  # bool is not a number here
        ("max(x, 2)", {"x": None}, None),
        ("min(x, 2)", {"x": "a"}, None),
        ("max(x, y, z, 4)", {"x": 1, "y": 9, "z": 3}, 9),
    ],
)
def test_functions(source: str, values: dict[str, Any], expected: Any) -> None:
    assert compile_expression(source).evaluate(values) == expected


# --- None safety, division by zero, strange values -------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("missing > 1", False),
        ("missing < 1", False),
        ("missing == 1", False),
        ("missing != 1", False),  # every comparison with a missing value is false
        ("missing == missing", False),
        ("missing == null", True),  # presence is tested explicitly
        ("missing != null", False),
        ("null == missing", True),
        ("a != null", True),
        ("null == null", True),
        ("not (missing > 1)", True),  # two-valued logic: negation flips the false
        ("missing + 1", None),
        ("-missing", None),
        ("missing * 0", None),
        ("missing + 1 > 0", False),
        ("missing and true", False),
        ("missing or true", True),
        ("missing", None),
        ("a / zero", None),
        ("a / 0", None),
        ("a / 0.0", None),
        ("a / zero * 2 + 1", None),
        ("a / zero > 0", False),
        ("channel + 1", None),  # no arithmetic on strings
        ("channel * 1000000000", None),  # in particular, no string repetition
        ("'a' + 'b'", None),
        ("true + 1", None),
        ("channel > 1", False),  # unorderable types
        ("channel == 1", False),
        ("channel != 1", True),
    ],
)
def test_none_safety_and_division_by_zero(source: str, expected: Any) -> None:
    assert ev(source) == expected


def test_overflow_and_non_finite_values_do_not_raise() -> None:
    huge = 10**400
    assert compile_expression("x / 3").evaluate({"x": huge}) is None
    assert compile_expression("x + 1.5").evaluate({"x": huge}) is None
    assert compile_expression("x * 2 > 1").evaluate({"x": huge}) is True
    assert compile_expression("x > 1").evaluate({"x": math.nan}) is False
    assert compile_expression("x == x").evaluate({"x": math.nan}) is False
    assert math.isnan(compile_expression("x - x").evaluate({"x": math.inf}))
    assert compile_expression("1e999 > 1").evaluate({}) is True


class _Hostile:
    def __bool__(self) -> bool:
        raise RuntimeError("no truth")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no equality")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("no order")

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.parametrize("source", ["x", "x and true", "not x", "x == 1", "x < 1", "x in (1, 2)", "abs(x)", "x + 1"])
def test_exotic_values_never_raise(source: str) -> None:
    expr = compile_expression(source)
    hostile = _Hostile()
    result = expr.evaluate({"x": hostile})
    assert result is None or result is True or result is False or result is hostile
    assert expr.matches({"x": hostile}) is False


def test_missing_mapping_keys_use_get() -> None:
    class Features(dict[str, Any]):
        def __missing__(self, key: str) -> Any:
            raise AssertionError("evaluation must not subscript")

    assert compile_expression("amount > 1 and nope == null").evaluate(Features(amount=2)) is True


# --- errors ----------------------------------------------------------------------------

MALFORMED = [
    ("__import__('os')", "unknown function '__import__' at column 1"),
    ("open('f') == 1", "unknown function 'open' at column 1; the functions are abs, max, min"),
    ("mx(a, b)", "unknown function 'mx' at column 1; did you mean 'max'?"),
    ("amount(1)", "unknown function 'amount'"),
    ("a.b", "unexpected '.' at column 2; attribute access is not supported"),
    ("a.__class__", "unexpected '.' at column 2"),
    ("a[0]", "unexpected '[' at column 2; subscripts are not supported"),
    ("lambda: 1", "'lambda' is not supported at column 1"),
    ("x if y else z", "'if' is not supported at column 3"),
    ("import os", "'import' is not supported at column 1"),
    ("'abc", "unterminated string at column 1"),
    ('a == "abc', "unterminated string at column 6"),
    ("'abc\\", "unterminated string at column 1"),
    ("'\\q'", "unknown escape '\\\\q' at column 2"),
    ("amount >", "unexpected end of expression at column 9; expected a value after '>'"),
    ("amount > 5 and", "unexpected end of expression at column 15; expected a value after 'and'"),
    ("amount > 5)", "unexpected ')' at column 11"),
    ("(amount > 5", "missing ')' at column 12; the '(' at column 1 is not closed"),
    ("max(a, b", "missing ')' at column 9"),
    ("amount = 5", "unexpected '=' at column 8; use '==' to compare"),
    ("a && b", "unexpected '&' at column 3; use 'and'"),
    ("a || b", "unexpected '|' at column 3; use 'or'"),
    ("!a", "unexpected '!' at column 1"),
    ("amount > 5 5", "unexpected number 5 at column 12"),
    ("a b", "unexpected name 'b' at column 3"),
    ("a ** 2", "unexpected '*' at column 4"),
    ("a % 2", "unexpected '%' at column 3"),
    ("(1, 2)", "unexpected ',' at column 3"),
    ("{1: 2}", "unexpected '{' at column 1"),
    ("x in 'ab'", "expected '(' after 'in' at column 6"),
    ("x not in y", "expected '(' after 'not in' at column 10"),
    ("x in ()", "empty list after 'in' at column 6"),
    ("x in (null, 'a')", "null cannot be listed after 'in' at column 7"),
    ("abs(1, 2)", "abs() at column 1 takes exactly 1 argument, got 2"),
    ("abs()", "abs() at column 1 takes exactly 1 argument, got 0"),
    ("max(1)", "max() at column 1 takes at least 2 arguments, got 1"),
    ("max(1,,2)", "unexpected ',' at column 7"),
    ("x < null", "null cannot be compared with '<' at column 3"),
    ("x == null == y", "null cannot be part of a chained comparison"),
    ("True", "unknown name 'True' at column 1; write 'true'"),
    ("x == None", "write 'null'"),
    ("1.2.3", "invalid number '1.2.3' at column 1"),
    ("12abc > 1", "invalid number '12abc' at column 1"),
    ("1e > 1", "invalid number '1e' at column 1"),
    ("a == not b", "unexpected 'not' at column 6"),
    ("a not b", "unexpected 'not' at column 3"),
    ("é > 1", "unexpected 'é' at column 1"),
    ("a\x00", "unexpected character U+0000 at column 2"),
    ("a ; b", "unexpected ';' at column 3"),
    ("", "empty expression"),
    ("  \n ", "empty expression"),
    ("(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1), "nested too deeply (more than 50 levels) at column 51"),
    ("-" * (MAX_NESTING + 1) + "1", "nested too deeply"),
    ("not " * (MAX_NESTING + 1) + "x", "nested too deeply"),
    ("abs(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1), "nested too deeply"),
    ("1" + " + 1" * 500, "expression is 2001 characters long; the limit is 2000"),
]


@pytest.mark.parametrize(("source", "message"), MALFORMED, ids=[repr(s[:24]) for s, _ in MALFORMED])
def test_malformed_expressions_say_what_and_where(source: str, message: str) -> None:
    with pytest.raises(RuleError) as info:
        compile_expression(source)
    assert message in str(info.value)
    if " at column " in message:
        assert info.value.column is not None


def test_error_column_is_an_attribute() -> None:
    with pytest.raises(RuleError) as info:
        compile_expression("amount > 220 and )")
    assert info.value.column == 18
    assert str(info.value) == "unexpected ')' at column 18; expected a value"


def test_non_string_source_is_refused() -> None:
    with pytest.raises(RuleError, match="must be a string, got int"):
        compile_expression(42)  # type: ignore[arg-type]


def test_limits_are_inclusive() -> None:
    source = "1" + " + 1" * ((MAX_EXPRESSION_LENGTH - 1) // 4)
    source += " " * (MAX_EXPRESSION_LENGTH - len(source))
    assert len(source) == MAX_EXPRESSION_LENGTH
    assert compile_expression(source).evaluate({}) == 500
    deep = "(" * MAX_NESTING + "x" + ")" * MAX_NESTING
    assert compile_expression(deep).evaluate({"x": 7}) == 7
    assert compile_expression("not " * MAX_NESTING + "x").evaluate({"x": 1}) is True


def test_nesting_counts_operators_of_rising_precedence() -> None:
    assert compile_expression(" - ".join(["a + b"] * 200)).evaluate({"a": 1, "b": 1}) == 2  # one level
    assert compile_expression(" and ".join(["a > 1"] * 200)).evaluate({"a": 2}) is True
    level = "a or b and c < d + e * abs("  # six levels at a time
    compile_expression(level * 8 + "x" + ")" * 8)
    with pytest.raises(RuleError, match="nested too deeply"):
        compile_expression(level * 9 + "x" + ")" * 9)


@pytest.mark.parametrize(
    "source",
    [
        "x in (" * MAX_NESTING + "1" + ")" * MAX_NESTING,
        "abs(" * MAX_NESTING + "x" + ")" * MAX_NESTING,
        "-(" * (MAX_NESTING // 2) + "x" + ")" * (MAX_NESTING // 2),
        "a or b and c < d + e * abs(" * 8 + "x" + ")" * 8,
    ],
)
def test_the_deepest_expressions_fit_on_a_busy_stack(source: str) -> None:
    def at_depth(frames: int) -> Any:
        if frames:
            return at_depth(frames - 1)
        return compile_expression(source)._fn({"x": 1})

    at_depth(500)  # a RecursionError here would mean the nesting limit is too generous


def test_known_names() -> None:
    known = {"amount", "card_tx_count_24h", "channel"}
    assert compile_expression("amount > 1 and max(amount, 2) > 1", known_names=known).names == {"amount"}
    with pytest.raises(RuleError) as info:
        compile_expression("channel == 'ecom' and amout > 220", known_names=known)
    assert str(info.value) == "unknown field 'amout' at column 23; did you mean 'amount'?"
    assert info.value.column == 23
    with pytest.raises(RuleError) as info:
        compile_expression("zzz > 1", known_names=known)
    assert str(info.value) == "unknown field 'zzz' at column 1"
    with pytest.raises(RuleError, match="card_tx_count_24h"):
        compile_expression("card_tx_count_42h >= 3", known_names=known)


TYPES = {"amount": "number", "card_tx_count_24h": "number", "channel": "text", "mcc": "text"}


@pytest.mark.parametrize(
    "source, message",
    [
        ("channel > 5", "channel > 5 compares channel (text) with 5 (a number), which is never true at column 1; "
                        "compare channel with text in quotes, as in channel == 'ecom'"),
        ("amount > 'abc'", "amount > 'abc' compares amount (a number) with 'abc' (text), which is never true at column 1; "
                           "compare amount with a number, as in amount > 100"),
        ("'5' <= amount", "compares '5' (text) with amount (a number)"),
        ("channel == 5", "compares channel (text) with 5 (a number)"),
        ("1 < amount < channel", "compares amount (a number) with channel (text)"),
        ("channel in ('ecom', 5)", "compares channel (text) with 5 (a number)"),
        ("amount not in (1, 'x')", "compares amount (a number) with 'x' (text)"),
        ("channel * 2 > 1", "channel is text: arithmetic needs numbers"),
        ("-mcc < 0", "mcc is text: arithmetic needs numbers"),
        ("max(amount, channel) > 1", "channel is text: max() needs numbers"),
        ("amount + 1 > channel", "compares amount + 1 (a number) with channel (text)"),
        ("channel == mcc and amount > 'abc'", "amount > 'abc' compares"),
    ],
)
def test_field_types_refuse_comparisons_that_never_hit(source: str, message: str) -> None:
    with pytest.raises(RuleError) as info:
        compile_expression(source, known_names=TYPES)
    assert message in str(info.value)
    assert info.value.column is not None


@pytest.mark.parametrize(
    "source",
    ["channel == 'ecom'", "channel > 'a'", "channel == mcc", "amount * 2 > card_tx_count_24h", "channel == null",
     "amount != null", "channel in ('ecom', 'moto')", "not channel", "abs(amount - 3) < card_tx_count_24h",
     "amount > 100 or channel == 'pos'", "amount == true"],
)
def test_field_types_accept_well_typed_expressions(source: str) -> None:
    assert compile_expression(source, known_names=TYPES).source == source


# --- the Expression object -------------------------------------------------------------


def test_expression_object() -> None:
    e = compile_expression("amount > 220 and channel in ('ecom', 'moto') or abs(x) > 1")
    assert e.names == {"amount", "channel", "x"}
    assert e.source == "amount > 220 and channel in ('ecom', 'moto') or abs(x) > 1"
    assert e == compile_expression(e.source) and hash(e) == hash(compile_expression(e.source))
    assert e != compile_expression("amount > 1")
    assert repr(compile_expression("a > 1")) == "Expression('a > 1')"
    assert isinstance(e, Expression)
    assert e.matches({"amount": 300, "channel": "moto"}) is True
    assert e.matches({}) is False


@pytest.mark.parametrize(
    ("source", "predicate"),
    [("a > 1", True), ("a and b", True), ("not a", True), ("flag", True), ("true", True), ("x in (1,)", True),
     ("a * 2", False), ("'s'", False), ("1", False), ("abs(a)", False), ("-a", False)],
)
def test_predicate(source: str, predicate: bool) -> None:
    assert compile_expression(source).predicate is predicate


# --- properties --------------------------------------------------------------------------

_VOCABULARY = [
    "a", "b", "amount", "channel", "abs", "min", "max", "open", "__import__", "1", "2.5", "1e3", "-", "+", "*", "/",
    "==", "!=", "<", "<=", ">", ">=", "and", "or", "not", "in", "(", ")", ",", "'ecom'", '"moto"', "true", "false",
    "null", ".", "[", "]", "=", "'", "lambda", ":", "**", "0",
]  # fmt: skip


def _compiles_or_rule_error(source: str) -> Expression | None:
    try:
        return compile_expression(source)
    except RuleError:
        return None


@settings(max_examples=300)
@given(st.text(max_size=120))
def test_arbitrary_text_compiles_or_raises_rule_error(source: str) -> None:
    _compiles_or_rule_error(source)


@settings(max_examples=500)
@given(st.lists(st.sampled_from(_VOCABULARY), max_size=25).map(" ".join))
def test_token_soup_compiles_or_raises_rule_error(source: str) -> None:
    _compiles_or_rule_error(source)


_NAMES = st.sampled_from(["a", "b", "c", "amount", "channel"])
_SAFE_TEXT = st.text(alphabet="abcdeXYZ 019_-", max_size=6)
_LEAVES = st.one_of(
    _NAMES,
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    _SAFE_TEXT.map(lambda s: f"'{s}'"),
    st.sampled_from(["true", "false", "null", "0", "0.0"]),
)
_BINARY = ["+", "-", "*", "/", "==", "!=", "<", "<=", ">", ">=", "and", "or"]


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(_BINARY), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda e: f"(not {e})"),
        inner.map(lambda e: f"(-{e})"),
        inner.map(lambda e: f"abs({e})"),
        st.tuples(st.sampled_from(["min", "max"]), st.lists(inner, min_size=2, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
        st.tuples(inner, st.sampled_from(["in", "not in"]), st.lists(inner, min_size=1, max_size=3)).map(
            lambda t: f"({t[0]} {t[1]} ({', '.join(t[2])}))"
        ),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} < {t[1]} <= {t[2]})"),
    )


_EXPRESSIONS = st.recursive(_LEAVES, _extend, max_leaves=12)
_VALUES = st.dictionaries(
    _NAMES,
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _SAFE_TEXT, st.text(max_size=5)),
)


@settings(max_examples=500)
@given(_EXPRESSIONS, st.lists(_VALUES, min_size=1, max_size=4))
def test_compiled_expressions_never_raise(source: str, mappings: list[dict[str, Any]]) -> None:
    try:
        expr = compile_expression(source)
    except RuleError as exc:  # the generator can write things the language refuses on purpose
        assert any(reason in str(exc) for reason in ("null", "nested too deeply", "characters long")), str(exc)
        return
    for values in mappings:
        # The raw tree, without the last-resort guard of evaluate(): every node must be safe by itself.
        raw = expr._fn(values)
        guarded = expr.evaluate(values)
        assert raw == guarded or (raw != raw and guarded != guarded)  # NaN is not equal to itself
        assert expr.matches(values) is bool(raw)
