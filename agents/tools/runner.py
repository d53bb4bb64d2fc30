"""Calling tools for a role: the allow-list, inline or remote execution, the timeout.

``run_tool`` executes one registered tool in a thread with a timeout and turns every failure
(unknown tool, ``ToolError``, any exception, timeout) into an error string; it never raises.
``ToolRunner`` is what a worker uses: it refuses tools outside the role's allow-list, runs
inline tools through ``run_tool`` and remote ones (``remote = true`` in the workflow's tool
settings) over the tool's call stream, waiting for the reply up to the call's timeout.

A timed-out inline tool keeps its thread until it returns (threads cannot be killed); run
risky or slow tools remotely, on their own worker pool (``baton worker --tools NAME``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import msgspec

from ...broker import Keys, PadTool, Redis
from ...broker.toolcalls import blocking_client, send_call, wait_reply
from ...protocol import ProtocolError, ToolCall, ToolResult, decode, encode, new_id
from ..runtime.tracing import traced_tool_call
from ..workflow.spec import RoleSpec, ToolConfig, Workflow
from .base import ToolContext, ToolError
from .registry import UnknownTool, get_tool, known_tools

__all__ = ["ToolOutcome", "ToolRunner", "render_outcomes", "run_tool"]

log = logging.getLogger("baton.tools")


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """One call and its result, as written to the caller's scratchpad (``meta.tools``)."""

    tool: str
    args: Mapping[str, str]
    output: str = ""
    error: str = ""
    call_id: str = ""
    where: str = "inline"
    ms: float = 0.0

    def as_call(self) -> PadTool:
        """The call as a scratchpad entry stores it (``PadMeta.tools``)."""
        return PadTool(tool=self.tool, args=dict(self.args), output=self.output, error=self.error,
                       call_id=self.call_id, where=self.where, ms=round(self.ms, 2))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the stored call's fields)."""
        out: dict[str, Any] = msgspec.to_builtins(self.as_call())
        return out


def run_tool(executor: ThreadPoolExecutor, name: str, args: Mapping[str, str], ctx: ToolContext,
             timeout: float) -> tuple[str, str]:
    """Run tool ``name``; return ``(output, error)``: exactly one of them is meaningful."""
    try:
        tool = get_tool(name)
    except UnknownTool as exc:
        return "", str(exc)
    future: Future[str] = executor.submit(tool.run, dict(args), ctx)
    try:
        return str(future.result(timeout=timeout)), ""
    except FutureTimeout:
        future.cancel()
        return "", f"tool {name!r} timed out after {timeout:g}s"
    except ToolError as exc:
        return "", str(exc) or type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - a tool's crash is its caller's error result
        log.warning("tool %s raised %s: %s", name, type(exc).__name__, exc)
        return "", f"tool {name!r} failed: {type(exc).__name__}: {exc}"


def render_outcomes(outcomes: list[ToolOutcome]) -> str:
    """The ``{tools}`` template text: one ``[tool] result`` (or ``[tool] error: ...``) per call."""
    return "\n".join(f"[{o.tool}] error: {o.error}" if o.error else f"[{o.tool}] {o.output}" for o in outcomes)


