"""``baton mcp``: the workflows as MCP tools and the runs as resources, over stdio.

An MCP host (an IDE, a desktop assistant) starts ``baton mcp`` as a subprocess and speaks MCP on
its stdin and stdout; the server is the one ``baton dashboard`` serves at ``/mcp``
(``agents/ops/interop/mcp_server.py``). Logs go to stderr: stdout carries the protocol only.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..runtime.logs import setup_logging
from ..workflow.loader import named
from .common import app, connect_checked, settings

__all__ = ["mcp"]


@app.command()
def mcp(
    workflow: Annotated[str | None, typer.Option(help="Workflow TOML file served first (default: the seed "
                                                      "chain); the shipped workflows are served too.")] = None,
) -> None:
    """Serve the workflows as MCP tools and the runs as resources on stdin/stdout (for an MCP host)."""
    import anyio
    from mcp.server.stdio import stdio_server

    from ..ops.api import ApiContext
    from ..ops.auth import BearerAuth
    from ..ops.interop.mcp_server import mcp_server
    from ..ops.interop.runs import Runs

    s = settings()
    setup_logging(s.log_format, s.log_level)
    client, keys = connect_checked(s)
    # The host that started this process speaks for its user: stdio has no tokens to check.
    api = ApiContext(s, client, keys, named(workflow or s.workflow or None), BearerAuth(()))
    server = mcp_server(Runs(api))

    async def serve() -> None:
        try:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
        finally:
            await api.aclose()

    anyio.run(serve)
