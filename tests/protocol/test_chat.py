"""The chat Structs speak OpenAI's exact shape: the official client's types read and write them."""

from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessage

from baton.protocol import ProtocolError
from baton.protocol.chat import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    FunctionCall,
    FunctionDef,
    NamedFunction,
    NamedToolChoice,
    ToolCall,
    ToolDef,
    decode_chat,
    encode_chat,
    from_openai,
    to_openai,
    tool_calls_of,
)

CALL = ToolCall(id="call_1", function=FunctionCall(name="lookup", arguments='{"order": 42}'))


def test_an_assistant_tool_call_message_is_what_openai_parses() -> None:
    msg = ChatMessage(role="assistant", tool_calls=[CALL])
    parsed = ChatCompletionMessage.model_validate(to_openai(msg))
    assert parsed.tool_calls is not None and parsed.tool_calls[0].function.name == "lookup"
    assert parsed.tool_calls[0].function.arguments == '{"order": 42}' and parsed.tool_calls[0].type == "function"
    assert from_openai(parsed.model_dump(), ChatMessage) == msg


def test_a_whole_completion_decodes_and_unknown_fields_are_ignored() -> None:
    completion = ChatCompletion.model_validate({
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None,
                     "message": {"role": "assistant", "content": None, "refusal": None,
                                 "tool_calls": [to_openai(CALL)]}}],
    })
    message = from_openai(completion.choices[0].message.model_dump(), ChatMessage)
    result = ChatResult(message=message, finish_reason="tool_calls")
    assert tool_calls_of(result) == [CALL] and tool_calls_of(ChatResult(message=ChatMessage(role="assistant"))) == ()


def test_requests_encode_without_defaults_and_round_trip() -> None:
    req = ChatRequest(messages=[ChatMessage(role="user", content="hi"),
                                ChatMessage(role="tool", tool_call_id="call_1", content="42")],
                      tools=[ToolDef(function=FunctionDef(name="lookup", description="Find an order",
                                                          parameters={"type": "object", "properties": {}}))],
                      tool_choice=NamedToolChoice(function=NamedFunction(name="lookup")),
                      response_format={"type": "json_object"}, max_new_tokens=8, stop=["\n"])
    wire = to_openai(req)
    assert wire["messages"] == [{"role": "user", "content": "hi"},
                                {"role": "tool", "content": "42", "tool_call_id": "call_1"}]
    assert wire["tools"][0] == {"type": "function", "function": {"name": "lookup", "description": "Find an order",
                                                                 "parameters": {"type": "object", "properties": {}}}}
    assert wire["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert decode_chat(encode_chat(req), ChatRequest) == req
    raw = b'{"messages":[{"role":"user","content":"x"}],"tool_choice":"required"}'
    assert decode_chat(raw, ChatRequest).tool_choice == "required"


@pytest.mark.parametrize("bad", [b'{"messages": []}', b'{"messages": [{"role": "robot", "content": "x"}]}',
                                 b'{"messages": [{"role": "user"}], "max_new_tokens": -1}',
                                 b'{"messages": [{"role": "user"}], "tool_choice": "sometimes"}', b"{"])
def test_bad_requests_are_one_line_protocol_errors(bad: bytes) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_chat(bad, ChatRequest)
    assert "\n" not in str(err.value)
