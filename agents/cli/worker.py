"""``baton worker ROLE``: one long-lived worker process (many may run per role)."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from ...broker import BrokerError, Keys, check_worker, connect
from ...broker.reserve import RESERVES
from ...broker.scripts import check_library
from ..runtime.logs import context, setup_logging
from ..settings import Settings
from ..workflow.spec import RoleSpec, Workflow
from .common import AppOption, CliError, app, app_or_named, connect_checked, out, settings

if TYPE_CHECKING:
    from ..runtime.stages.handle import HandlerRunner

log = logging.getLogger("baton.worker")

__all__ = ["worker"]


@app.command(context_settings={"allow_extra_args": True})
def worker(
    ctx: typer.Context,
    role: Annotated[str | None, typer.Argument(
        help="The role to serve, e.g. planner; several roles (baton worker planner researcher) batch across roles."
    )] = None,
    workflow: Annotated[str | None, typer.Option(help="Workflow TOML file (default: the seed chain).")] = None,
    app_ref: AppOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 0 if a worker of ROLE on this host has a fresh heartbeat.")
    ] = False,
    all_roles: Annotated[bool, typer.Option(
        "--all-roles", help="Serve every role of the workflow in this process (cross-role batching)."
    )] = False,
    batch_size: Annotated[int | None, typer.Option(help="Max messages per model call.")] = None,
    partitions: Annotated[str | None, typer.Option(
        "--partitions", metavar="N,N...", help="Consume only these partitions (default: all), e.g. --partitions 0,2."
    )] = None,
    tools: Annotated[list[str] | None, typer.Option(
        "--tools", metavar="NAME...", help="Serve these tools' calls instead of a role: --tools calculator clock."
    )] = None,
    concurrency: Annotated[int | None, typer.Option(
        min=1, max=1024, help="Code roles: handlers run at once (entries read together; default: the batch size)."
    )] = None,
    reserve: Annotated[str | None, typer.Option(
        "--reserve", metavar="interactive",
        help="Serve only interactive runs of tenants without a backlog (capacity a flood never holds)."
    )] = None,
    nice: Annotated[int | None, typer.Option(
        min=0, max=19,
        help="Lower the CPU priority by N while serving a backlog's batch (shared workers beside reserved "
             "ones: 19 measured best)."
    )] = None,
) -> None:
    """Run a worker for ROLE (or a tool worker with --tools NAME...) until SIGTERM."""
    if reserve is not None and reserve not in RESERVES:
        raise CliError(f"--reserve takes {', '.join(RESERVES)}, not {reserve!r}", 2)
    s = settings(batch_size=batch_size, workflow=workflow, worker_partitions=partitions, worker_reserve=reserve,
                 worker_nice=nice)
    s.worker_partition_list()  # a bad --partitions fails here, before the model loads
    wf = app_or_named(workflow or (None if app_ref else s.workflow), app_ref)
    if tools:  # the extra positional words are more tool names
        from .tools import tool_worker

        names = [*tools, *([role] if role else []), *ctx.args]
        raise typer.Exit(_check(s, "tools") if check else tool_worker(s, wf, names))
    roles = [r.role for r in wf.order()] if all_roles else [*([role] if role else []), *ctx.args]
    if all_roles and role:
        raise CliError("give ROLE... or --all-roles, not both", 2)
    if not roles:
        raise CliError("give a ROLE (e.g. baton worker planner), ROLE..., --all-roles, or --tools NAME...", 2)
    specs = [wf.role(r) for r in roles]  # an unknown role fails here, before the model loads
    if not check:
        _prepare_code_roles(s, wf, specs, published=bool(app_ref))
    runner = None if check else _runner(s, wf, specs, app_ref)
    if len(roles) > 1 or all_roles:
        raise typer.Exit(_multi(s, wf, roles, check, runner, concurrency))
    spec = specs[0]
    if check:
        raise typer.Exit(_check(s, spec.role))
    check_library(connect_checked(s)[0])  # LibraryMissing: one line, before the model loads
    setup_logging(s.log_format, s.log_level)
    from ..runtime.worker import Worker  # imported here: loads torch only for real workers

    w = Worker(s, wf, spec.role, runner=runner, concurrency=concurrency)
    context(role=spec.role, consumer=w.consumer)
    w.install_signal_handlers()
    raise typer.Exit(w.run())


def _prepare_code_roles(s: Settings, wf: Workflow, specs: list[RoleSpec], *, published: bool) -> None:
    """Resolve the served code roles' handlers (a bad one is a one-line error now, not at the first
    task) and, for an app, register its workflow so clients can submit to it by name (best effort:
    a worker starting before Redis rides the outage out in its loop)."""
    from ..workflow.handlers import resolve_handler

    for spec in specs:
        if spec.handler:
            resolve_handler(spec, search=wf.base_dir)
    if not published:
        return
    from ..workflow.registry import publish_workflow

    try:
        publish_workflow(connect(s.redis_url), Keys(s.prefix, s.partitions), wf)
    except BrokerError as exc:
        log.warning("could not register workflow %s in Redis yet: %s", wf.name, exc)


def _runner(s: Settings, wf: Workflow, specs: list[RoleSpec], app_ref: str | None) -> HandlerRunner | None:
    """The code roles' handler runner (None when every role served is a template role)."""
    if not any(spec.handler for spec in specs):
        return None
    from ..app.loader import load_app
    from ..app.runner import AppRunner

    retryable = load_app(app_ref).retryable if app_ref else ()
    return AppRunner.for_settings(s, retryable=retryable, search=wf.base_dir)


def _multi(s: Settings, wf: Workflow, roles: list[str], check: bool, runner: HandlerRunner | None = None,
           concurrency: int | None = None) -> int:
    """One process for several roles (``agents/runtime/multirole.py``), or the check of each role."""
    specs = [wf.role(r) for r in roles]  # an unknown role fails here, before the model loads
    if check:
        return max(_check(s, spec.role) for spec in specs)
    check_library(connect_checked(s)[0])
    setup_logging(s.log_format, s.log_level)
    from ..runtime.multirole import MultiRoleWorker  # imported here: loads torch only for real workers

    w = MultiRoleWorker(s, wf, [spec.role for spec in specs], runner=runner, concurrency=concurrency)
    context(role=",".join(w.roles), consumer=",".join(x.consumer for x in w.workers))
    w.install_signal_handlers()
    return w.run()


def _check(s: Settings, role: str) -> int:
    """Exit code 0 when a worker of ``role`` on this host has a fresh heartbeat (else a CliError)."""
    client, keys = connect_checked(s)
    host = socket.gethostname()
    consumer = check_worker(client, keys, role, host, s.heartbeat_ttl_s)
    if consumer is None:
        raise CliError(f"no live {role} worker on host {host} (no fresh heartbeat)")
    out.print(f"ok: {consumer}")
    return 0
