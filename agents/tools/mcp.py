"""MCP tool servers as baton tools, through the official ``mcp`` SDK.

An app or a workflow file names MCP servers (``[mcp.NAME]``: a stdio ``command`` with ``args``,
or a Streamable HTTP ``url``; see :class:`~baton.agents.workflow.spec.MCPServerSpec`). Each
server's tools become baton tools named ``NAME.TOOL`` (characters a tool name may not hold become
``_``), offered to models with the server's own input schema and allowed per role like any other.

One :class:`MCPConnection` per server holds one long-lived MCP session (``mcp.Client``) in an
event loop on its own daemon thread, so tool calls work from async code
(:meth:`MCPConnection.acall`, on any loop) and from worker threads (:meth:`MCPConnection.call`)
alike. A session that broke (the server died) is opened again on the next call. :func:`connect`
shares connections process-wide (one per server name and settings) and registers their tools;
:func:`close_all` ends every session cleanly (the SDK stops a stdio server it started) and runs
at interpreter exit.

A tool result's text content is the baton tool's output (structured content as JSON when there is
no text); a result flagged ``isError`` raises :class:`~baton.agents.tools.base.ToolError` with its
text, so the model reads ``error: ...``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...protocol.chat import FunctionDef, ToolDef
from ...protocol.limits import MAX_NAME_LENGTH
from ..workflow.spec import MCPServerSpec
from .base import ToolContext, ToolError
from .registry import register
from .schema import wire_name

__all__ = ["MCPConnection", "MCPError", "MCPTool", "close_all", "connect", "connect_servers"]

log = logging.getLogger("baton.mcp")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class MCPError(ToolError):
    """An MCP server could not be reached, or would not list or run a tool."""


class MCPTool:
    """One tool of an MCP server, as a baton tool named ``server.tool``."""

    def __init__(self, connection: MCPConnection, remote_name: str, description: str,
                 parameters: Mapping[str, Any]) -> None:
        self.connection = connection
        self.remote_name = remote_name
        self.name = f"{connection.name}.{_UNSAFE.sub('_', remote_name)}"[:MAX_NAME_LENGTH]
        self.description = description
        self.parameters = dict(parameters) or {"type": "object", "properties": {}}

    def __repr__(self) -> str:
        return f"MCPTool({self.name!r})"

    def definition(self) -> ToolDef:
        """The tool as offered to a model, with the server's input schema."""
        return ToolDef(function=FunctionDef(name=wire_name(self.name), description=self.description,
                                            parameters=self.parameters))

    def run(self, args: Mapping[str, Any], ctx: ToolContext) -> str:
        """Call the tool from a thread (not from the connection's own loop)."""
        return self.connection.call(self.remote_name, args)

    async def arun(self, args: Mapping[str, Any], ctx: ToolContext | None = None) -> str:
        """Call the tool from async code."""
        return await self.connection.acall(self.remote_name, args)


