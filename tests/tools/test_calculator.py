"""The calculator evaluates arithmetic from a parsed AST and refuses everything else."""

from __future__ import annotations

import pytest

from baton.agents.tools.base import ToolContext, ToolError
from baton.agents.tools.calculator import Calculator, calculate


@pytest.mark.parametrize(("expr", "want"), [
    ("2 * (3 + 4)", "14"), ("7 / 2", "3.5"), ("7 // 2", "3"), ("-2 ** 2", "-4"), ("2 ** -1", "0.5"),
    ("10 % 4", "2"), ("1.5e3 + 1", "1501"), ("+3", "3"), ("2 ** 100", str(2**100)),
])
def test_arithmetic(expr: str, want: str) -> None:
    assert calculate(expr) == want


@pytest.mark.parametrize("expr", [
    "__import__('os')",
    "__import__('os').system('true')",
    "(1).__class__",
    "x + 1",
    "abs(-1)",
    "[1, 2]",
    "'a' * 3",
    "lambda: 1",
    "True + 1",
    "1 if 1 else 2",
    "1 < 2",
    "(1, 2)",
    "{}",
    "1j",
])
def test_refuses_anything_but_arithmetic(expr: str) -> None:
    with pytest.raises(ToolError, match="not arithmetic"):
        calculate(expr)


@pytest.mark.parametrize(("expr", "why"), [
    ("9 ** 9 ** 9", "exponent"), ("10 ** 10 ** 10", "exponent"), ("2 ** 1000", "too large"),
    ("10.0 ** 300 * 10.0 ** 300", "too large"), ("1 / 0", "division by zero"), ("1" * 300, "longer than"),
    ("1 +", "not an expression"), ("import os", "not an expression"),
])
def test_refuses_huge_or_broken_input(expr: str, why: str) -> None:
    with pytest.raises(ToolError, match=why):
        calculate(expr)


def test_tool_interface() -> None:
    calc = Calculator()
    assert calc.run({"expression": "1+1"}, ToolContext()) == "2"
    with pytest.raises(ToolError, match="missing argument"):
        calc.run({}, ToolContext())
