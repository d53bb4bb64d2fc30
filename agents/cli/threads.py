"""Threads (conversations of runs): ``baton threads list|show|delete``; runs join one with
``baton submit --thread ID [--policy P]``."""

from __future__ import annotations

import json
import time
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from ...broker.cancel import delete_thread
from ...broker.threads import ThreadInfo, get_thread, list_threads
from .common import CliError, app, connect_checked, out, settings

__all__ = ["threads_delete", "threads_list", "threads_show"]

threads_app = typer.Typer(help="Threads: conversations of runs, one turn at a time.", no_args_is_help=True)
app.add_typer(threads_app, name="threads")

ThreadArg = Annotated[str, typer.Argument(help="The thread's id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _ago(at: float) -> str:
    return f"{max(0.0, time.time() - at):.0f}s ago" if at else ""


def _found(thread_id: str) -> ThreadInfo:
    client, keys = connect_checked(settings())
    if (info := get_thread(client, keys, thread_id)) is None:
        raise CliError(f"no thread {thread_id!r} (it never existed or it expired)")
    return info


@threads_app.command("list")
def threads_list(limit: Annotated[int, typer.Option(help="Most threads to list.")] = 50,
                 as_json: JsonOption = False) -> None:
    """List the most recently active threads, newest first."""
    client, keys = connect_checked(settings())
    found = list_threads(client, keys, limit)
    if as_json:
        out.print_json(json.dumps(msgspec.to_builtins(found)))
        return
    table = Table("thread", "turns", "running", "waiting", "last active", "expires in")
    for t in found:
        table.add_row(t.thread_id, str(len(t.turns)), t.active or "-", str(len(t.queued)), _ago(t.updated_at),
                      "never" if t.expires_in_s is None else f"{t.expires_in_s}s")
    out.print(table)


@threads_app.command("show")
def threads_show(thread_id: ThreadArg, as_json: JsonOption = False) -> None:
    """Show a thread: its finished turns (task and result), the running turn and the waiting runs."""
    info = _found(thread_id)
    if as_json:
        out.print_json(json.dumps(msgspec.to_builtins(info)))
        return
    out.print(f"thread {info.thread_id}: {len(info.turns)} turns, running {info.active or 'nothing'}, "
              f"{len(info.queued)} waiting")
    table = Table("#", "run", "status", "task", "result")
    for i, t in enumerate(info.turns, 1):
        table.add_row(str(i), t.run_id, t.status, t.task, t.result or t.error)
    out.print(table)
    for run_id in info.queued:
        out.print(f"waiting: {run_id}")


@threads_app.command("delete")
def threads_delete(thread_id: ThreadArg) -> None:
    """Delete a thread's state; its running and waiting turns are cancelled (their records stay)."""
    client, keys = connect_checked(settings())
    if delete_thread(client, keys, thread_id) is None:
        raise CliError(f"no thread {thread_id!r}")
    out.print(f"thread {thread_id} deleted")
