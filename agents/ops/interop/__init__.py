"""The ecosystem's protocols over baton runs: an OpenAI-compatible face, an A2A server and an MCP
server, each a face of the same runs (``runs.py``) on the ``/v1`` API's authentication."""

from __future__ import annotations

from fastapi import FastAPI

from baton.agents.ops.api import ApiContext

__all__ = ["mount_protocols"]


def mount_protocols(app: FastAPI, ctx: ApiContext) -> None:
    """Serve the protocol faces on ``app`` (the dashboard), with ``ctx``'s bearer tokens."""
    from baton.agents.ops.interop.a2a_server import a2a_router
    from baton.agents.ops.interop.openai_face import openai_router

    app.include_router(openai_router(ctx))
    app.include_router(a2a_router(ctx))
