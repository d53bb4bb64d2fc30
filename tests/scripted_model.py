"""A small OpenAI-compatible model server that answers chat with scripted tool calls.

The tiny model cannot choose tools, so tests of tool calling use this server in place of the
model only: it speaks OpenAI's exact wire format (the official ``openai`` client parses its
answers, see ``tests/tools/test_scripted_model.py``) and listens on a free loopback port in a
thread of the test process, so worker subprocesses reach it over real TCP.

A script is a list of turns per model name (the request's ``model``; ``"default"`` for any
other). A conversation's answer is the turn numbered by how many rounds of tool calls it already
holds since its last user message, so every conversation walks the script on its own and
concurrent runs do not disturb each other; past the end, the last turn repeats (a script that
ends with tool calls never stops calling, for ``max_tool_rounds`` tests). Turns::

    call("orders.lookup", order=42)                   # one round with one tool call
    calls(call("add", a=1, b=2), call("clock"))       # one round with two calls
    say("Order 42: {tool_results}")                   # the final answer

In a ``say`` text, ``{tool_results}`` becomes the contents of the tool messages since the last
user message joined with ``"; "``, and ``{last_user}`` the last user message. ``/v1/completions``
answers every prompt with :data:`~baton.agents.backends.ECHO_SUFFIX`, as the echo backend does.

The server counts what it was asked (``chat_calls``, ``completion_calls``) and keeps every chat
request body (``requests``) so tests can check ``tools``, ``tool_choice`` and
``response_format`` arrived as sent. Run it alone with
``python -m tests.scripted_model --port 8100 --script script.json`` (``{"model": [turns]}``).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from baton.agents.backends import ECHO_SUFFIX
from baton.broker import free_port

__all__ = ["ScriptedModel", "call", "calls", "say"]

Turn = dict[str, Any]


def call(name: str, /, **arguments: Any) -> Turn:
    """A turn of one tool call (``name`` may be a baton name such as ``server.tool``)."""
    return calls({"name": name, "arguments": arguments})


def calls(*wanted: Mapping[str, Any]) -> Turn:
    """A turn of several tool calls (each ``call(...)`` turn's call, or ``{"name", "arguments"}``)."""
    flat: list[dict[str, Any]] = []
    for item in wanted:
        flat.extend(item["tool_calls"] if "tool_calls" in item else [dict(item)])
    return {"tool_calls": flat}


def say(text: str) -> Turn:
    """A final-answer turn."""
    return {"content": text}


class ScriptedModel:
    """The scripted server (see the module docstring). Use as a context manager, or ``start``/``stop``."""

    def __init__(self, scripts: Mapping[str, Sequence[Turn]] | Sequence[Turn], *, port: int | None = None,
                 name: str = "scripted") -> None:
        self.scripts = {k: list(v) for k, v in scripts.items()} if isinstance(scripts, Mapping) \
            else {"default": list(scripts)}
        self.port = port or free_port()
        self.name = name
        self.requests: list[dict[str, Any]] = []
        """Every chat request body received, in arrival order."""
        self.chat_calls = 0
        self.completion_calls = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL (for the ``openai`` client)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def url(self, model: str | None = None) -> str:
        """A ``BATON_MODEL`` for an HTTP-backed worker using chat and script ``model``."""
        return f"{self.base_url}?model={model or self.name}&api=chat"

    def answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The ``chat.completion`` answer to a request body."""
        model = str(body.get("model") or "")
        script = self.scripts.get(model) or self.scripts.get("default") or [say("")]
        messages = list(body.get("messages") or [])
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        since = messages[last_user + 1:]
        rounds = sum(1 for m in since if m.get("role") == "assistant" and m.get("tool_calls"))
        turn = script[min(rounds, len(script) - 1)]
        if "tool_calls" in turn:
            tool_calls = [{"id": f"call_{rounds}_{i}", "type": "function",
                           "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})}}
                          for i, c in enumerate(turn["tool_calls"])]
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": tool_calls}
            finish = "tool_calls"
        else:
            results = "; ".join(str(m.get("content") or "") for m in since if m.get("role") == "tool")
            user = str(messages[last_user].get("content") or "") if last_user >= 0 else ""
            message = {"role": "assistant",
                       "content": str(turn["content"]).replace("{tool_results}", results).replace("{last_user}", user)}
            finish = "stop"
        return {"id": f"chatcmpl-scripted-{self.chat_calls}", "object": "chat.completion",
                "created": int(time.time()), "model": model or self.name,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": {"prompt_tokens": len(messages), "completion_tokens": 1, "total_tokens": len(messages) + 1}}

    def start(self) -> ScriptedModel:
        """Listen on the port in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path in ("/health", "/v1/health"):
                    self._send(200, {"status": "ok"})
                elif self.path == "/v1/models":
                    names = sorted({server.name, *server.scripts})
                    self._send(200, {"object": "list", "data": [{"id": n, "object": "model", "created": 0,
                                                                 "owned_by": "tests"} for n in names]})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                except ValueError:
                    self._send(400, {"error": {"message": "the body is not JSON", "type": "invalid_request_error"}})
                    return
                if self.path == "/v1/chat/completions":
                    if body.get("stream"):
                        self._send(400, {"error": {"message": "the scripted model does not stream",
                                                   "type": "invalid_request_error"}})
                        return
                    with server._lock:
                        server.chat_calls += 1
                        server.requests.append(body)
                    self._send(200, server.answer(body))
                elif self.path == "/v1/completions":
                    with server._lock:
                        server.completion_calls += 1
                    prompt = body.get("prompt", "")
                    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
                    choices = [{"index": i, "text": ECHO_SUFFIX, "logprobs": None, "finish_reason": "stop"}
                               for i in range(len(prompts))]
                    self._send(200, {"id": "cmpl-scripted", "object": "text_completion", "created": int(time.time()),
                                     "model": body.get("model") or server.name, "choices": choices,
                                     "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"scripted-model-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> ScriptedModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """``python -m tests.scripted_model --port N --script FILE``: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", type=Path, required=True, help='JSON: {"model": [turns]} or [turns]')
    args = parser.parse_args()
    server = ScriptedModel(json.loads(args.script.read_text()), port=args.port or None).start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
