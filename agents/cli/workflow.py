"""``baton workflow check FILE`` and ``baton workflow list``; ``baton serve-model``.

``check`` decodes and validates a workflow file (or a shipped workflow's name) and prints its
roles and routing; a bad file is one line on stderr naming the file and the problem.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..serving.batcher import DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH
from ..workflow.loader import named
from ..workflow.spec import Workflow
from .common import CliError, app, out, settings

__all__ = ["check", "list_workflows", "serve_model"]

workflow_app = typer.Typer(help="Check and list workflow files.", no_args_is_help=True)
app.add_typer(workflow_app, name="workflow")


def _routing(wf: Workflow) -> Table:
    table = Table("role", "agent", "next / routes", "fan", "tools", "memory", box=None, pad_edge=False)
    for r in wf.order():
        routes = [f"{x.to} if /{x.when}/ in {x.source}" for x in r.routes]
        nxt = "; ".join([*routes, r.next or "end (result)"])
        fan = (f"split {r.split.count} by {r.split.by} (else {r.split.fallback})" if r.split else "") + (
            "join" if r.join else "")
        tools = ", ".join(r.tools) + (f" (steps: {', '.join(s.tool for s in r.steps)})" if r.steps else "")
        table.add_row(r.role, r.agent, nxt, fan, tools, r.memory)
    return table


@workflow_app.command()
def check(
    file: Annotated[str, typer.Argument(help="A workflow TOML file, or the name of a shipped workflow.")],
) -> None:
    """Validate FILE and print its roles and routing (exit 1 with one line if it is bad)."""
    wf = named(file)
    out.print(f"ok: workflow {wf.name!r}, entry {wf.entry!r}, {len(wf.roles)} roles")
    out.print(_routing(wf))


@workflow_app.command("list")
def list_workflows() -> None:
    """The workflows shipped with baton."""
    from ..workflow import loader as workflows

    for name, path in sorted(workflows.packaged().items()):
        out.print(f"{name}\t{path}")


@app.command("serve-model")
def serve_model(
    model: Annotated[str | None, typer.Option(help="HF hub id or local directory (default: BATON_MODEL).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind (beyond loopback needs API keys).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    name: Annotated[str | None, typer.Option(help="Model name the API reports (default: the model).")] = None,
    max_batch: Annotated[int, typer.Option(
        min=1, help="Prompts per batched generate call at most.")] = DEFAULT_MAX_BATCH,
    batch_wait_ms: Annotated[float, typer.Option(
        min=0, help="Milliseconds a request waits for others to share its batch.")] = DEFAULT_BATCH_WAIT_MS,
    replicas: Annotated[int | None, typer.Option(
        min=1, help="Server processes on the port, each with its own copy of the model (default: one per "
                    "usable core, as many as the available memory holds).", show_default=False)] = None,
    api_key: Annotated[list[str] | None, typer.Option(
        help="An API key clients must send as a bearer token (repeatable; adds to BATON_MODEL_API_KEYS).")] = None,
    allow_anonymous: Annotated[bool, typer.Option(
        "--allow-anonymous", help="Listen beyond loopback without API keys (only behind something that keeps "
                                  "others out).")] = False,
) -> None:
    """Serve a local Hugging Face model over an OpenAI-compatible API (/v1/completions, /v1/chat/completions).

    With API keys (BATON_MODEL_API_KEYS, --api-key) the /v1 routes need `Authorization: Bearer <key>`;
    workers send theirs from OPENAI_API_KEY.
    """
    from ..backends import is_http_model
    from ..runtime.logs import setup_logging
    from ..serving.server import default_replicas, serve
    from .dashboard import is_loopback

    s = settings()
    target = model or s.model
    if is_http_model(target):
        raise CliError(f"serve-model serves a local model; give --model a hub id or a directory, not {target}")
    keys = tuple(dict.fromkeys([*s.model_api_key_list(), *(k.strip() for k in api_key or () if k.strip())]))
    if not keys and not is_loopback(host) and not allow_anonymous:
        raise CliError(f"refusing to listen on {host} without authentication: set BATON_MODEL_API_KEYS or "
                       "--api-key (or bind 127.0.0.1)", 2)
    setup_logging(s.log_format, s.log_level)
    try:
        if not replicas:  # as many as the cores and the memory hold copies of the model
            replicas = default_replicas(target)
        serve(target, host=host, port=port, served_name=name, threads=s.torch_threads, max_batch=max_batch,
              batch_wait_ms=batch_wait_ms, replicas=replicas, api_keys=keys)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot serve {target}: {exc}") from None
