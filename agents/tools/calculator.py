"""``calculator``: arithmetic on a parsed AST; never ``eval``.

Only number literals, ``+ - * / // % **`` and unary signs are allowed; names, calls,
attributes, subscripts and everything else are refused. Exponents are capped and results are
bounded so ``9**9**9`` or ``10**10**10`` cannot hang a worker.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

from .base import ToolContext, ToolError

__all__ = ["MAX_EXPONENT", "MAX_LENGTH", "Calculator", "calculate"]

MAX_LENGTH = 200
MAX_EXPONENT = 100
_MAX_ABS = 10**100

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _check(value: float) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("result is not a finite number")
    if abs(value) > _MAX_ABS:
        raise ToolError("result too large")
    return value


def _eval(node: ast.AST) -> float:
    match node:
        case ast.Expression(body=body):
            return _eval(body)
        case ast.Constant(value=int() | float() as value) if not isinstance(value, bool):
            return _check(value)
        case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
            return _check(_UNARY[type(op)](_eval(operand)))
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            a, b = _eval(left), _eval(right)
            if isinstance(op, ast.Pow) and abs(b) > MAX_EXPONENT:
                raise ToolError(f"exponent {b} too large (max {MAX_EXPONENT})")
            try:
                return _check(_BINARY[type(op)](a, b))
            except ZeroDivisionError:
                raise ToolError("division by zero") from None
            except OverflowError:
                raise ToolError("result too large") from None
    raise ToolError(f"not arithmetic: {type(node).__name__} is not allowed")


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression; ``ToolError`` for anything else."""
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an expression: {exc.msg}") from None
    value = _eval(tree)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


class Calculator:
    """Safe arithmetic: ``{"expression": "2 * (3 + 4)"}`` -> ``"14"``."""

    name = "calculator"
    description = "arithmetic on numbers with + - * / // % ** and parentheses; args: expression"

    def run(self, args: Mapping[str, str], ctx: ToolContext) -> str:
        """Evaluate ``args["expression"]``."""
        if "expression" not in args:
            raise ToolError("missing argument 'expression'")
        return calculate(args["expression"])
