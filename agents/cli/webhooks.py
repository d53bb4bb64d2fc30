"""Completion webhooks: ``baton webhooks failed|show|resend``."""

from __future__ import annotations

import json
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from ...broker.webhooks import failed, get_delivery
from ..webhooks import resend
from .common import CliError, app, connect_checked, out, settings, utc_time

__all__ = ["webhooks_failed", "webhooks_resend", "webhooks_show"]

webhooks_app = typer.Typer(help="Completion webhooks: failed deliveries, re-sending.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")

RunArg = Annotated[str, typer.Argument(help="The run id (a run's delivery id).")]


def _when(at: float) -> str:
    return utc_time(at) if at else ""


@webhooks_app.command("failed")
def webhooks_failed(
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List failed deliveries, newest first (re-send one with `baton webhooks resend RUN`)."""
    client, keys = connect_checked(settings())
    rows = failed(client, keys, max(1, limit))
    if as_json:
        out.print_json(json.dumps(msgspec.to_builtins(rows)))
        return
    table = Table("run", "url", "attempts", "last status", "failed at (UTC)", "error")
    for d in rows:
        table.add_row(d.run_id, d.url, str(d.attempts), str(d.last_code or ""), _when(d.next_at), d.last_error)
    out.print(table)


@webhooks_app.command("show")
def webhooks_show(run_id: RunArg) -> None:
    """Print RUN's delivery as JSON."""
    client, keys = connect_checked(settings())
    if (d := get_delivery(client, keys, run_id)) is None:
        raise CliError(f"run {run_id!r} has no webhook delivery")
    out.print_json(json.dumps(msgspec.to_builtins(d)))


@webhooks_app.command("resend")
def webhooks_resend(run_id: RunArg) -> None:
    """Send RUN's delivery again now (a fresh retry window)."""
    client, keys = connect_checked(settings())
    if resend(client, keys, run_id) is None:
        raise CliError(f"run {run_id!r} has no webhook delivery")
    out.print(f"webhook of run {run_id} queued to be sent again")
