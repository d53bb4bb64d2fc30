"""The one syntax in which a model's output calls tools.

A tool call is a line of its own::

    TOOL: calculator {"expression": "2 * (3 + 4)"}

``TOOL:``, the tool name, then a JSON object of string arguments (numbers and booleans are
turned into strings). Lines that do not parse are ignored, not errors: model text is
untrusted. At most ``MAX_CALLS`` calls are taken from one output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import msgspec

__all__ = ["MAX_CALLS", "ParsedCall", "format_call", "parse_calls"]

MAX_CALLS = 4
_LINE = re.compile(r"^[ \t]*TOOL:[ \t]*([A-Za-z_][A-Za-z0-9_]{0,63})[ \t]*(\{.*\})[ \t]*$", re.MULTILINE)
_args = msgspec.json.Decoder(dict[str, str | int | float | bool])


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """One tool call found in text."""

    tool: str
    args: dict[str, str] = field(default_factory=dict)


def parse_calls(text: str, *, limit: int = MAX_CALLS) -> list[ParsedCall]:
    """The tool calls written in ``text``, in order, at most ``limit``."""
    calls: list[ParsedCall] = []
    for m in _LINE.finditer(text):
        try:
            raw = _args.decode(m.group(2))
        except (msgspec.DecodeError, RecursionError):
            continue
        args = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in raw.items()}
        calls.append(ParsedCall(m.group(1), args))
        if len(calls) >= limit:
            break
    return calls


def format_call(tool: str, args: dict[str, str]) -> str:
    """The line that calls ``tool`` with ``args`` (inverse of ``parse_calls``)."""
    return f"TOOL: {tool} {msgspec.json.encode(args).decode()}"
