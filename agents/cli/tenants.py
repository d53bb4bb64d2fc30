"""Tenants and the audit log: ``baton tenants`` (each tenant's queued, running, tokens used and
limits), ``baton tenants token NAME`` (a new token and the hash line for the tenants file),
``baton tenants apply`` (publish the tenants file's limits) and ``baton audit``."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from ...broker.audit import read_audit
from ...broker.tenants import publish_limits
from ...protocol.fields import KEY_SAFE_PATTERN
from ..ops.tenants_api import tenant_views
from ..tenants import Directory, hash_token, new_token
from .common import CliError, app, connect_checked, out, settings, utc_time

__all__ = ["audit", "tenants_apply", "tenants_show", "tenants_token"]

tenants_app = typer.Typer(help="Tenants: usage and limits, tokens, publishing the tenants file.",
                          invoke_without_command=True)
app.add_typer(tenants_app, name="tenants")


def _limit(n: int) -> str:
    return f"{n:,}" if n else "-"


@tenants_app.callback()
def tenants_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each tenant's queued and running runs, tokens used in its quota window, and its limits."""
    if ctx.invoked_subcommand is not None:
        return
    client, keys = connect_checked(settings())
    rows = tenant_views(client, keys)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print("no tenants published (set BATON_TENANTS_FILE and run `baton tenants apply`, or start the API)")
        return
    table = Table("tenant", "queued", "running", "tokens used", "quota", "window", "rpm", "tpm", "weight",
                  "max running")
    for r in rows:
        lim = r["limits"]
        used = f"{r['tokens_used']:,}" + (" (over)" if r["over_quota"] else "")
        table.add_row(r["tenant"], str(r["queued"]), str(r["running"]), used, _limit(lim["quota_tokens"]),
                      f"{lim['quota_window_s']:,} s", _limit(lim["rpm"]), _limit(lim["tpm"]), str(lim["weight"]),
                      _limit(lim["max_running"]))
    out.print(table)


@tenants_app.command("token")
def tenants_token(name: Annotated[str, typer.Argument(help="The tenant the token is for.")]) -> None:
    """Make a new random token for NAME: print the token (once; it is never stored) and the line for the
    tenants file (its hash)."""
    import re

    if not re.match(KEY_SAFE_PATTERN, name) or len(name) > 64:
        raise CliError(f"bad tenant name {name!r}: letters, digits, '_', '.' and '-' only")
    token = new_token()
    out.print(f"token (give it to {name}; it is shown only now): {token}", highlight=False)
    out.print(f'[tenants.{name}]\ntokens = ["{hash_token(token)}"]', highlight=False, markup=False)


@tenants_app.command("apply")
def tenants_apply() -> None:
    """Publish the limits of BATON_TENANTS_FILE to Redis (workers and submits read them within seconds)."""
    s = settings()
    if not s.tenants_file:
        raise CliError("set BATON_TENANTS_FILE to the tenants file first")
    directory = Directory.of(s.tenants_file)
    client, keys = connect_checked(s)
    publish_limits(client, keys, directory.limits())
    out.print(f"published the limits of {len(directory.tenants)} tenants")


@app.command()
def audit(
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 50,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's calls.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The audit log: every state-changing API call, who, what, when and from where, newest first."""
    client, keys = connect_checked(settings())
    entries = read_audit(client, keys, limit=max(1, limit), tenant=tenant)
    if as_json:
        out.print_json(json.dumps([asdict(e) for e in entries]))
        return
    table = Table("when (UTC)", "who", "token", "call", "status", "from")
    for e in entries:
        table.add_row(utc_time(e.at), e.who, e.token, f"{e.method} {e.path}", str(e.status), e.client)
    out.print(table)
