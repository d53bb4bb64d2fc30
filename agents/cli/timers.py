"""Durable waits of code roles: ``baton signal RUN NAME [--data JSON]`` and ``baton waits``."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from ...broker.timers import SignalRefused, list_waits, send_signal
from .common import CliError, app, connect_checked, out, settings, utc_time

__all__ = ["signal", "waits"]


@app.command()
def signal(
    run_id: Annotated[str, typer.Argument(help="The run to signal.")],
    name: Annotated[str, typer.Argument(help="The signal's name (what ctx.wait_for(name) waits for).")],
    data: Annotated[str, typer.Option(help="The signal's data as JSON (default: null).")] = "null",
) -> None:
    """Send signal NAME to RUN: a waiting ``ctx.wait_for(NAME)`` takes it, else it is kept until one asks."""
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise CliError(f"--data is not JSON: {exc}", 2) from None
    client, keys = connect_checked(settings())
    try:
        delivered = send_signal(client, keys, run_id, name, value)
    except SignalRefused as exc:
        raise CliError(exc.reason) from None
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    out.print(f"signal {name} {'delivered to' if delivered else 'kept for'} run {run_id}")


def _when(at: float | None) -> str:
    return utc_time(at) if at else "-"


@app.command()
def waits(
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Parked runs of code roles, soonest due first: what each sleeps or waits for, until when (UTC)."""
    client, keys = connect_checked(settings())
    found = list_waits(client, keys, limit=limit)
    if as_json:
        out.print_json(json.dumps([asdict(w) for w in found]))
        return
    table = Table("run", "workflow", "role", "waits for", "until", "deadline")
    for w in found:
        table.add_row(w.run_id, w.workflow, w.role, "sleep" if w.kind == "sleep" else f"signal {w.name}",
                      _when(w.until), _when(w.deadline))
    out.print(table)
