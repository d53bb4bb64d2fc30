"""A real OpenAI-compatible model server that fails on demand, for outage tests.

``FlakyModelServer`` listens on a free loopback port in a thread of the test process (worker
subprocesses reach it over real TCP) and answers like ``baton serve-model`` on the echo model:
``/v1/completions`` and ``/v1/chat/completions`` return :data:`ECHO_SUFFIX` as the continuation,
so an HTTP-backed worker produces exactly what an echo worker does. Queued faults answer the next
completion requests instead: ``server.fail(503, times=3, retry_after="1")`` gives three 503s with
``Retry-After: 1``, then answers again; ``server.fail(400, reason="prompt too long")`` one 400.
``stop()`` closes the socket (connection refused), ``start()`` listens again on the same port.
``server.hold(from_request=4)`` keeps the 4th completion request (and later ones) waiting, never
answered, until ``release()``; ``holding`` is set once one waits (e.g. to kill its worker then).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from baton.agents.backends import ECHO_SUFFIX
from baton.broker import free_port

__all__ = ["Fault", "FlakyModelServer"]


@dataclass(frozen=True, slots=True)
class Fault:
    """One canned error answer."""

    status: int
    reason: str
    retry_after: str | None = None


class FlakyModelServer:
    """An echo model over HTTP that answers queued faults first."""

    def __init__(self, port: int | None = None, name: str = "flaky-echo") -> None:
        self.port = port or free_port()
        self.name = name
        self.faults: deque[Fault] = deque()
        self.completions = 0
        """Completion requests received (faulted or answered)."""
        self.answered = 0
        """Completion requests answered with a result."""
        self.hold_from: int | None = None
        self.holding = threading.Event()
        """Set once a completion request is being held (``hold``)."""
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL a worker's ``BATON_MODEL`` takes (model named, so no ``/models`` lookup)."""
        return f"http://127.0.0.1:{self.port}/v1?model={self.name}"

    def fail(self, status: int, times: int = 1, *, reason: str = "", retry_after: str | None = None) -> None:
        """Answer the next ``times`` completion requests with ``status`` (and ``Retry-After``)."""
        with self._lock:
            self.faults.extend([Fault(status, reason or f"injected HTTP {status}", retry_after)] * times)

    def hold(self, from_request: int) -> None:
        """Hold completion request number ``from_request`` (1-based) and every later one: no answer
        until :meth:`release`, and then none either (the connection is closed unanswered)."""
        with self._lock:
            self.hold_from = from_request
            self._released.clear()

    def release(self) -> None:
        """Stop holding: held requests end unanswered, new ones are answered again."""
        with self._lock:
            self.hold_from = None
        self._released.set()

    def start(self) -> FlakyModelServer:
        """Listen (again) on the port and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._conns.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._conns.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path in ("/health", "/v1/health"):
                    self._send(200, {"status": "ok", "model": server.name})
                elif self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model"}]})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path not in ("/v1/completions", "/v1/chat/completions"):
                    self._send(404, {"detail": "Not Found"})
                    return
                with server._lock:
                    server.completions += 1
                    fault = server.faults.popleft() if server.faults else None
                    held = server.hold_from is not None and server.completions >= server.hold_from
                if held:
                    server.holding.set()
                    server._released.wait(120)
                    self.close_connection = True
                    return
                if fault is not None:
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                    self._send(fault.status, {"error": {"message": fault.reason, "type": "injected"}}, headers)
                    return
                with server._lock:
                    server.answered += 1
                self._send(200, _answer(self.path, body, server.name))

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"flaky-model-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop as a killed server would: open connections are cut, new ones refused until :meth:`start`."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> FlakyModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answer(path: str, body: dict[str, Any], name: str) -> dict[str, Any]:
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    if path == "/v1/chat/completions":
        choice = {"index": 0, "message": {"role": "assistant", "content": ECHO_SUFFIX}, "finish_reason": "stop"}
        return {"id": "chatcmpl-flaky", "object": "chat.completion", "created": int(time.time()), "model": name,
                "choices": [choice], "usage": usage}
    prompt = body.get("prompt", "")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    choices = [{"index": i, "text": ECHO_SUFFIX, "logprobs": None, "finish_reason": "stop"}
               for i in range(len(prompts))]
    return {"id": "cmpl-flaky", "object": "text_completion", "created": int(time.time()), "model": name,
            "choices": choices, "usage": usage}
