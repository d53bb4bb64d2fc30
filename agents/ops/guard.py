"""What a browser on another origin must not do to the dashboard and HTTP API, refused before routing.

``BrowserGuard`` is an ASGI middleware in front of the whole app:

- **State-changing requests** (POST, PUT, PATCH, DELETE) carrying an ``Origin`` header must come
  from the server's own origin (the ``Origin``'s host and port equal the ``Host`` header): a page on
  another origin gets 403. A body must be ``application/json``, and a ``Content-Type`` other than
  that is refused with 415 even without a body: a cross-origin ``no-cors`` ``fetch`` can only send
  ``text/plain``, form or multipart bodies, none of which is JSON. (With tokens, a request without a
  valid one gets the route's 401 instead.)
- **Serving without tokens**, the ``Host`` header must be a loopback name (``localhost``,
  ``*.localhost``, ``127.0.0.0/8``, ``[::1]``) or one of ``BATON_ALLOWED_HOSTS``: a DNS-rebinding
  page reaches the server under its own host name and gets 400. With tokens the token is the
  guard (a rebinding page never has it), so any ``Host`` passes.
- **Every response** carries ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: no-referrer`` and a ``Content-Security-Policy`` (``frame-ancestors 'none'``;
  scripts only the page's own inline script by hash).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from .auth import BearerAuth, bearer_token

__all__ = ["LOOPBACK_HOSTS", "BrowserGuard", "content_security_policy", "is_loopback_host"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = ("localhost", "*.localhost", "127.0.0.0/8", "[::1]")
"""The ``Host`` names accepted while serving without tokens (beside ``BATON_ALLOWED_HOSTS``)."""

_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def content_security_policy(page: str) -> str:
    """The CSP of the dashboard: same-origin everything, the page's inline scripts by hash, no framing."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in _SCRIPT.findall(page))
    return ("default-src 'self'; " f"script-src {hashes or chr(39) + 'none' + chr(39)}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _split_host(value: str) -> str:
    """The host name of a ``Host`` header value (port dropped, brackets kept for IPv6), lowercased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_loopback_host(host: str, extra: Sequence[str] = ()) -> bool:
    """Whether the ``Host`` header value ``host`` names this machine's loopback (or one of ``extra``)."""
    name = _split_host(host)
    for pattern in (*LOOPBACK_HOSTS, *(e.strip().lower() for e in extra if e.strip())):
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]) or name == pattern[2:]:
                return True
        elif "/" in pattern:
            try:
                if ipaddress.ip_address(name.strip("[]")) in ipaddress.ip_network(pattern):
                    return True
            except ValueError:
                pass
        elif name == _split_host(pattern):
            return True
    return False


class BrowserGuard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, *, auth: BearerAuth, allowed_hosts: Sequence[str] = (),
                 csp: str = "default-src 'self'; frame-ancestors 'none'") -> None:
        self.app = app
        self.auth = auth
        self.open_access = not auth.enabled
        self.allowed_hosts = tuple(allowed_hosts)
        self.security_headers = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                                 (b"referrer-policy", b"no-referrer"), (b"content-security-policy", csp.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await self._refuse(send, *refusal)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.security_headers]
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.open_access and not is_loopback_host(host, self.allowed_hosts):
            return 400, (f"the Host {host!r} is not served without tokens: use localhost or 127.0.0.1, add it to "
                         "BATON_ALLOWED_HOSTS, or set BATON_API_TOKENS")
        if scope["method"] not in UNSAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None and _origin_netloc(origin) != host.strip().lower():
            return 403, f"cross-origin request refused (Origin {origin!r} is not this server)"
        if not self.auth.allows(bearer_token(headers.get("authorization", ""))):
            return None  # the route refuses it with 401 before it reads a byte
        ctype = headers.get("content-type")
        has_body = headers.get("content-length", "0").strip() not in ("", "0") or "transfer-encoding" in headers
        if ctype is not None and ctype.split(";", 1)[0].strip().lower() != "application/json":
            return 415, f"the request body must be application/json, not {ctype.split(';', 1)[0].strip()!r}"
        if ctype is None and has_body:
            return 415, "the request body must be application/json (no Content-Type was sent)"
        return None

    async def _refuse(self, send: Send, status: int, reason: str) -> None:
        body = json.dumps({"detail": reason}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *self.security_headers]})
        await send({"type": "http.response.body", "body": body})


def _origin_netloc(origin: str) -> str:
    """``host[:port]`` of an ``Origin`` value, default ports dropped as a ``Host`` header has them."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep:
        return "\0"  # "null" (sandboxed frames, file: pages) or garbage: never this server
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return rest[: -len(default)] if default and rest.endswith(default) else rest
