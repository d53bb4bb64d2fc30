"""Read-only commands: ``result``, ``scratchpad``, ``streams``, ``schema``, ``model build``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from ...broker import Keys, Redis, agents_in_run, latest_run, run_record, scratchpad
from ...broker.stats import discover_streams, stream_stats
from ...protocol import RunStatus
from ...protocol import schema as protocol_schema
from ..runtime.prompt import notebook_memory
from ..workflow.loader import named
from .common import CliError, app, connect_checked, out, settings, visible

__all__ = ["result", "schema", "scratchpad_cmd", "stream_rows", "streams"]

model_app = typer.Typer(help="The model: build the offline twin.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@app.command()
def result(
    run_id: Annotated[str, typer.Argument(help="The run id printed by submit.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run record as JSON.")] = False,
) -> None:
    """Print a run's status and result (exit 1 while it is not done)."""
    client, keys = connect_checked(settings())
    rec = run_record(client, keys, run_id)
    if rec is None:
        raise CliError(f"no run {run_id!r} (check the id, BATON_PREFIX and REDIS_URL)")
    if as_json:
        out.print_json(json.dumps(rec.fields))
    elif rec.status is RunStatus.DONE:
        print(visible(rec.result))
    else:
        out.print(visible(f"{run_id}: {rec.status} {rec.error}".rstrip()), markup=False)
    if rec.status is not RunStatus.DONE:
        raise typer.Exit(1)


@app.command("scratchpad")
def scratchpad_cmd(
    agent: Annotated[str | None, typer.Argument(help="Agent name or role (default: every agent).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Run id (default: the newest run).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON with metadata.")] = False,
    workflow: Annotated[str | None, typer.Option(help="Workflow TOML file (to map roles to agents).")] = None,
) -> None:
    """Print scratchpads of a run, as the notebook's section 5 does."""
    client, keys = connect_checked(settings())
    run_id = run or latest_run(client, keys)
    if not run_id:
        raise CliError("there are no runs yet; submit one with baton submit")
    agents = agents_in_run(client, keys, run_id)
    if agent:
        by_role = {r.role: r.agent for r in named(workflow).roles}
        name = by_role.get(agent.lower(), agent)
        if name not in agents:
            raise CliError(f"agent {agent!r} has no scratchpad in run {run_id} (agents: {', '.join(agents) or 'none'})")
        agents = [name]
    pads = {a: scratchpad(client, keys, run_id, a) for a in agents}
    if as_json:
        out.print_json(json.dumps({"run_id": run_id, "scratchpads": msgspec.to_builtins(pads)}))
        return
    for a, entries in pads.items():
        print(f"{a} Scratchpad:\n", json.dumps(notebook_memory(entries), indent=2), "\n")


def stream_rows(client: Redis, keys: Keys) -> list[dict[str, Any]]:
    """Per task stream (of every workflow): length, and per group: pending, lag, consumers (with idle ms)."""
    return [
        {"stream": st.stream, "workflow": st.workflow, "role": st.role, "lane": st.lane, "length": st.length,
         "groups": [{"group": g.name, "pending": g.pending, "lag": g.lag,
                     "consumers": [{"name": c.name, "pending": c.pending, "idle_ms": c.idle_ms} for c in g.consumers]}
                    for g in st.groups]}
        for st in stream_stats(client, keys, discover_streams(client, keys))
    ]


@app.command()
def streams(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Per stream: length, group, pending, lag and consumers."""
    client, keys = connect_checked(settings())
    rows = stream_rows(client, keys)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("stream", "length", "group", "pending", "lag", "consumers")
    for r in rows:
        for g in r["groups"] or [{"group": "-", "pending": "-", "lag": "-", "consumers": []}]:
            names = ", ".join(f"{c['name']} ({c['pending']} pending)" for c in g["consumers"]) or "-"
            table.add_row(r["stream"], str(r["length"]), g["group"], str(g["pending"]), str(g["lag"]), names)
    out.print(table)


@app.command()
def schema(
    workflow: Annotated[bool, typer.Option("--workflow", help="The schema of workflow files instead.")] = False,
) -> None:
    """Print the JSON Schema of the wire messages (or of workflow files), constraints included."""
    if workflow:
        import msgspec

        from ..workflow.spec import Workflow

        print(json.dumps(msgspec.json.schema(Workflow), indent=2))
        return
    print(json.dumps(protocol_schema(), indent=2))


@model_app.command("build")
def model_build(
    path: Annotated[str | None, typer.Option(help="Directory to write the twin to.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if present.")] = False,
) -> None:
    """Build the offline twin of sshleifer/tiny-gpt2 and print its path."""
    from pathlib import Path

    from ..backends.twin import build_twin

    print(build_twin(Path(path) if path else None, force=force))
