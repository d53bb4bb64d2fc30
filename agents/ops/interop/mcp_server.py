"""Workflows as MCP tools and runs as MCP resources, on the official ``mcp`` SDK's server.

One server (:func:`mcp_server`) serves two transports: ``baton mcp`` (stdio, for a local MCP
host) and ``/mcp`` on ``baton dashboard`` (Streamable HTTP, stateless, behind the ``/v1`` bearer
tokens, checked before the body is read).

- **Tools**: one per workflow, named after it; input ``{"task": "..."}``; the output is the run's
  result as text, with ``{"run_id", "status", "result"}`` as structured content. A run that fails
  or is cancelled is a tool error (``isError``) with the reason.
- **Progress**: while a call waits, each hop started or finished, tool call and review of the run
  is a ``notifications/progress`` (progress = hops finished) for a caller that sent a progress
  token.
- **Tasks** (protocol 2025-11-25): a ``tools/call`` with ``task`` returns at once with a task
  whose id is the run id; ``tasks/get``, ``tasks/result`` (waits for the end), ``tasks/cancel`` and
  ``tasks/list`` read the run's record and event log. Clients that do not ask for a task get
  progress notifications instead. A run parked for review is ``input_required``; it is decided
  through ``/v1/reviews`` (or A2A).
- **Resources**: ``baton://runs/{run_id}`` (a template) is a run as JSON (status, task, result,
  error, hops); ``resources/list`` shows the newest runs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ....broker import RunRecord
from ....broker.runs import alist_runs, arun_records
from ....protocol import (
    TERMINAL_STATUSES,
    HopFinished,
    HopStarted,
    ReviewRequested,
    RunStatus,
    ToolCalled,
    is_terminal,
)
from .runs import RunRefused, Runs

__all__ = ["RUN_URI", "mcp_server"]

RUN_URI = "baton://runs/{run_id}"
"""The URI template of a run resource."""

LISTED_RUNS = 50
"""How many of the newest runs ``resources/list`` and ``tasks/list`` show."""

POLL_MS = 1000
"""The polling interval a task suggests to its client."""

RELATED_TASK = "io.modelcontextprotocol/related-task"

_TASK_STATUS = {RunStatus.QUEUED: "working", RunStatus.RUNNING: "working", RunStatus.REVIEW: "input_required",
                RunStatus.DONE: "completed", RunStatus.FAILED: "failed", RunStatus.CANCELLED: "cancelled"}

ServerContext = ServerRequestContext[Any, Any]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _task(run_id: str, record: RunRecord, ttl_s: int) -> dict[str, Any]:
    status = record.status
    message = record.error or (f"waiting for a review of {record.role or 'a role'}'s output"
                               if status is RunStatus.REVIEW else str(status))
    return {"task_id": run_id, "status": _TASK_STATUS.get(status, "working"), "status_message": message,
            "created_at": _iso(record.created_at), "last_updated_at": _iso(record.updated_at or record.created_at),
            "ttl": ttl_s * 1000, "poll_interval": POLL_MS}


def _run_doc(run_id: str, record: RunRecord) -> dict[str, Any]:
    fields = ("workflow", "status", "task", "result", "error", "hops", "created_at", "updated_at")
    return {"run_id": run_id, **{f: record.fields[f] for f in fields if f in record.fields}}


class BatonMCP(Server[Any]):
    """The lowlevel SDK server over baton runs (declares tasks for 2025-11-25 sessions)."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs
        super().__init__("baton", version="1", description="baton workflows as tools, runs as resources",
                         on_list_tools=self._list_tools, on_call_tool=self._call_tool,
                         on_list_resources=self._list_resources, on_read_resource=self._read_resource,
                         on_list_resource_templates=self._list_templates)
        self.add_request_handler("tasks/get", types.GetTaskRequestParams, self._get_task)
        self.add_request_handler("tasks/result", types.GetTaskPayloadRequestParams, self._task_result)
        self.add_request_handler("tasks/cancel", types.CancelTaskRequestParams, self._cancel_task)
        self.add_request_handler("tasks/list", types.PaginatedRequestParams, self._list_tasks)
        self.middleware.append(self._task_calls)

    async def _task_calls(self, ctx: ServerContext, call_next: Any) -> Any:
        """Answer a ``tools/call`` that asks for a task (2025-11-25) with ``CreateTaskResult``: the SDK
        types a ``tools/call`` result as ``CallToolResult`` only, so this middleware owns that answer."""
        params = ctx.params or {}
        if ctx.method == "tools/call" and params.get("task") is not None \
                and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return await self._create_task(types.CallToolRequestParams.model_validate(params, by_name=False))
        return await call_next(ctx)

    def get_capabilities(self, *args: Any, protocol_version: str | None = None, **kwargs: Any
                         ) -> types.ServerCapabilities:
        caps = super().get_capabilities(*args, protocol_version=protocol_version, **kwargs)
        if protocol_version in MODERN_PROTOCOL_VERSIONS:
            return caps
        tasks = types.ServerTasksCapability(list=types.TasksListCapability(), cancel=types.TasksCancelCapability(),
                                            requests=types.ServerTasksRequestsCapability(
                                                tools=types.TasksToolsCapability(call=types.TasksCallCapability())))
        return caps.model_copy(update={"tasks": tasks})

    @property
    def ttl_s(self) -> int:
        return self.runs.api.settings.record_ttl_s

    async def _record(self, run_id: str) -> RunRecord:
        rec = await self.runs.record(run_id)
        if rec is None:
            raise MCPError(types.INVALID_PARAMS, f"no run {run_id!r} (it never existed or its record expired)")
        return rec

    async def _list_tools(self, ctx: ServerContext, params: types.PaginatedRequestParams | None
                          ) -> types.ListToolsResult:
        tools = []
        for name in self.runs.workflow_names():
            wf = self.runs.workflow(name)
            chain = " -> ".join(r.role for r in wf.order()) or wf.entry
            tools.append(types.Tool(
                name=name, title=f"baton workflow {name}",
                description=f"Run the baton workflow {name!r} ({chain}) on a task; returns the run's result.",
                input_schema={"type": "object", "required": ["task"], "properties": {
                    "task": {"type": "string", "minLength": 1, "description": "What the workflow should work on."}}},
                output_schema={"type": "object", "required": ["run_id", "status", "result"], "properties": {
                    "run_id": {"type": "string"}, "status": {"type": "string"}, "result": {"type": "string"}}},
                execution=types.ToolExecution(task_support="optional")))
        return types.ListToolsResult(tools=tools)

    async def _start(self, params: types.CallToolRequestParams) -> str | types.CallToolResult:
        """Start the run a tool call asks for: its id, or the tool error that says why not."""
        try:
            return await self.runs.start(params.name, str((params.arguments or {}).get("task") or ""),
                                         metadata={"via": "mcp"})
        except RunRefused as exc:
            return types.CallToolResult(content=[types.TextContent(text=str(exc))], is_error=True)

    async def _create_task(self, params: types.CallToolRequestParams) -> dict[str, Any]:
        """A task-augmented ``tools/call``: the task at once (its id is the run's), the run goes on."""
        run_id = await self._start(params)
        if not isinstance(run_id, str):
            return run_id.model_dump(by_alias=True, mode="json", exclude_none=True)
        task = types.Task(**_task(run_id, await self._record(run_id), self.ttl_s))
        return types.CreateTaskResult(task=task).model_dump(by_alias=True, mode="json", exclude_none=True)

    async def _call_tool(self, ctx: ServerContext, params: types.CallToolRequestParams) -> types.CallToolResult:
        run_id = await self._start(params)
        if not isinstance(run_id, str):
            return run_id
        return await self._wait(ctx, run_id, total=len(self.runs.workflow(params.name).order()))

    async def _wait(self, ctx: ServerContext | None, run_id: str, total: int | None = None) -> types.CallToolResult:
        """Follow the run to its end (progress notifications on the way); its result as a tool result."""
        finished = 0
        async for _, event in self.runs.follow(run_id):
            note = ""
            match event:
                case HopStarted():
                    note = f"{event.role} ({event.agent}) started hop {event.hop}"
                case HopFinished():
                    finished += 1
                    note = f"{event.role} ({event.agent}) finished hop {event.hop}"
                case ToolCalled():
                    note = f"{event.role} called {event.tool}"
                case ReviewRequested():
                    note = f"waiting for a review of {event.role}'s output (review {event.review_id})"
                case _ if is_terminal(event):
                    break
            if note and ctx is not None:
                await ctx.session.report_progress(finished, total, note)
        return self._result(run_id, await self._record(run_id))

    def _result(self, run_id: str, rec: RunRecord) -> types.CallToolResult:
        status = str(rec.status)
        if rec.status is RunStatus.DONE:
            result = rec.result
            return types.CallToolResult(content=[types.TextContent(text=result)],
                                        structured_content={"run_id": run_id, "status": status, "result": result})
        reason = f"run {run_id} {status}: {rec.error or 'no reason given'}"
        return types.CallToolResult(content=[types.TextContent(text=reason)], is_error=True,
                                    structured_content={"run_id": run_id, "status": status, "result": ""})

    async def _get_task(self, ctx: ServerContext, params: types.GetTaskRequestParams) -> types.GetTaskResult:
        return types.GetTaskResult(**_task(params.task_id, await self._record(params.task_id), self.ttl_s))

    async def _task_result(self, ctx: ServerContext, params: types.GetTaskPayloadRequestParams
                           ) -> types.CallToolResult:
        rec = await self._record(params.task_id)
        result = self._result(params.task_id, rec) if rec.ended else \
            await self._wait(None, params.task_id)
        return result.model_copy(update={"meta": {RELATED_TASK: {"taskId": params.task_id}}})

    async def _cancel_task(self, ctx: ServerContext, params: types.CancelTaskRequestParams) -> types.CancelTaskResult:
        before = await self.runs.cancel(params.task_id)
        if before is None:
            await self._record(params.task_id)  # raises: no such run
        if before in TERMINAL_STATUSES:
            raise MCPError(types.INVALID_PARAMS, f"task {params.task_id} has already ended ({before})")
        return types.CancelTaskResult(**_task(params.task_id, await self._record(params.task_id), self.ttl_s))

    async def _newest(self) -> list[tuple[str, RunRecord]]:
        api = self.runs.api
        ids = await alist_runs(api.aclient, api.keys, LISTED_RUNS)
        records = await arun_records(api.aclient, api.keys, ids)
        return [(rec.run_id, rec) for rec in records if rec is not None]

    async def _list_tasks(self, ctx: ServerContext, params: types.PaginatedRequestParams) -> types.ListTasksResult:
        return types.ListTasksResult(tasks=[types.Task(**_task(r, rec, self.ttl_s)) for r, rec in await self._newest()])

    async def _list_resources(self, ctx: ServerContext, params: types.PaginatedRequestParams | None
                              ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[
            types.Resource(uri=RUN_URI.format(run_id=r), name=r, mime_type="application/json",
                           description=f"{rec.workflow} run, {rec.status}: {rec.task[:80]}")
            for r, rec in await self._newest()])

    async def _list_templates(self, ctx: ServerContext, params: types.PaginatedRequestParams | None
                              ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
            uri_template=RUN_URI, name="run", mime_type="application/json",
            description="A baton run: workflow, status, task, result, error, hops.")])

    async def _read_resource(self, ctx: ServerContext, params: types.ReadResourceRequestParams
                             ) -> types.ReadResourceResult:
        uri = str(params.uri)
        prefix = RUN_URI.split("{", 1)[0]
        if not uri.startswith(prefix):
            raise MCPError(types.INVALID_PARAMS, f"unknown resource {uri!r} (runs are {RUN_URI})")
        run_id = uri.removeprefix(prefix)
        doc = _run_doc(run_id, await self._record(run_id))
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=uri, mime_type="application/json", text=json.dumps(doc))])


def mcp_server(runs: Runs) -> BatonMCP:
    """The MCP server over the workflows and runs of ``runs``."""
    return BatonMCP(runs)
