"""Round trips and rejections of the wire format."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.protocol import (
    MAX_MESSAGE_BYTES,
    DeadLetter,
    Error,
    Hop,
    ProtocolError,
    Result,
    Task,
    ToolCall,
    ToolResult,
    decode,
    encode,
    peek_ids,
    schema,
)

MESSAGES = [
    Task(run_id="r", role="planner", task="Explain.", trace=(Hop(role="planner", tokens=3),)),
    Result(run_id="r", role="summarizer", output="done"),
    Error(run_id="r", role="researcher", reason="boom"),
    ToolCall(run_id="r", tool="calculator", args={"expr": "1+2"}),
    ToolResult(run_id="r", tool="calculator", call_id="c", output="3"),
    DeadLetter(run_id="", role="planner", reason="bad", original="{"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    data = encode(msg)  # type: ignore[arg-type]
    assert decode(data) == msg
    tags = {Task: "task", Result: "result", Error: "error", ToolCall: "tool_call",
            ToolResult: "tool_result", DeadLetter: "dead_letter"}
    assert json.loads(data)["type"] == tags[type(msg)]  # type: ignore[index]


def test_ids_and_timestamps_are_filled() -> None:
    a, b = Task(run_id="r", role="p", task="t"), Task(run_id="r", role="p", task="t")
    assert a.id != b.id and len(a.id) == 32 and a.created_at > 0 and a.v == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "malformed JSON"),
        (b"", "empty message"),
        (b'{"type":"nope","run_id":"x"}', "Invalid value 'nope'"),
        (b'{"type":"task","run_id":1,"role":"a","task":"b"}', "Expected `str`, got `int` - at `$.run_id`"),
        (b'{"type":"task","run_id":"x","role":"a"}', "missing required field `task`"),
        (b'{"type":"task","v":2,"run_id":"x","role":"a","task":"b"}', "unsupported protocol version 2"),
        (b'\xff{"type":"task"}', "invalid UTF-8"),
        (b'{"run_id":"x","role":"a","task":"b"}', "missing required field `type`"),
        (b"[" * 50000, "invalid message"),
    ],
)
def test_rejections_name_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=None) as info:
        decode(raw)
    assert reason in str(info.value)


def test_size_limit_is_checked_before_parsing() -> None:
    big = encode(Task(run_id="r", role="p", task="x" * MAX_MESSAGE_BYTES))
    with pytest.raises(ProtocolError, match="too large"):
        decode(big)
    assert decode(encode(Task(run_id="r", role="p", task="x" * 100)), limit=1000)


def test_peek_ids_of_invalid_message() -> None:
    assert peek_ids(b'{"type":"task","run_id":"abc","id":"m1","role":5}') == ("abc", "m1")
    assert peek_ids(b"not json") == (None, None)


def test_schema_lists_every_message_type() -> None:
    text = json.dumps(schema())
    for tag in ("task", "result", "error", "tool_call", "tool_result", "dead_letter"):
        assert f'"{tag}"' in text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_decode_never_raises_anything_but_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


FIELDS = ["type", "v", "id", "run_id", "role", "task", "hop", "trace", "x"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values))
def test_fuzz_structured_json(doc: dict[str, object]) -> None:
    try:
        msg = decode(json.dumps(doc).encode())
    except ProtocolError:
        return
    assert decode(encode(msg)) == msg
