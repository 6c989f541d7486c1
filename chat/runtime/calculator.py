"""A safe arithmetic evaluator for the `calculator` tool.

The expression comes from a model (or, through it, from a user), so it is never handed to
`eval`/`exec`/`compile` or even `ast`: a small tokenizer and recursive-descent parser accept only
numbers, arithmetic operators, parentheses and a handful of functions, and compute with `Decimal`
so that `0.1 + 0.2` is `0.3`.

Grammar (lowest precedence first)::

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/" | "//" | "%") unary)*      # "%" here is modulo
    unary   := ("+" | "-") unary | power
    power   := postfix (("**" | "^") unary)?                # right-associative, -2**2 == -4
    postfix := primary ("%" ["of" unary])*                  # "%" here is percent
    primary := NUMBER | FUNCTION "(" expr ("," expr)* ")" | "(" expr ")"

`%` is *modulo* when an operand follows it (a number, a function or "("), otherwise it is a
*percent* sign, as is the word "percent": "50%" is 0.5, "17.5% of 2,340" is 409.5, "50% + 1" is
1.5, "10 % 3" is 1. Write "10 % (-3)" for a modulo by a negative number.

Numbers may use thousands separators: a comma directly followed by exactly three digits (and no
fourth) belongs to the number, so "2,340" is 2340 and "1,234,567.5" is 1234567.5. As a consequence
"max(1,234)" is max(1234): separate arguments with ", " (comma and space).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

from .base import ToolError

MAX_LENGTH = 200
MAX_DEPTH = 32
MAX_EXPONENT = 1000
MAX_MAGNITUDE = Decimal("1e100")
SIGNIFICANT_DIGITS = 10

# 110 digits: every integer up to MAX_MAGNITUDE is exact, so `//` and `%` never lose digits.
_CONTEXT = Context(prec=110, rounding=ROUND_HALF_UP, traps=[InvalidOperation, DivisionByZero, Overflow])

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>
        (?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?      # 2,340 / 1,234,567.89
        | \d+(?:\.\d*)? | \.\d+)                   # 42 / 4.2 / 4. / .5
        (?:[eE][+-]?\d+)?                          # 1e6
    )
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|//|[-+*/%^(),\u00d7\u00f7])        # \u00d7 times, \u00f7 divided by
    """,
    re.VERBOSE,
)
_OP_ALIASES = {"^": "**", "\u00d7": "*", "\u00f7": "/"}


def _sqrt(args: list[Decimal]) -> Decimal:
    (x,) = _arity("sqrt", args, 1, 1)
    if x < 0:
        raise ToolError("square root of a negative number")
    return _CONTEXT.sqrt(x)


def _abs(args: list[Decimal]) -> Decimal:
    (x,) = _arity("abs", args, 1, 1)
    return _CONTEXT.abs(x)


def _round(args: list[Decimal]) -> Decimal:
    """Half away from zero (round(2.5) == 3), like a pocket calculator rather than Python."""
    x, *rest = _arity("round", args, 1, 2)
    digits = rest[0] if rest else Decimal(0)
    if digits != digits.to_integral_value(context=_CONTEXT) or abs(digits) > 50:
        raise ToolError("round() digits must be a whole number between -50 and 50")
    places = int(digits)
    exponent = x.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -places:  # already has no more decimals than asked
        return x
    return x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=_CONTEXT)


def _min(args: list[Decimal]) -> Decimal:
    return min(_arity("min", args, 1, 100))


def _max(args: list[Decimal]) -> Decimal:
    return max(_arity("max", args, 1, 100))


def _arity(name: str, args: list[Decimal], low: int, high: int) -> list[Decimal]:
    if not low <= len(args) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise ToolError(f"{name}() takes {expected} argument(s), got {len(args)}")
    return args


FUNCTIONS: dict[str, Callable[[list[Decimal]], Decimal]] = {
    "sqrt": _sqrt,
    "abs": _abs,
    "round": _round,
    "min": _min,
    "max": _max,
}


