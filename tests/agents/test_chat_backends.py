"""Chat on the text backends (echo, the twin): the chat template, stop sequences, streaming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baton.agents.backends import ECHO_SUFFIX, EchoBackend, load_backend
from baton.agents.backends.chatting import StopFilter, cut_at_stop, render_chat
from baton.protocol.chat import ChatMessage, ChatRequest, FunctionCall, ToolCall

PROMPT = "Planner agent named Alice. Task: Explain AI.\nMemory: []\nResponse:"


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


@pytest.fixture(scope="module")
def twin_backend(twin: Path) -> Any:
    return load_backend(str(twin))


def test_the_template_joins_texts_and_renders_tool_calls() -> None:
    call = ToolCall(id="c1", function=FunctionCall(name="kb.search", arguments='{"q":"x"}'))
    messages = [ChatMessage(role="system", content="Be terse."), user("Hi"),
                ChatMessage(role="assistant", tool_calls=[call]),
                ChatMessage(role="tool", tool_call_id="c1", content="found")]
    assert render_chat(messages) == 'Be terse.\nHi\nkb.search({"q":"x"})\nfound'
    assert render_chat([user(PROMPT)]) == PROMPT


def test_cut_at_stop_takes_the_earliest() -> None:
    assert cut_at_stop("abc. def\nghi", ["\n", "."]) == ("abc", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)
    assert cut_at_stop("abc", None) == ("abc", False)


def test_stop_filter_streams_exactly_the_cut_text() -> None:
    got: list[tuple[int, str]] = []
    f = StopFilter(lambda i, t: got.append((i, t)), [["END"], None])
    for chunk in ["hello E", "N", "D more", "x"]:
        f(0, chunk)
    f(1, "free E")
    f(1, "N")
    f.close()
    assert "".join(t for i, t in got if i == 0) == "hello "
    assert "".join(t for i, t in got if i == 1) == "free EN"


def test_echo_chat_answers_the_last_user_message() -> None:
    echo = EchoBackend(env={})
    chunks: list[tuple[int, str]] = []
    results = echo.chat([ChatRequest(messages=[user("a"), ChatMessage(role="assistant", content="b"), user("c")]),
                         ChatRequest(messages=[user("x y")], stop=[" "])],
                        on_tokens=lambda i, t: chunks.append((i, t)))
    assert [r.message.content for r in results] == ["c" + ECHO_SUFFIX, "x"]
    assert all(r.message.role == "assistant" and not r.message.tool_calls for r in results)
    assert chunks == [(0, "c" + ECHO_SUFFIX), (1, "x")]
    assert echo.generate(["p"], stop=["]"])[0].text == "p" + ECHO_SUFFIX[:-1]


def test_twin_chat_on_one_user_message_is_generate(twin_backend: Any) -> None:
    gen = twin_backend.generate([PROMPT, "Hello"], max_new_tokens=12)
    results = twin_backend.chat([ChatRequest(messages=[user(PROMPT)], max_new_tokens=12),
                                 ChatRequest(messages=[user("Hello")], max_new_tokens=12),
                                 ChatRequest(messages=[user("Hello")], max_new_tokens=5)])
    want = [g.text[len(p):] for g, p in zip(gen, [PROMPT, "Hello"], strict=True)]
    assert [r.message.content for r in results[:2]] == want
    assert results[0].completion_tokens == gen[0].new_tokens and results[0].prompt_tokens > 0
    assert results[2].finish_reason == "length" and results[2].completion_tokens == 5


def test_twin_stop_cuts_generate_chat_and_stream_alike(twin_backend: Any) -> None:
    full = twin_backend.generate([PROMPT], max_new_tokens=20)[0].text[len(PROMPT):]
    assert len(full) > 4
    stop = full[3:5]
    want = full[: full.index(stop)]
    chunks: list[str] = []
    gen = twin_backend.generate([PROMPT], max_new_tokens=20, stop=[stop], on_tokens=lambda i, t: chunks.append(t))
    assert gen[0].text == PROMPT + want and "".join(chunks) == want
    result = twin_backend.chat([ChatRequest(messages=[user(PROMPT)], max_new_tokens=20, stop=[stop])])[0]
    assert result.message.content == want and result.finish_reason == "stop"


def test_http_chat_errors_are_outages_and_refusals(flaky_model: Any) -> None:
    from baton.agents.backends import ModelRejected, ModelUnavailable
    from baton.agents.backends.http import HTTPBackend

    backend = HTTPBackend(flaky_model.url + "&api=chat")
    request = ChatRequest(messages=[user("hi")])
    try:
        assert backend.chat([request, request])[1].message.content == ECHO_SUFFIX
        flaky_model.fail(503, retry_after="2")
        with pytest.raises(ModelUnavailable) as down:
            backend.chat([request])
        assert down.value.retry_after == 2
        flaky_model.fail(400, reason="too long")
        with pytest.raises(ModelRejected, match="too long"):
            backend.chat([request])
    finally:
        backend.close()
