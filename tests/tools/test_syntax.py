"""The one tool-call syntax, parsed from model text (the tiny model never writes it)."""

from __future__ import annotations

from baton.agents.tools.syntax import MAX_CALLS, ParsedCall, format_call, parse_calls


def test_parses_calls_on_their_own_lines() -> None:
    text = (
        "Let me compute.\n"
        'TOOL: calculator {"expression": "2 * (3 + 4)"}\n'
        "and check the time\n"
        '  TOOL: clock {"format": "unix"}  \n'
        'TOOL: kb_search {"query": "overfitting", "k": 2, "exact": true}\n'
    )
    assert parse_calls(text) == [
        ParsedCall("calculator", {"expression": "2 * (3 + 4)"}),
        ParsedCall("clock", {"format": "unix"}),
        ParsedCall("kb_search", {"query": "overfitting", "k": "2", "exact": "true"}),
    ]


def test_ignores_what_does_not_parse() -> None:
    text = (
        'say TOOL: calculator {"expression": "1"}\n'  # not at the start of a line
        "TOOL: calculator {not json}\n"
        'TOOL: calculator {"expression": {"nested": "no"}}\n'
        "TOOL: 9bad {}\n"
        "TOOL: calculator\n"
        "Conversion Conversion Conversion\n"
    )
    assert parse_calls(text) == []


def test_limit_and_round_trip() -> None:
    line = format_call("calculator", {"expression": "1+1"})
    assert line == 'TOOL: calculator {"expression":"1+1"}'
    assert parse_calls("\n".join([line] * 10)) == [ParsedCall("calculator", {"expression": "1+1"})] * MAX_CALLS