def _tokenize(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if match is None:
            raise ToolError(f"unexpected character {expression[pos]!r} at position {pos + 1}")
        pos = match.end()
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "space":
            continue
        if kind == "name":
            text = text.lower()
            if text == "percent":  # "17.5 percent of 2,340"
                kind, text = "op", "%"
            elif text not in FUNCTIONS and text != "of":
                raise ToolError(
                    f"unknown name {match.group()!r}: only numbers, operators and {_function_list()} are allowed"
                )
        if kind == "op":
            text = _OP_ALIASES.get(text, text)
        tokens.append((kind, text))
    tokens.append(("end", ""))
    return tokens


def _function_list() -> str:
    return ", ".join(f"{name}()" for name in FUNCTIONS)


class _Parser:
    """Evaluates while it parses; every intermediate value is checked against MAX_MAGNITUDE."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    # ---------------------------------------------------------------- token helpers

    def peek(self, offset: int = 0) -> tuple[str, str]:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def accept(self, *texts: str) -> str | None:
        kind, text = self.peek()
        if kind in ("op", "name") and text in texts:
            self.pos += 1
            return text
        return None

    def expect(self, text: str) -> None:
        if self.accept(text) is None:
            raise ToolError(f"expected {text!r}, found {self.describe(self.peek())}")

    @staticmethod
    def describe(token: tuple[str, str]) -> str:
        return "the end of the expression" if token[0] == "end" else repr(token[1])

    def starts_operand(self, offset: int) -> bool:
        kind, text = self.peek(offset)
        return kind == "number" or (kind == "name" and text in FUNCTIONS) or (kind == "op" and text == "(")

    # ---------------------------------------------------------------- grammar

    def parse(self) -> Decimal:
        value = self.expr()
        if self.peek()[0] != "end":
            raise ToolError(f"unexpected {self.describe(self.peek())}")
        return value

    def expr(self) -> Decimal:
        value = self.term()
        while (op := self.accept("+", "-")) is not None:
            right = self.term()
            value = _check(_CONTEXT.add(value, right) if op == "+" else _CONTEXT.subtract(value, right))
        return value

    def term(self) -> Decimal:
        value = self.unary()
        while True:
            kind, text = self.peek()
            if kind != "op" or text not in ("*", "/", "//", "%"):
                return value
            self.pos += 1
            value = _binary(text, value, self.unary())

    def unary(self) -> Decimal:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ToolError(f"expression nested too deeply (max {MAX_DEPTH} levels)")
        try:
            op = self.accept("+", "-")
            if op is None:
                return self.power()
            value = self.unary()
            return _CONTEXT.minus(value) if op == "-" else value
        finally:
            self.depth -= 1

    def power(self) -> Decimal:
        base = self.postfix()
        if self.accept("**") is None:
            return base
        return _power(base, self.unary())

    def postfix(self) -> Decimal:
        value = self.primary()
        while self.peek() == ("op", "%") and not self.starts_operand(1):
            self.pos += 1
            value = _CONTEXT.divide(value, Decimal(100))
            if self.accept("of") is not None:
                value = _check(_CONTEXT.multiply(value, self.unary()))
        return value

    def primary(self) -> Decimal:
        kind, text = self.peek()
        if kind == "number":
            self.pos += 1
            return _check(_CONTEXT.plus(Decimal(text.replace(",", ""))))
        if kind == "name" and text in FUNCTIONS:
            self.pos += 1
            self.expect("(")
            args = [self.expr()]
            while self.accept(",") is not None:
                args.append(self.expr())
            self.expect(")")
            return _check(FUNCTIONS[text](args))
        if self.accept("(") is not None:
            value = self.expr()
            self.expect(")")
            return value
        if kind == "end":
            raise ToolError("unexpected end of expression")
        raise ToolError(f"unexpected {text!r}")


def _check(value: Decimal) -> Decimal:
    if abs(value) > MAX_MAGNITUDE:
        raise ToolError("result too large (limit 1e100)")
    return value


def _binary(op: str, left: Decimal, right: Decimal) -> Decimal:
    if op == "*":
        return _check(_CONTEXT.multiply(left, right))
    if right == 0:
        raise ToolError("division by zero")
    if op == "/":
        return _check(_CONTEXT.divide(left, right))
    # Floor division and modulo with Python's signs: the remainder takes the divisor's sign.
    quotient = _CONTEXT.divide_int(left, right)
    remainder = _CONTEXT.subtract(left, _CONTEXT.multiply(right, quotient))
    if remainder != 0 and (remainder < 0) != (right < 0):
        quotient = _CONTEXT.subtract(quotient, Decimal(1))
        remainder = _CONTEXT.add(remainder, right)
    return _check(quotient if op == "//" else remainder)


def _power(base: Decimal, exponent: Decimal) -> Decimal:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent too large (limit {MAX_EXPONENT})")
    if base == 0:
        if exponent < 0:
            raise ToolError("division by zero")
        return Decimal(1) if exponent == 0 else Decimal(0)
    if base < 0 and exponent != exponent.to_integral_value(context=_CONTEXT):
        raise ToolError("a negative number cannot be raised to a fractional power")
    # Estimate the size first so that 10**999 is refused without computing it.
    if _CONTEXT.multiply(_CONTEXT.log10(_CONTEXT.abs(base)), exponent) > 100:
        raise ToolError("result too large (limit 1e100)")
    return _check(_CONTEXT.power(base, exponent))


def evaluate(expression: str) -> Decimal:
    """Evaluate an arithmetic expression exactly; raise ToolError (with a readable message) otherwise."""
    if not isinstance(expression, str):
        raise ToolError("expression must be a string")
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"expression too long (max {MAX_LENGTH} characters)")
    # Models often copy the question's punctuation ("17.5% of 2,340?", "2 + 2 =").
    text = expression.strip().rstrip("?=").strip()
    if not text:
        raise ToolError("expression is empty")
    try:
        return _Parser(_tokenize(text)).parse()
    except (DivisionByZero, ZeroDivisionError):
        raise ToolError("division by zero") from None
    except Overflow:
        raise ToolError("result too large (limit 1e100)") from None
    except InvalidOperation:
        raise ToolError("the expression has no numeric result") from None


def to_number(value: Decimal) -> int | float:
    """A JSON number: an int when the value (to 10 significant digits) is whole, else a rounded float."""
    if value == value.to_integral_value(context=_CONTEXT):
        return int(value)
    rounded = Decimal(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if rounded == rounded.to_integral_value(context=_CONTEXT):
        return int(rounded)
    return float(rounded)


def calculate(expression: str) -> int | float:
    """evaluate() then to_number(): what the calculator tool reports as `result`."""
    return to_number(evaluate(expression))
