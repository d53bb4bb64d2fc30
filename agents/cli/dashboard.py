"""``baton dashboard``: the web dashboard and HTTP API on HOST:PORT; ``baton api openapi``."""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated

import typer

from ..runtime.logs import setup_logging
from ..workflow.loader import named
from .common import CliError, app, connect_checked, err, settings

__all__ = ["dashboard", "is_loopback", "openapi"]

api_app = typer.Typer(help="The HTTP API served by `baton dashboard`.", no_args_is_help=True)
app.add_typer(api_app, name="api")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface; needs "
                                           "BATON_API_TOKENS).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workflow: Annotated[str | None, typer.Option(help="Workflow TOML file (default: the seed chain).")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between samples.", min=0.1)] = 1.0,
    allow_anonymous: Annotated[bool, typer.Option(
        "--allow-anonymous", help="Listen beyond loopback without BATON_API_TOKENS (only behind something that "
                                  "keeps others out, e.g. a container port published on 127.0.0.1).")] = False,
) -> None:
    """Serve the dashboard and the HTTP API (/v1): streams, throughput, runs, traces, scratchpads, dead letters.

    /metrics exports per-role lag and pending (Prometheus) for autoscalers. With BATON_API_TOKENS set,
    /api and /v1 need a bearer token.
    """
    import uvicorn

    from ..ops.dashboard import create_app
    from ..ops.timeouts import TimedH11Protocol

    s = settings()
    if not s.api_token_list() and not s.tenants_file and not is_loopback(host) and not allow_anonymous:
        raise CliError(f"refusing to listen on {host} without authentication: set BATON_API_TOKENS "
                       "(or bind 127.0.0.1)", 2)
    setup_logging(s.log_format, s.log_level)
    client, _ = connect_checked(s)
    api = create_app(s, named(workflow or s.workflow or None), interval=interval, client=client)
    auth = "bearer tokens required" if s.api_token_list() or s.tenants_file else "no authentication"
    err.print(f"baton dashboard on http://{host}:{port}/  (API: /v1, {auth}; metrics: /metrics)")
    uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
                http=TimedH11Protocol)


@api_app.command()
def openapi(
    workflow: Annotated[str | None, typer.Option(help="Workflow TOML file (default: the seed chain).")] = None,
) -> None:
    """Print the OpenAPI document of the dashboard and HTTP API (docs/openapi.json is this output)."""
    from ..ops.dashboard import create_app
    from ..settings import Settings

    doc = create_app(Settings(), named(workflow)).openapi()  # the client connects on first use: never here
    typer.echo(json.dumps(doc, indent=2, sort_keys=True))
