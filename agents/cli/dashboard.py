"""``baton dashboard``: the web dashboard (FastAPI + server-sent events) on HOST:PORT."""

from __future__ import annotations

from typing import Annotated

import typer

from baton.agents.cli.common import app, connect_checked, err, load_workflow, settings
from baton.agents.runtime.logs import setup_logging

__all__ = ["dashboard"]


@app.command()
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workflow: Annotated[str | None, typer.Option(help="Workflow TOML file (default: the seed chain).")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between samples.", min=0.1)] = 1.0,
) -> None:
    """Serve the dashboard: streams, throughput, runs, traces, scratchpads, dead letters, submit.

    /metrics exports per-role lag and pending (Prometheus) for autoscalers.
    """
    import uvicorn

    from baton.agents.ops.dashboard import create_app

    s = settings()
    setup_logging(s.log_format, s.log_level)
    client, _ = connect_checked(s)
    api = create_app(s, load_workflow(workflow or s.workflow or None), interval=interval, client=client)
    err.print(f"baton dashboard on http://{host}:{port}/  (metrics: /metrics)")
    uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
