"""``/v1/threads``: list, show and delete threads (conversations of runs); runs join a thread with the
``thread`` field of ``POST /v1/runs``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Query

from ...broker.cancel import delete_thread
from ...broker.threads import ThreadInfo, get_thread, seen_by, tenant_threads
from ...protocol.threads import scoped_thread
from .api import ApiContext, v1_router
from .tenancy import caller

__all__ = ["thread_view", "threads_router"]


def thread_view(info: ThreadInfo) -> dict[str, Any]:
    """A thread as the API shows it: its running turn, waiting runs, finished turns and times."""
    return msgspec.to_builtins(info)  # type: ignore[no-any-return]


def _tenant() -> str:
    """Whose threads the caller names: its tenant's (by their own ids), or every one for an admin."""
    who = caller()
    return "" if who.admin else who.tenant


def threads_router(ctx: ApiContext) -> APIRouter:
    """The ``/v1/threads`` routes."""
    router = v1_router(ctx, tags=["threads"])

    @router.get("/threads", summary="The most recently active threads (the caller's tenant's), newest first")
    def list_route(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        return {"threads": [thread_view(t) for t in tenant_threads(ctx.client, ctx.keys, _tenant(), limit)]}

    @router.get("/threads/{thread_id}", summary="One thread: its running turn, waiting runs and history")
    def show(thread_id: str) -> dict[str, Any]:
        tenant = _tenant()
        if (info := seen_by(get_thread(ctx.client, ctx.keys, scoped_thread(tenant, thread_id)), tenant)) is None:
            raise HTTPException(404, f"no thread {thread_id!r} (it never existed or it expired)")
        return thread_view(info)

    @router.delete("/threads/{thread_id}", summary="Delete a thread; its running and waiting turns are cancelled")
    def delete(thread_id: str) -> dict[str, Any]:
        if delete_thread(ctx.client, ctx.keys, scoped_thread(_tenant(), thread_id)) is None:
            raise HTTPException(404, f"no thread {thread_id!r}")
        return {"thread_id": thread_id, "deleted": True}

    return router
