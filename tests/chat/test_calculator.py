"""The safe arithmetic evaluator behind the `calculator` tool."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chat.runtime.base import ToolError
from chat.runtime.calculator import MAX_DEPTH, MAX_LENGTH, calculate, evaluate, to_number


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("2 ** 3 ** 2", 512),
        ("-2 ** 2", -4),
        ("2 ** -1", 0.5),
        ("+-+3", -3),
        ("0.1 + 0.2", 0.3),
        (".5 * 4", 2),
        ("1e3 + 1", 1001),
        ("2 ^ 8", 256),
    ],
)
def test_calculator_follows_python_arithmetic_with_exact_decimals(expression, expected):
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2,340", 2340),
        ("1,234,567.5 + 0.5", 1234568),
        ("17.5% of 2,340", 409.5),
        ("50%", 0.5),
        ("50% + 1", 1.5),
        ("200 * 15%", 30),
        ("10% of (100 + 50)", 15),
        ("17.5% of 2,340?", 409.5),
        ("17.5 percent of 2,340", 409.5),
        ("2 + 2 =", 4),
    ],
)
def test_calculator_understands_thousands_separators_and_percentages(expression, expected):
    assert calculate(expression) == expected


def test_calculator_treats_a_comma_without_three_digits_as_an_argument_separator():
    assert calculate("max(1, 234)") == 234
    assert calculate("max(1,234)") == 1234  # documented: "1,234" is one number
    assert calculate("min(12,34)") == 12
    with pytest.raises(ToolError):
        calculate("1,2345")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("sqrt(16)", 4),
        ("sqrt(2)", 1.414213562),
        ("sqrt(2) ** 2", 2),
        ("abs(-3.5)", 3.5),
        ("round(2.5)", 3),
        ("round(-2.5)", -3),
        ("round(3.14159, 2)", 3.14),
        ("round(1234, -2)", 1200),
        ("min(3, 1, 2)", 1),
        ("MAX(3, 1, 2)", 3),
    ],
)
def test_calculator_supports_sqrt_abs_round_min_max(expression, expected):
    assert calculate(expression) == expected


def test_calculator_returns_ints_for_whole_values_and_floats_rounded_to_10_significant_digits():
    assert calculate("6 / 3") == 2 and isinstance(calculate("6 / 3"), int)
    assert calculate("1 / 3") == 0.3333333333
    assert calculate("2 / 3") == 0.6666666667
    assert to_number(Decimal("-0")) == 0
    assert evaluate("1 / 4") == Decimal("0.25")


@pytest.mark.parametrize("expression", ["1 / 0", "1 // 0", "5 % 0", "0 ** -1", "1 / (2 - 2)"])
def test_calculator_reports_division_by_zero(expression):
    with pytest.raises(ToolError, match="division by zero"):
        calculate(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('echo hacked')",
        "open('/etc/passwd')",
        "x + 1",
        "pi * 2",
        "lambda: 1",
        "().__class__",
        "(1).real",
        "'abc' * 2",
        '"1" + "2"',
        "eval('1')",
        "exec('x=1')",
        "[1, 2]",
        "{1: 2}",
        "1 if 1 else 2",
        "1; 2",
        "a = 1",
        "2 sqrt(4)",
        "sqrt 4",
        "1 +",
        "()",
        "(1 + 2",
        "1 + 2)",
        "min()",
        "sqrt(1, 2)",
        "round(1.5, 0.5)",
        "of 5",
        "1 < 2",
        "~1",
        "1 & 2",
    ],
)
def test_calculator_rejects_names_and_never_evaluates_python(expression, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the calculator must never evaluate Python")

    monkeypatch.setattr("builtins.eval", forbidden)
    monkeypatch.setattr("builtins.exec", forbidden)
    monkeypatch.setattr("builtins.compile", forbidden)
    with pytest.raises(ToolError):
        calculate(expression)


def test_calculator_names_the_unknown_name_in_its_error():
    with pytest.raises(ToolError, match="unknown name '__import__'"):
        calculate("__import__('os')")


@pytest.mark.parametrize("expression", ["9**9**9", "10 ** 5000", "2 ** 1001"])
def test_calculator_refuses_huge_exponents_without_computing_them(expression):
    with pytest.raises(ToolError, match=r"(exponent|result) too large"):
        calculate(expression)


@pytest.mark.parametrize("expression", ["10 ** 101", "1e100 * 10", "1e101", "1e999999999", "9 ** 999"])
def test_calculator_refuses_results_over_1e100(expression):
    with pytest.raises(ToolError, match="too large"):
        calculate(expression)


def test_calculator_allows_exactly_1e100():
    assert calculate("10 ** 100") == 10**100


def test_calculator_limits_expression_length():
    assert calculate("1" + " + 1" * 49) == 50
    with pytest.raises(ToolError, match="too long"):
        calculate("1" + "+1" * MAX_LENGTH)


def test_calculator_limits_nesting_depth():
    assert calculate("(" * 10 + "1" + ")" * 10) == 1
    with pytest.raises(ToolError, match="nested too deeply"):
        calculate("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ToolError, match="nested too deeply"):
        calculate("-" * (MAX_DEPTH + 1) + "1")


def test_calculator_refuses_complex_results():
    with pytest.raises(ToolError, match="negative"):
        calculate("(-8) ** (1/3)")
    with pytest.raises(ToolError, match="negative"):
        calculate("sqrt(-1)")


@pytest.mark.parametrize("expression", ["", "   ", "?"])
def test_calculator_rejects_empty_expressions(expression):
    with pytest.raises(ToolError, match="empty"):
        calculate(expression)
