"""Python functions as tools: schemas from type hints and docstrings, async and plain calls."""

from __future__ import annotations

import asyncio
import enum
import json
from typing import Annotated, Literal

import msgspec
import openai.types.chat
import pytest

from baton.agents.tools import ToolContext, ToolError
from baton.agents.tools.calculator import Calculator
from baton.agents.tools.schema import function_tool, tool_def, wire_name


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Address(msgspec.Struct):
    city: str
    zip: str = ""


async def open_ticket(title: str, priority: Priority = Priority.LOW,
                      tags: list[str] | None = None, count: Annotated[int, msgspec.Meta(ge=1)] = 1,
                      ship_to: Address | None = None, ctx: ToolContext | None = None) -> dict[str, object]:
    """Open a support ticket.

    Longer text that the model does not need.

    Args:
        title: what the ticket is about,
            in a few words.
        priority: how urgent it is.
    """
    return {"title": title, "priority": priority.value, "count": count, "role": ctx.role if ctx else ""}


class Opaque:
    pass


def refund(order: int, mode: Literal["full", "partial"] = "full") -> str:
    """Refund an order."""
    return f"refunded {order} ({mode})"


def test_the_schema_comes_from_hints_and_docstring() -> None:
    tool = function_tool(open_ticket)
    assert tool.name == "open_ticket" and tool.description == "Open a support ticket." and tool.is_async
    params = tool.parameters
    assert params["type"] == "object" and params["required"] == ["title"] and params["additionalProperties"] is False
    props = params["properties"]
    assert set(props) == {"title", "priority", "tags", "count", "ship_to"}  # the context is no argument
    assert props["title"] == {"type": "string", "description": "what the ticket is about, in a few words."}
    assert props["count"]["minimum"] == 1 and props["priority"]["description"] == "how urgent it is."
    assert "$defs" in params and {"Address", "Priority"} <= set(params["$defs"])
    definition = tool.definition()
    parsed = openai.types.chat.ChatCompletionFunctionToolParam(**msgspec.to_builtins(definition))  # type: ignore[typeddict-item]
    assert parsed["function"]["name"] == "open_ticket"
    assert function_tool(refund).parameters["properties"]["mode"] == {"enum": ["full", "partial"], "default": "full"}


def test_calls_check_arguments_and_pass_the_context() -> None:
    tool = function_tool(open_ticket)
    out = tool.run({"title": "broken", "priority": "high", "count": "2"}, ToolContext(role="triage"))
    assert json.loads(out) == {"title": "broken", "priority": "high", "count": 2, "role": "triage"}
    assert json.loads(asyncio.run(tool.arun({"title": "x"})))["priority"] == "low"
    for bad in ({}, {"title": "x", "count": 0}, {"title": "x", "extra": 1}, {"title": "x", "priority": "urgent"}):
        with pytest.raises(ToolError, match="bad arguments for 'open_ticket'"):
            tool.run(bad, ToolContext())
    plain = function_tool(refund, name="billing.refund", description="Give money back.")
    assert plain.run({"order": 7}, ToolContext()) == "refunded 7 (full)"
    assert asyncio.run(plain.arun({"order": 7, "mode": "partial"})) == "refunded 7 (partial)"
    assert plain.definition().function.name == wire_name("billing.refund") == "billing__refund"
    assert plain.definition().function.description == "Give money back."


def test_signatures_without_a_schema_are_refused_at_registration() -> None:
    def star(*args: int) -> str:
        return ""

    def unresolved(x: Missing) -> str:  # type: ignore[name-defined]  # noqa: F821
        return ""

    def opaque(x: Opaque) -> str:
        return ""

    with pytest.raises(TypeError, match="star"):
        function_tool(star)
    with pytest.raises(TypeError, match="no JSON schema"):
        function_tool(opaque)
    with pytest.raises(TypeError, match="'unresolved': its type hints cannot be resolved"):
        function_tool(unresolved)


def test_built_in_tools_are_offered_with_string_arguments() -> None:
    definition = tool_def(Calculator())
    assert definition.function.name == "calculator"
    assert definition.function.parameters["additionalProperties"] == {"type": "string"}
    assert tool_def(function_tool(refund)) == function_tool(refund).definition()