class MCPConnection:
    """One MCP server's session, in an event loop on a daemon thread (see the module docstring)."""

    def __init__(self, name: str, spec: MCPServerSpec, *, base_dir: str = "") -> None:
        self.name = name
        self.spec = spec
        self.base_dir = base_dir
        self.tools: list[MCPTool] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"mcp-{name}", daemon=True)
        self._thread.start()
        self._ready: asyncio.Future[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._closed = False

    def __repr__(self) -> str:
        where = self.spec.url or " ".join([self.spec.command, *self.spec.args])
        return f"MCPConnection({self.name!r}, {where!r})"

    def _target(self) -> Any:
        if self.spec.url:
            return self.spec.url
        from mcp.client.stdio import StdioServerParameters

        cwd = self.spec.cwd or self.base_dir or None
        if cwd and self.base_dir and not Path(cwd).is_absolute():
            cwd = str(Path(self.base_dir) / cwd)
        return StdioServerParameters(command=self.spec.command, args=list(self.spec.args),
                                     env=dict(self.spec.env) or None, cwd=cwd)

    async def _serve(self, ready: asyncio.Future[Any], stop: asyncio.Event) -> None:
        """Hold one session open until ``stop``: the SDK's contexts are entered and left in this task."""
        from mcp import Client

        try:
            async with Client(self._target(), read_timeout_seconds=self.spec.timeout) as client:
                ready.set_result(client)
                await stop.wait()
        except Exception as exc:  # noqa: BLE001 - reported to whoever waits for the session, or logged
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning("MCP server %s: session ended: %s", self.name, _reason(exc))

    async def _client(self) -> Any:
        """The open session's client, opening one when there is none (runs on the connection's loop)."""
        if self._closed:
            raise MCPError(f"MCP server {self.name!r}: the connection is closed")
        broken = self._ready is None or self._task is None or self._task.done() or (
            self._ready.done() and (self._ready.cancelled() or self._ready.exception() is not None))
        if broken:
            self._ready, self._stop = self._loop.create_future(), asyncio.Event()
            self._task = self._loop.create_task(self._serve(self._ready, self._stop))
        ready, task = self._ready, self._task
        assert ready is not None and task is not None
        try:
            return await asyncio.wait_for(asyncio.shield(ready), self.spec.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure to open the session is one clear error
            task.cancel()
            raise MCPError(f"MCP server {self.name!r} ({self!r}) is unreachable: {_reason(exc)}") from None

    def _submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        if self._closed and not self._loop.is_running():
            coro.close()
            raise MCPError(f"MCP server {self.name!r}: the connection is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _list(self) -> list[MCPTool]:
        client = await self._client()
        found: list[MCPTool] = []
        cursor: str | None = None
        for _ in range(100):
            page = await client.list_tools(cursor=cursor)
            found += [MCPTool(self, t.name, t.description or "", t.input_schema or {}) for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                break
        return found

    def list_tools(self) -> list[MCPTool]:
        """The server's tools (opening the session), kept in :attr:`tools`."""
        try:
            self.tools = self._submit(self._list()).result(self.spec.timeout * 2)
        except concurrent.futures.TimeoutError:
            raise MCPError(f"MCP server {self.name!r}: listing tools timed out after {self.spec.timeout:g}s") from None
        return self.tools

    async def _call(self, tool: str, args: Mapping[str, Any]) -> str:
        client = await self._client()
        try:
            result = await client.call_tool(tool, dict(args))
        except Exception as exc:  # noqa: BLE001 - the session may be broken: open a new one next time
            if self._stop is not None:
                self._stop.set()
            raise MCPError(f"MCP server {self.name!r}: calling {tool!r} failed: {_reason(exc)}") from None
        text = "\n".join(getattr(block, "text", "") for block in result.content if getattr(block, "text", None))
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content)
        if result.is_error:
            raise ToolError(text or f"MCP tool {self.name}.{tool} failed")
        return text

    def call(self, tool: str, args: Mapping[str, Any]) -> str:
        """Call ``tool`` from a thread; its text, or ``ToolError``."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("MCPConnection.call from the connection's own loop; use acall")
        return str(self._submit(self._call(tool, args)).result())

    async def acall(self, tool: str, args: Mapping[str, Any]) -> str:
        """Call ``tool`` from async code on any event loop; its text, or ``ToolError``."""
        return str(await asyncio.wrap_future(self._submit(self._call(tool, args))))

    def close(self, timeout: float = 10) -> None:
        """End the session (stopping a stdio server) and the loop's thread."""
        if self._closed:
            return
        self._closed = True

        async def finish() -> None:
            if self._stop is not None:
                self._stop.set()
            if self._task is not None:
                await asyncio.wait([self._task], timeout=timeout)

        try:
            self._submit(finish()).result(timeout + 1)
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.warning("MCP server %s did not close cleanly: %s", self.name, _reason(exc))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()


def _reason(exc: BaseException) -> str:
    """A one-line reason, looking inside exception groups (anyio task groups raise them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_connections: dict[tuple[str, bytes], MCPConnection] = {}
_connections_lock = threading.Lock()


def connect(name: str, spec: MCPServerSpec, *, base_dir: str = "", register_tools: bool = True) -> MCPConnection:
    """The process's connection to server ``name`` (opened and its tools listed once), its tools
    registered as ``name.tool`` unless ``register_tools`` is false. Raises :class:`MCPError`."""
    import msgspec

    if "." in name:
        raise ValueError(f"MCP server name {name!r} may not contain '.' (its tools are named {name}.TOOL)")
    key = (name, msgspec.json.encode(spec) + base_dir.encode())
    with _connections_lock:
        conn = _connections.get(key)
        if conn is None:
            conn = _connections[key] = MCPConnection(name, spec, base_dir=base_dir)
    if not conn.tools:
        try:
            conn.list_tools()
        except BaseException:
            with _connections_lock:
                _connections.pop(key, None)
            conn.close(timeout=2)
            raise
    if register_tools:
        for tool in conn.tools:
            register(tool, replace=True)
    return conn


def connect_servers(servers: Mapping[str, MCPServerSpec], *, base_dir: str = "") -> list[MCPConnection]:
    """:func:`connect` every server of an app or a workflow file (``[mcp.NAME]`` tables)."""
    return [connect(name, spec, base_dir=base_dir) for name, spec in servers.items()]


def close_all() -> None:
    """Close every connection :func:`connect` opened (also run at interpreter exit)."""
    with _connections_lock:
        conns = list(_connections.values())
        _connections.clear()
    for conn in conns:
        conn.close()


atexit.register(close_all)