class ToolRunner:
    """Tool calls of one role of a workflow."""

    def __init__(self, client: Redis | None, keys: Keys, workflow: Workflow, spec: RoleSpec,
                 *, max_threads: int = 4) -> None:
        self.client = client
        self.keys = keys
        self.workflow = workflow
        self.spec = spec
        self.executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix=f"tool-{spec.role}")
        self._blocking: Redis | None = None
        self._mcp_error = ""
        if workflow.mcp and any(t.split(".", 1)[0] in workflow.mcp for t in spec.tools):
            self._connect_mcp()

    def _connect_mcp(self) -> None:
        """Connect the workflow's MCP servers this role uses (their tools get registered); a server
        that cannot be reached makes its tools' calls fail with the reason, it does not stop the worker."""
        from .mcp import MCPError, connect

        self._mcp_error = ""
        used = {t.split(".", 1)[0] for t in self.spec.tools}
        for name, server in self.workflow.mcp.items():
            if name in used:
                try:
                    connect(name, server, base_dir=self.workflow.base_dir)
                except MCPError as exc:
                    log.warning("%s", exc)
                    self._mcp_error = str(exc)

    def config(self, tool: str) -> ToolConfig:
        """The workflow's settings for ``tool`` (defaults when it declares none)."""
        return self.workflow.tools.get(tool, ToolConfig())

    def call(self, tool: str, args: Mapping[str, str], run_id: str) -> ToolOutcome:
        """Call ``tool`` for ``run_id``; every failure is an outcome with ``error`` set. With tracing on,
        the call is a span under the current one (the hop's)."""
        return traced_tool_call(tool, lambda: self._call(tool, args, run_id))

    def _call(self, tool: str, args: Mapping[str, str], run_id: str) -> ToolOutcome:
        started = time.monotonic()
        if tool not in self.spec.tools:
            allowed = ", ".join(self.spec.tools) or "none"
            return ToolOutcome(tool, args, error=f"tool {tool!r} is not allowed for role {self.spec.role!r} "
                                                 f"(allowed: {allowed})", where="refused")
        if "." in tool and tool.split(".", 1)[0] in self.workflow.mcp and tool not in known_tools():
            self._connect_mcp()  # not connected yet (the server was down at start): try again
            if tool not in known_tools():
                return ToolOutcome(tool, args, error=self._mcp_error or f"MCP server has no tool {tool!r}",
                                   where="inline", ms=(time.monotonic() - started) * 1000)
        cfg = self.config(tool)
        if cfg.remote:
            return self._remote(tool, args, run_id, cfg, started)
        ctx = ToolContext(client=self.client, keys=self.keys, run_id=run_id, agent=self.spec.agent,
                          role=self.spec.role, options=cfg.options, base_dir=self.workflow.base_dir)
        output, error = run_tool(self.executor, tool, args, ctx, cfg.timeout)
        return ToolOutcome(tool, args, output, error, where="inline", ms=(time.monotonic() - started) * 1000)

    def _remote(self, tool: str, args: Mapping[str, str], run_id: str, cfg: ToolConfig,
                started: float) -> ToolOutcome:
        if self.client is None:
            return ToolOutcome(tool, args, error="remote tools need Redis", where="remote")
        if self._blocking is None:
            self._blocking = blocking_client(self.client)
        call_id = new_id()
        reply_key = self.keys.tool_replies(run_id, call_id)
        call = ToolCall(id=call_id, run_id=run_id, tool=tool, args=dict(args), caller=self.spec.agent,
                        reply_to=reply_key, timeout=cfg.timeout)
        send_call(self.client, self.keys, tool, encode(call))
        raw = wait_reply(self._blocking, reply_key, cfg.timeout)
        ms = (time.monotonic() - started) * 1000
        if raw is None:
            return ToolOutcome(tool, args, error=f"tool {tool!r} timed out after {cfg.timeout:g}s "
                                                 "(no tool worker answered)", call_id=call.id, where="remote", ms=ms)
        try:
            res = decode(raw)
        except ProtocolError as exc:
            return ToolOutcome(tool, args, error=f"bad tool reply: {exc}", call_id=call.id, where="remote", ms=ms)
        if not isinstance(res, ToolResult) or res.call_id != call.id:
            return ToolOutcome(tool, args, error="bad tool reply: not this call's tool_result", call_id=call.id,
                               where="remote", ms=ms)
        return ToolOutcome(tool, args, res.output, res.error, call_id=call.id, where="remote", ms=ms)

    def close(self) -> None:
        """Stop the inline tool threads (without waiting for stuck ones)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self._blocking is not None:
            self._blocking.close()
