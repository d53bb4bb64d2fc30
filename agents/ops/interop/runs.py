"""A baton run as the protocol faces see it: start one, follow its event log, read, cancel, decide.

The OpenAI-compatible face, the A2A server and the MCP server all speak through :class:`Runs`,
which sits on the ``/v1`` API's :class:`~baton.agents.ops.api.ApiContext`: a run starts through
the API's one submit function (same checks, backpressure and budget), its progress is its event
log (``broker/events.py``), a cancel is ``cancel_run`` and a review decision is the review
``decide`` path of ``/v1/reviews``. Nothing here keeps state in memory: a server restart loses no
run, and any replica can answer for any run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from fastapi import HTTPException

from ....broker import RunRecord, cancel_run
from ....broker.events import aread_events
from ....broker.reviews import Decided, Review, ReviewError, decide, find_review
from ....broker.runs import arun_record
from ....broker.workflows import registered_workflows
from ....protocol import DEFAULT_WORKFLOW, Event, is_terminal
from ...workflow.spec import Workflow
from ..api import ApiContext, submit_request
from ..bodies import MAX_METADATA_VALUE, SubmitRequest

__all__ = ["FOLLOW_BLOCK_MS", "HISTORY_KEY", "RunRefused", "Runs", "fit_history", "inlined_body",
           "terminal_roles"]

FOLLOW_BLOCK_MS = 5_000
"""How long one blocking read of a run's log waits before the run's record is checked."""

HISTORY_KEY = "history"
"""The run metadata entry that carries a conversation's earlier messages (JSON)."""


class RunRefused(ValueError):
    """A run could not be started or stepped; ``status`` is the HTTP status the API would answer."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = dict(headers or {})


def terminal_roles(wf: Workflow) -> frozenset[str]:
    """The roles whose output can be a run's result: no ``next`` and no routes."""
    return frozenset(r.role for r in wf.roles if not r.next and not r.routes)


def fit_history(messages: Sequence[Mapping[str, str]], limit: int = MAX_METADATA_VALUE) -> str:
    """The newest of ``messages`` whose JSON fits in ``limit`` characters, oldest first, as JSON."""
    kept: list[Mapping[str, str]] = []
    for message in reversed(messages):
        if len(json.dumps([message, *kept])) > limit:
            break
        kept.insert(0, message)
    return json.dumps(kept) if kept else ""


@dataclass
class Runs:
    """Runs of the workflows one server serves (the API's context underneath)."""

    api: ApiContext

    def workflow_names(self) -> list[str]:
        """Every workflow a caller can start here: the served one first, then the shipped ones and the
        ones apps' workers registered (``baton worker --app``)."""
        from ...workflow import loader

        served = self.api.workflow.name
        apps = registered_workflows(self.api.client, self.api.keys)
        return [served, *sorted({DEFAULT_WORKFLOW, *loader.packaged(), *apps} - {served})]

    def workflow(self, name: str) -> Workflow:
        """The workflow ``name``; ``RunRefused`` (404) when this server has none of that name."""
        if name not in self.workflow_names():
            raise RunRefused(404, f"no workflow {name!r} here (this server runs: {', '.join(self.workflow_names())})")
        try:
            return self.api.resolve_workflow(name)
        except HTTPException as exc:
            raise RunRefused(exc.status_code, str(exc.detail)) from None

    async def start(self, workflow: str, task: str, *, metadata: Mapping[str, str] | None = None) -> str:
        """Start a run of ``workflow`` on ``task`` through the API's submit function; its id."""
        self.workflow(workflow)
        if not task.strip():
            raise RunRefused(422, "the task is empty: send the text the workflow should work on")
        try:
            body = SubmitRequest(task=task, workflow=workflow, metadata=dict(metadata or {}))
        except (TypeError, ValueError) as exc:
            raise RunRefused(422, str(exc)) from None
        try:
            return await asyncio.to_thread(submit_request, self.api, body)
        except HTTPException as exc:
            raise RunRefused(exc.status_code, str(exc.detail), exc.headers) from None

    async def record(self, run_id: str) -> RunRecord | None:
        """The run's record (None when it never existed or expired)."""
        return await arun_record(self.api.aclient, self.api.keys, run_id)

    async def follow(self, run_id: str, after: str | None = None) -> AsyncIterator[tuple[str, Event]]:
        """The run's events after event id ``after`` (from the start when None), live, until its
        terminal event (or until its record says it ended or expired, when the log no longer has one)."""
        api = self.api
        while True:
            batch = await aread_events(api.aclient, api.keys, run_id, after=after, block_ms=FOLLOW_BLOCK_MS)
            ended = False
            if not batch:
                rec = await self.record(run_id)
                ended = rec is None or rec.ended
                if ended:  # the terminal event may have been written since the read
                    batch = await aread_events(api.aclient, api.keys, run_id, after=after)
            for event_id, event in batch:
                after = event_id
                yield event_id, event
                if is_terminal(event):
                    return
            if ended:
                return

    async def events(self, run_id: str) -> list[tuple[str, Event]]:
        """The run's whole event log as it is now."""
        out: list[tuple[str, Event]] = []
        after: str | None = None
        while True:
            batch = await aread_events(self.api.aclient, self.api.keys, run_id, after=after, count=500)
            if not batch:
                return out
            out.extend(batch)
            after = batch[-1][0]

    async def cancel(self, run_id: str) -> str | None:
        """Cancel the run; its status before (None when there is no such run)."""
        return await asyncio.to_thread(cancel_run, self.api.client, self.api.keys, run_id)

    async def pending_review(self, run_id: str) -> Review | None:
        """The run's latest review while it waits for a decision."""
        review = await asyncio.to_thread(find_review, self.api.client, self.api.keys, run_id)
        return review if review is not None and review.pending else None

    async def decide(self, review: Review, decision: str, *, output: str | None = None, reason: str = "") -> Decided:
        """Decide ``review`` as ``POST /v1/reviews/{id}`` does (the first decision stands)."""
        try:
            return await asyncio.to_thread(decide, self.api.client, self.api.keys, review.review_id, decision, output,
                                           reason)
        except ReviewError as exc:
            raise RunRefused(409, str(exc)) from None


def inlined_body(kind: type[msgspec.Struct]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is a ``kind`` that nests other Structs (inlined)."""
    doc = msgspec.json.schema(kind)
    defs = doc.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(doc)}}}}

