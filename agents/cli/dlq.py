"""Operating the queue safely: ``baton dlq list|show|replay|purge``, ``cancel``, ``janitor``, ``acl``,
``setup``."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from ...broker import cancel_run
from ...broker.acl import RoleNeeds, role_acl
from ...broker.cluster import is_cluster_url
from ...broker.dlq import DeadEntry, ReplayError, find_dead, is_entry_id, list_dead, purge_dead, replay_dead
from ...broker.janitor import Janitor
from ...broker.scripts import library, setup_library
from ...protocol import TERMINAL_STATUSES
from ...protocol.fields import KEY_SAFE_PATTERN
from .common import AppOption, CliError, app, app_or_named, connect_checked, out, settings

__all__ = ["acl", "cancel", "setup", "dlq_list", "dlq_purge", "dlq_replay", "dlq_show", "janitor"]

dlq_app = typer.Typer(help="Dead letters: messages that could not be handled, with their reason.",
                      no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


def _row(d: DeadEntry) -> dict[str, object]:
    """A dead letter as JSON: ``id`` is its entry id in the dead-letter stream (what replay takes)."""
    row: dict[str, object] = msgspec.to_builtins(d.letter)
    row["letter_id"] = row.pop("id")
    return {"id": d.id, **row}


@dlq_app.command("list")
def dlq_list(
    role: Annotated[str | None, typer.Option(help="Only dead letters of this role.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (0: all).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List dead letters, oldest first: id, role, run, attempts, reason."""
    client, keys = connect_checked(settings())
    dead = list_dead(client, keys, role=role, limit=limit)
    if as_json:
        out.print_json(json.dumps([_row(d) for d in dead]))
        return
    if not dead:
        out.print("no dead letters")
        return
    table = Table("id", "role", "run", "attempts", "reason")
    for d in dead:
        table.add_row(d.id, d.letter.role, d.letter.run_id or "-", str(d.letter.attempts), d.letter.reason)
    out.print(table)




@dlq_app.command("show")
def dlq_show(entry_id: Annotated[str, typer.Argument(help="The dead letter's id (from baton dlq list).")]) -> None:
    """Print one dead letter in full, original message included, as JSON."""
    client, keys = connect_checked(settings())
    d = find_dead(client, keys, entry_id)
    if d is None:
        raise CliError(f"no dead letter {entry_id!r} (see baton dlq list)")
    out.print_json(json.dumps(_row(d)))


@dlq_app.command("replay")
def dlq_replay(
    entry_ids: Annotated[list[str] | None, typer.Argument(help="Dead letter ids to replay.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter (of --role).")] = False,
    role: Annotated[str | None, typer.Option(help="With --all: only this role's.")] = None,
) -> None:
    """Re-publish dead letters' original messages on the streams they came from."""
    client, keys = connect_checked(settings())
    if all_ == bool(entry_ids):
        raise CliError("give dead letter ids or --all (not both)", 2)
    if all_:
        targets = list_dead(client, keys, role=role, limit=0)
    else:
        targets = []
        for eid in entry_ids or []:
            d = find_dead(client, keys, eid)
            if d is None:
                raise CliError(f"no dead letter {eid!r} (see baton dlq list)")
            targets.append(d)
    for d in targets:
        try:
            new_id = replay_dead(client, keys, d)
        except ReplayError as exc:
            raise CliError(str(exc)) from None
        out.print(f"replayed {d.id} -> {d.letter.stream} {new_id}")
    if not targets:
        out.print("nothing to replay")


@dlq_app.command("purge")
def dlq_purge(
    entry_ids: Annotated[list[str] | None, typer.Argument(help="Dead letter ids to delete.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Delete every dead letter.")] = False,
) -> None:
    """Delete dead letters for good."""
    if all_ == bool(entry_ids):
        raise CliError("give dead letter ids or --all (not both)", 2)
    bad = [i for i in entry_ids or [] if not is_entry_id(i)]
    if bad:
        raise CliError(f"not a dead letter id: {bad[0]!r} (ids look like 1712345678901-0; see baton dlq list)", 2)
    client, keys = connect_checked(settings())
    n = purge_dead(client, keys, None if all_ else entry_ids)
    out.print(f"purged {n} dead letter{'s' if n != 1 else ''}")


