"""Every workflow an A2A agent, served by ``baton dashboard`` on the ``a2a-sdk``'s server side.

``POST /a2a/{workflow}`` is the agent's JSON-RPC endpoint (the SDK's dispatcher, protocol
version 1.0) and ``GET /a2a/{workflow}/.well-known/agent-card.json`` its agent card;
``/.well-known/agent-card.json`` is the served workflow's card. All of them need the ``/v1``
bearer token (checked before the body is read), which the card declares as its security scheme.

The SDK's default handler keeps tasks in its own store and runs an executor in the server
process; a baton task is a durable run executed by workers, so :class:`RunTaskHandler` is the
SDK's ``RequestHandler`` over :class:`~baton.agents.ops.interop.runs.Runs` instead: a message
starts a run, the stream is the run's event log (``a2a_tasks.py``), ``GetTask`` reads the record
and the log, ``CancelTask`` cancels the run, and ``SubscribeToTask`` answers the task as it
stands and then follows the log from there, so a client that lost its connection misses nothing.
Nothing lives in the server's memory: any dashboard replica answers for any task.

A human review is the input-required state; a message on that task decides it through the
review ``decide`` path of ``/v1/reviews`` (``approve``, ``approve: <edited output>``, ``reject``,
``reject: <reason>``, or a data part ``{"decision", "output", "reason"}``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    CancelTaskRequest,
    HTTPAuthSecurityScheme,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SecurityRequirement,
    SecurityScheme,
    SendMessageRequest,
    StringList,
    SubscribeToTaskRequest,
    Task,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT
from a2a.utils.errors import (
    ExtendedAgentCardNotConfiguredError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf.json_format import MessageToDict

from ....broker import RunRecord, list_runs, run_records
from ....protocol import DECISIONS, DEFAULT_WORKFLOW, TERMINAL_STATUSES, Decision, ReviewRequested, RunStatus
from ..api import ApiContext
from ..tenancy import admin_only
from .a2a_tasks import (
    CONTEXT_KEY,
    MESSAGE_KEY,
    STOPPED,
    A2AEvent,
    a2a_events,
    context_of,
    snapshot,
    state_of,
)
from .runs import RunRefused, Runs

__all__ = ["RunTaskHandler", "a2a_router", "agent_card"]

log = logging.getLogger("baton.a2a")

CARD_PATH = "/.well-known/agent-card.json"
LIST_WINDOW = 500
"""How many of the newest runs ``ListTasks`` looks through."""



def agent_card(runs: Runs, workflow: str, base_url: str) -> AgentCard:
    """The agent card of ``workflow`` served at ``base_url`` (scheme, host and port)."""
    wf = runs.workflow(workflow)
    chain = " -> ".join(r.role for r in wf.order()) or wf.entry
    card = AgentCard(
        name=f"baton:{wf.name}", description=f"The baton workflow {wf.name!r} ({chain}): one task is one run.",
        version="1", default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        supported_interfaces=[AgentInterface(url=f"{base_url}/a2a/{wf.name}", protocol_binding="JSONRPC",
                                             protocol_version=PROTOCOL_VERSION_CURRENT)],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        skills=[AgentSkill(id=wf.name, name=wf.name, description=f"Run the workflow {wf.name!r} on the message's text.",
                           tags=["baton", "workflow"], input_modes=["text/plain"], output_modes=["text/plain"])])
    if runs.api.auth.enabled:
        card.security_schemes["bearer"].CopyFrom(SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(
            scheme="bearer", description="One of the deployment's BATON_API_TOKENS, as for /v1.")))
        card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList()}))
    return card


def _text(msg: Message) -> str:
    return "\n".join(p.text for p in msg.parts if p.text)


def _decision(msg: Message) -> tuple[Decision, str | None, str]:
    """The review decision a follow-up message carries: (decision, output, reason)."""
    for part in msg.parts:
        if part.HasField("data"):
            data = MessageToDict(part.data)
            decision = data.get("decision") if isinstance(data, dict) else None
            for known in DECISIONS:
                if decision == known:
                    return known, data.get("output"), str(data.get("reason") or "")
    text = _text(msg).strip()
    word, _, rest = text.partition(":")
    word, rest = word.strip().lower(), rest.strip()
    if word == "approve":
        return "approve", rest or None, ""
    if word == "reject":
        return "reject", None, rest
    raise InvalidParamsError(message="this task waits for a review: answer 'approve', 'approve: <edited output>', "
                                     "'reject' or 'reject: <reason>'")


class RunTaskHandler(RequestHandler):
    """The SDK's request handler over baton runs; the workflow comes with each call's context."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs

    async def _record(self, run_id: str, context: ServerCallContext) -> RunRecord:
        rec = await self.runs.record(run_id) if run_id else None
        if rec is None or (rec.workflow or DEFAULT_WORKFLOW) != context.state["workflow"]:
            raise TaskNotFoundError(message=f"no task {run_id!r} of this agent (it never existed or expired)")
        return rec

    async def _task(self, run_id: str, context: ServerCallContext,
                    history_length: int | None = None) -> tuple[Task, str | None]:
        """The task as it stands and the id of the last event it includes. The log is read before
        the record, so a record newer than the log shows the later state, never an older one; a
        record in review whose request the log lacks was parked between the two reads, and the log
        is read again (the park wrote the record and the event in one step)."""
        await self._record(run_id, context)
        events = await self.runs.events(run_id)
        rec = await self._record(run_id, context)
        if rec.status is RunStatus.REVIEW and not any(
                isinstance(e, ReviewRequested) and e.review_id == rec.review for _, e in events):
            events = await self.runs.events(run_id)  # parked between the reads: one atomic step wrote both
        task = snapshot(run_id, rec, events, history_length=history_length)
        return task, events[-1][0] if events else None

    async def _begin(self, params: SendMessageRequest, context: ServerCallContext) -> str:
        """Start a run for the message, or decide the review of the task it continues: the run's id."""
        msg = params.message
        if msg.task_id:
            rec = await self._record(msg.task_id, context)
            review = await self.runs.pending_review(msg.task_id)
            if review is None:
                state = TaskState.Name(state_of(rec)).removeprefix("TASK_STATE_").lower()
                raise UnsupportedOperationError(message=f"task {msg.task_id} is {state}: it takes a message only "
                                                        "while it waits for input (a review)")
            decision, output, reason = _decision(msg)
            try:
                await self.runs.decide(review, decision, output=output, reason=reason)
            except RunRefused as exc:
                raise UnsupportedOperationError(message=str(exc)) from None
            log.info("review %s of run %s %sd over A2A", review.review_id, msg.task_id, decision)
            return msg.task_id
        meta = {CONTEXT_KEY: msg.context_id} if msg.context_id else {}
        try:
            run_id = await self.runs.start(context.state["workflow"], _text(msg),
                                           metadata={"via": "a2a", **meta, MESSAGE_KEY: msg.message_id[:200]})
        except RunRefused as exc:
            raise InvalidParamsError(message=str(exc)) from None
        log.info("run %s started over A2A", run_id)
        return run_id

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task | Message:
        run_id = await self._begin(params, context)
        if not params.configuration.return_immediately:  # wait until the run ends or waits for a person
            _, after = await self._task(run_id, context)
            async for _, event in self.runs.follow(run_id, after):
                if isinstance(event, ReviewRequested):
                    break
        history = params.configuration.history_length if params.configuration.HasField("history_length") else None
        task, _ = await self._task(run_id, context, history)
        return task

    async def on_message_send_stream(self, params: SendMessageRequest,
                                     context: ServerCallContext) -> AsyncGenerator[A2AEvent]:
        run_id = await self._begin(params, context)
        async for event in self._stream(run_id, context):
            yield event

    async def on_subscribe_to_task(self, params: SubscribeToTaskRequest,
                                   context: ServerCallContext) -> AsyncGenerator[A2AEvent]:
        rec = await self._record(params.id, context)
        if rec.ended:
            raise UnsupportedOperationError(message=f"task {params.id} has ended ({rec.status}): GetTask "
                                                    "shows it")
        async for event in self._stream(params.id, context):
            yield event

    async def _stream(self, run_id: str, context: ServerCallContext) -> AsyncGenerator[A2AEvent]:
        """The task as it stands, then the run's later events in A2A, until it ends or waits for a person."""
        first, after = await self._task(run_id, context)
        yield first
        if first.status.state in STOPPED:
            return
        async for _, event in self.runs.follow(run_id, after):
            for update in a2a_events(run_id, first.context_id, event):
                yield update
                if isinstance(update, TaskStatusUpdateEvent) and update.status.state in STOPPED:
                    return

    async def on_get_task(self, params: Any, context: ServerCallContext) -> Task | None:
        history = params.history_length if params.HasField("history_length") else None
        task, _ = await self._task(params.id, context, history)
        return task

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task | None:
        await self._record(params.id, context)
        before = await self.runs.cancel(params.id)
        if before in TERMINAL_STATUSES:
            raise TaskNotCancelableError(message=f"task {params.id} has already ended ({before})")
        log.info("run %s cancelled over A2A", params.id)
        task, _ = await self._task(params.id, context)
        return task

    async def on_list_tasks(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        api = self.runs.api
        ids = await asyncio.to_thread(list_runs, api.client, api.keys, LIST_WINDOW)
        records = await asyncio.to_thread(run_records, api.client, api.keys, ids)
        size = params.page_size or 50
        tasks: list[Task] = []
        for run_id, rec in zip(ids, records, strict=True):
            if rec is None or (rec.workflow or DEFAULT_WORKFLOW) != context.state["workflow"]:
                continue
            if params.context_id and context_of(run_id, rec) != params.context_id:
                continue
            if params.status and state_of(rec) != params.status:
                continue
            tasks.append(snapshot(run_id, rec, [], history_length=params.history_length or None))
            if len(tasks) == size:
                break
        return ListTasksResponse(tasks=tasks, page_size=size, total_size=len(tasks))

    async def on_create_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(self, params: Any, context: ServerCallContext) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(self, params: Any, context: ServerCallContext) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError


class _WorkflowContext(DefaultServerCallContextBuilder):
    """The SDK's call context, with the workflow the request's path names."""

    def build(self, request: Any) -> ServerCallContext:
        context = super().build(request)
        context.state["workflow"] = request.path_params["workflow"]
        return context


def a2a_router(ctx: ApiContext) -> APIRouter:
    """The agent cards and JSON-RPC endpoints of every workflow ``ctx`` serves (bearer tokens required)."""
    runs = Runs(ctx)
    dispatcher = JsonRpcDispatcher(request_handler=RunTaskHandler(runs), context_builder=_WorkflowContext())
    router = APIRouter(dependencies=[Depends(ctx.auth), Depends(admin_only)], tags=["a2a"],  # tasks by id: admins'
                       responses={401: {"description": "Missing or wrong bearer token"},
                                  403: {"description": "A tenant's token (the A2A face is an admin's)"}})

    def card_response(workflow: str, request: Request) -> Response:
        try:
            card = agent_card(runs, workflow, str(request.base_url).rstrip("/"))
        except RunRefused as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        return JSONResponse(agent_card_to_dict(card))

    @router.get(CARD_PATH, summary="The A2A agent card of the served workflow")
    def served_card(request: Request) -> Response:
        return card_response(ctx.workflow.name, request)

    @router.get("/a2a/{workflow}" + CARD_PATH, summary="The A2A agent card of a workflow",
                responses={404: {"description": "No such workflow"}})
    def workflow_card(workflow: str, request: Request) -> Response:
        return card_response(workflow, request)

    @router.post("/a2a/{workflow}", summary="A workflow's A2A endpoint (JSON-RPC 2.0, A2A 1.0)",
                 responses={200: {"content": {"text/event-stream": {}},
                                  "description": "A JSON-RPC response, or server-sent events for streaming methods"},
                            404: {"description": "No such workflow"}})
    async def endpoint(workflow: str, request: Request) -> Response:
        if workflow not in runs.workflow_names():
            return JSONResponse({"detail": f"no workflow {workflow!r} here"}, status_code=404)
        return await dispatcher.handle_requests(request)

    return router
