"""The ``calculator`` tool: arithmetic read by :mod:`ast`, never ``eval``.

Small models are bad at arithmetic and good at writing ``(3+4)*12``; this evaluates exactly that
and nothing else. Allowed: numbers (int, float), ``+ - * / // % **``, parentheses, unary ``+``/``-``,
the functions in :data:`FUNCTIONS` and the constants ``pi`` and ``e``. Everything else — names,
attribute access, subscripts, calls of anything not listed, imports, lambdas, comprehensions,
strings — is rejected with :class:`CalculatorError` naming what was found. Exponents and results
are bounded (:data:`MAX_EXPONENT`, :data:`MAX_DIGITS`) so ``9**9**9`` is refused instead of hanging.

>>> calculate("(3 + 4) * 12")
84
>>> calculate("sqrt(16) + 2**10")
1028.0
>>> calculate("__import__('os')")
Traceback (most recent call last):
...
kb.agent.calculator.CalculatorError: not allowed in a calculation: name '__import__'
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

__all__ = ["FUNCTIONS", "MAX_DIGITS", "MAX_EXPONENT", "CalculatorError", "calculate"]

MAX_EXPONENT = 10_000
"""Largest absolute exponent of ``**`` (``2**10000`` has ~3000 digits; ``9**9**9`` is refused)."""
MAX_DIGITS = 4_000
"""Largest integer result, in decimal digits."""
MAX_CHARS = 500
"""Longest expression accepted."""

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": math.factorial,
}
CONSTANTS = {"pi": math.pi, "e": math.e}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FULLWIDTH = str.maketrans("（）＋－×÷＊／，０１２３４５６７８９．", "()+-*/*/,0123456789.")


class CalculatorError(ValueError):
    """The expression is not plain arithmetic, or its result is out of bounds."""


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_DIGITS * 3.33:
        raise CalculatorError(f"result too large (more than {MAX_DIGITS} digits)")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculatorError(f"not allowed in a calculation: constant {node.value!r}")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"exponent {right} is too large (limit {MAX_EXPONENT})")
        if isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and right > 0:
            if left not in (0, 1, -1) and right * math.log10(abs(left)) > MAX_DIGITS:
                raise CalculatorError(f"result too large (more than {MAX_DIGITS} digits)")
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise CalculatorError("result too large") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise CalculatorError(f"not allowed in a calculation: name {node.id!r}")
    if isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in FUNCTIONS:
            what = func.id if isinstance(func, ast.Name) else type(func).__name__.lower()
            raise CalculatorError(
                f"not allowed in a calculation: name {what!r}"
                if isinstance(func, ast.Name)
                else f"not allowed in a calculation: call of {what}"
            )
        if node.keywords:
            raise CalculatorError("not allowed in a calculation: keyword arguments")
        args = [_eval(a) for a in node.args]
        if func.id == "factorial" and (not args or not isinstance(args[0], int) or args[0] > 1000):
            raise CalculatorError("factorial takes one integer up to 1000")
        try:
            return _check_size(FUNCTIONS[func.id](*args))
        except (ValueError, TypeError, OverflowError) as exc:
            raise CalculatorError(f"{func.id}: {exc}") from None
    names = {ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Lambda: "lambda"}
    what = names.get(type(node), type(node).__name__)  # type: ignore[call-overload]
    raise CalculatorError(f"not allowed in a calculation: {what}")


def calculate(expression: str) -> int | float:
    """The value of the arithmetic ``expression`` (full-width digits and ×÷ accepted)."""
    text = (expression or "").translate(_FULLWIDTH).replace("^", "**").strip().rstrip("=").strip()
    if not text:
        raise CalculatorError("empty expression")
    if len(text) > MAX_CHARS:
        raise CalculatorError(f"expression longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        if text.lstrip().startswith(("import", "from")):
            raise CalculatorError("not allowed in a calculation: import") from None
        raise CalculatorError(f"not an arithmetic expression: {text[:80]!r}") from None
    value = _eval(tree)
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is not a finite number")
    if isinstance(value, complex):
        raise CalculatorError("result is not a real number")
    return value