@app.command()
def cancel(run_id: Annotated[str, typer.Argument(help="The run to cancel.")]) -> None:
    """Cancel a run: workers stop it at its next hop without calling the model."""
    s = settings()
    client, keys = connect_checked(s)
    before = cancel_run(client, keys, run_id)
    if before is None:
        raise CliError(f"no run {run_id!r} (check the id, BATON_PREFIX and REDIS_URL)")
    if before in TERMINAL_STATUSES:
        raise CliError(f"run {run_id} already finished ({before}); nothing to cancel")
    out.print(f"cancelled {run_id} (was {before})")


@app.command()
def janitor(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Trim acknowledged history of every task stream (MINID, never below what is pending) and old results."""
    s = settings()
    client, keys = connect_checked(s)
    report = Janitor(client, keys).sweep()
    if as_json:
        out.print_json(json.dumps(asdict(report)))
        return
    for stream, n in sorted(report.trimmed.items()):
        out.print(f"trimmed {n} acknowledged entries from {stream}")
    out.print(f"{report.results_trimmed} old results trimmed, {report.runs_forgotten} expired runs and "
              f"{report.cancelled_forgotten} cancellations forgotten")


@app.command()
def acl(
    role: Annotated[str, typer.Argument(help="The role whose workers the ACL user is for.")],
    password: Annotated[str | None, typer.Option(help="The user's password (default: read BATON_ACL_PASSWORD).",
                                                 envvar="BATON_ACL_PASSWORD")] = None,
    workflow: Annotated[str | None, typer.Option(help="Workflow TOML file (default: the seed chain).")] = None,
    scripts: Annotated[bool, typer.Option(
        "--scripts", help="Redis < 7 only (no Functions): also grant EVALSHA and SCRIPT LOAD, which let the role "
                          "run any Lua.")] = False,
    tenant: Annotated[str, typer.Option(
        help="The tenant whose own workers these are (its quota and limits only), or '*' for workers that "
             "serve every tenant.")] = "",
    app_ref: AppOption = None,
) -> None:
    """Print the least-privilege ``ACL SETUSER`` command for ROLE's workers (see docs/RELIABILITY.md).

    The role calls baton's Functions library (FCALL): load it first with ``baton setup``."""
    if tenant and tenant != "*" and not re.match(KEY_SAFE_PATTERN, tenant):
        raise CliError(f"bad tenant name {tenant!r}: letters, digits, '_', '.' and '-' only (or '*')")
    s = settings(workflow=workflow)
    wf = app_or_named(workflow or (None if app_ref else s.workflow), app_ref)
    spec = wf.role(role)
    nxt = sorted({spec.next, *(r.to for r in spec.routes)} - {"", "end"})
    if not spec.next or any(r.to == "end" for r in spec.routes):  # it ends runs: a thread's next turn starts
        nxt = sorted({*nxt, wf.entry} - {spec.role})
    features = []
    if spec.share or "{shared}" in spec.prompt or "memory_recall" in spec.tools:
        features.append("shared_memory")
    if spec.join:
        features.append("join")
    if spec.tools or spec.steps or spec.parse_tools:
        features.append("tools")
    agents = [spec.agent] if spec.memory == "agent" else []
    needs = RoleNeeds(next_roles=tuple(nxt), features=tuple(features), agent_memory=tuple(agents),
                      rate_limits=bool(spec.rpm or spec.tpm or s.model_rpm or s.model_tpm),
                      review=bool(spec.review), code=spec.is_code, tenant=tenant)
    rules = role_acl(s.keys(), wf.name, spec.role, needs, password=password or "CHANGE-ME",
                     cluster=is_cluster_url(s.redis_url), scripts=scripts)
    print("ACL SETUSER " + " ".join(shlex.quote(r) for r in rules))


@app.command()
def setup() -> None:
    """Load baton's Redis Functions library on every primary (an admin step: REDIS_URL needs FUNCTION LOAD).

    Run it once per deployment and again after upgrading baton; role users (``baton acl``) may only call it.
    """
    s = settings()
    client, _ = connect_checked(s)
    count = setup_library(client)
    if not count:
        out.print("this Redis has no Functions (Redis < 7): workers load baton's steps as scripts; role users "
                  "need `baton acl --scripts`")
        return
    out.print(f"loaded Functions library {library().name} on {count} primar{'y' if count == 1 else 'ies'}")
