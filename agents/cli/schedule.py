"""Cron schedules: ``baton schedule add|list|pause|resume|delete`` and ``baton scheduler``."""

from __future__ import annotations

import json
import threading
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from ...broker.schedules import delete_schedule, list_schedules, schedule_state
from ...protocol import ProtocolError
from ...protocol.schedules import OVERLAPS
from ..runtime.lifecycle import install_signal_handlers
from ..schedules import add_schedule, next_ticks, parse_duration, set_paused
from ..upkeep import Upkeep
from .common import CliError, app, connect_checked, err, out, settings, utc_time

__all__ = ["schedule_add", "schedule_delete", "schedule_list", "schedule_pause", "schedule_resume", "scheduler"]

schedule_app = typer.Typer(help="Cron schedules of runs (fired by every worker and by `baton scheduler`).",
                           no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

NameArg = Annotated[str, typer.Argument(help="The schedule's name.")]


@schedule_app.command("add")
def schedule_add(
    name: NameArg,
    cron: Annotated[str, typer.Argument(help="Cron in UTC: 5 fields, or 6 with seconds last.")],
    task: Annotated[str, typer.Option(help="The task each run starts with.")],
    workflow: Annotated[str, typer.Option(help="Workflow name (default: the seed chain).")] = "",
    overlap: Annotated[str, typer.Option(help="While the last run goes on: skip, buffer_one or allow.")] = "skip",
    catchup: Annotated[str, typer.Option(help="Fire missed ticks at most this old (30s, 10m).")] = "60s",
) -> None:
    """Create or replace schedule NAME."""
    client, keys = connect_checked(settings())
    try:
        window = parse_duration(catchup)
        if overlap not in OVERLAPS:
            raise ProtocolError(f"--overlap must be one of {', '.join(OVERLAPS)}, not {overlap!r}")
        add_schedule(client, keys, name, cron, task=task, workflow=workflow, overlap=overlap,  # type: ignore[arg-type]
                     catchup_s=window)
    except (ProtocolError, ValueError) as exc:
        raise CliError(str(exc)) from None
    when = ", ".join(utc_time(t) for t in next_ticks(cron))
    out.print(f"schedule {name} added; next ticks (UTC): {when}")


@schedule_app.command("list")
def schedule_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List schedules with their last tick and last run."""
    client, keys = connect_checked(settings())
    rows = [(s, schedule_state(client, keys, s.name)) for s in list_schedules(client, keys)]
    if as_json:
        out.print_json(json.dumps([msgspec.to_builtins(s) | {"state": msgspec.to_builtins(st)} for s, st in rows]))
        return
    table = Table("name", "cron", "workflow", "overlap", "catch-up", "paused", "last run")
    for s, st in rows:
        table.add_row(s.name, s.cron, s.workflow or "seed", s.overlap, f"{s.catchup_s:g}s", "yes" if s.paused else "",
                      st.last_run)
    out.print(table)


def _pause(name: str, paused: bool) -> None:
    client, keys = connect_checked(settings())
    if set_paused(client, keys, name, paused) is None:
        raise CliError(f"no schedule {name!r}")
    out.print(f"schedule {name} {'paused' if paused else 'resumed'}")


@schedule_app.command("pause")
def schedule_pause(name: NameArg) -> None:
    """Stop firing NAME until it is resumed."""
    _pause(name, True)


@schedule_app.command("resume")
def schedule_resume(name: NameArg) -> None:
    """Fire NAME again from its next tick."""
    _pause(name, False)


@schedule_app.command("delete")
def schedule_delete(name: NameArg) -> None:
    """Delete NAME (its runs stay)."""
    client, keys = connect_checked(settings())
    if not delete_schedule(client, keys, name):
        raise CliError(f"no schedule {name!r}")
    out.print(f"schedule {name} deleted")


@app.command("scheduler")
def scheduler(
    poll: Annotated[float, typer.Option(help="Seconds between passes over the schedules and webhooks.")] = 0.5,
) -> None:
    """Fire the schedules' ticks, deliver webhooks (with BATON_WEBHOOK_SECRET) and wake durable timers
    until SIGTERM/SIGINT; run as many as you like (each tick starts one run, each webhook is sent by one,
    each timer wakes once)."""
    s = settings()
    client, keys = connect_checked(s)
    stop = threading.Event()
    install_signal_handlers(stop, s.shutdown_grace_s)  # as a worker's: a second signal or the grace period ends it
    err.print(f"scheduler polling every {poll:g}s")
    Upkeep(client, keys, s, stop, timers=True, poll_s=poll).run()
