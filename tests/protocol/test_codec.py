"""Round trips and rejections of the wire format."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.protocol import (
    DEFAULT_WORKFLOW,
    KEY_SAFE_PATTERN,
    MAX_MESSAGE_BYTES,
    MAX_PARTS,
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
from tests.conftest import ROOT

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
        (b'{"type":"task","run_id":"","role":"a","task":"b"}', "Expected `str` of length >= 1 - at `$.run_id`"),
        (b'{"type":"task","run_id":"a b","role":"a","task":"b"}', "matching regex"),
        (b'{"type":"task","run_id":"x","role":"","task":"b"}', "- at `$.role`"),
        (b'{"type":"task","run_id":"x","role":"a:*","task":"b"}', "- at `$.role`"),
        (b'{"type":"task","run_id":"x","role":"a","task":"b","hop":-5}', "Expected `int` >= 0 - at `$.hop`"),
        (b'{"type":"task","run_id":"x","role":"a","task":"b","max_hops":-1}', "Expected `int` >= 1 - at `$.max_hops`"),
        (b'{"type":"task","run_id":"x","role":"a","task":"b","max_hops":0}', "Expected `int` >= 1 - at `$.max_hops`"),
        (b'{"type":"task","run_id":"x","role":"a","task":"b","parts":0}', "Expected `int` >= 1 - at `$.parts`"),
        (b'{"type":"task","run_id":"x","role":"a","task":"b","part":-1}', "- at `$.part`"),
        (b'{"type":"task","run_id":"x","role":"a","task":"b","workflow":""}', "- at `$.workflow`"),
        (b'{"type":"tool_call","run_id":"x","tool":"clock","timeout":0}', "Expected `float` > 0.0 - at `$.timeout`"),
        (b'{"type":"task","id":"","run_id":"x","role":"a","task":"b"}', "- at `$.id`"),
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
    assert peek_ids(b'{"run_id":"","id":"a b","hop":-1}') == (None, None)  # invalid ids name nothing


def test_task_defaults_leave_the_hop_limit_to_the_worker() -> None:
    task = decode(b'{"type":"task","run_id":"x","role":"a","task":"b"}')
    assert isinstance(task, Task) and task.max_hops is None and task.workflow == DEFAULT_WORKFLOW
    assert decode(encode(DeadLetter(run_id="", role="planner", reason="r", original=""))).run_id == ""


def test_schema_lists_every_message_type() -> None:
    text = json.dumps(schema())
    for tag in ("task", "result", "error", "tool_call", "tool_result", "dead_letter"):
        assert f'"{tag}"' in text


def test_baton_schema_shows_the_constraints() -> None:
    proc = subprocess.run([sys.executable, "-m", "baton", "schema"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    task = json.loads(proc.stdout)["$defs"]["Task"]["properties"]
    assert task["run_id"]["minLength"] == 1 and task["run_id"]["pattern"] == KEY_SAFE_PATTERN
    assert task["hop"]["minimum"] == 0
    assert task["max_hops"]["anyOf"][0]["minimum"] == 1 and task["max_hops"]["default"] is None
    assert task["parts"]["maximum"] == MAX_PARTS and task["workflow"]["minLength"] == 1
    wf = subprocess.run([sys.executable, "-m", "baton", "schema", "--workflow"], capture_output=True, text=True,
                        timeout=60, cwd=ROOT)
    assert wf.returncode == 0, wf.stderr
    defs = json.loads(wf.stdout)["$defs"]
    assert defs["Split"]["properties"]["count"]["maximum"] == MAX_PARTS
    assert defs["Split"]["properties"]["by"]["enum"] == ["chunks", "copies", "lines", "sentences"]
    assert defs["Route"]["properties"]["source"]["enum"] == ["continuation", "output", "tools"]
    assert defs["RoleSpec"]["properties"]["memory"]["enum"] == ["agent", "none", "run"]
    assert defs["ToolConfig"]["properties"]["timeout"]["exclusiveMinimum"] == 0
    assert defs["RoleSpec"]["properties"]["agent"]["pattern"] == KEY_SAFE_PATTERN


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
