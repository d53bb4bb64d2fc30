"""``baton monitor`` (a live view of the streams) and ``baton trace`` (one run, hop by hop)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ...broker import latest_run
from ...protocol import RunStatus
from ..ops.monitor import Monitor, Snapshot
from ..ops.trace import RunNotFound, RunTrace, build_trace
from ..workflow.loader import named
from .common import CliError, app, connect_checked, out, settings

__all__ = ["monitor", "render_snapshot", "render_trace", "trace"]


def _clock(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3]


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _idle(ms: int) -> str:
    return f"{ms / 1000:.1f}s" if ms < 120_000 else f"{ms / 60_000:.1f}m"


def render_snapshot(snap: Snapshot) -> Group:
    """The monitor screen for one snapshot."""
    roles = Table("workflow", "role", "length", "lag", "pending", "msgs/s", "acked", "consumers", title="streams",
                  title_justify="left")
    consumers = Table("workflow", "role", "consumer", "pending", "idle", "heartbeat", title="consumers",
                      title_justify="left")
    for fig in snap.roles:
        live = sum(c.alive for c in fig.consumers)
        lag = f"{fig.lag}" if fig.lag_exact else f">={fig.lag}"
        rate = "-" if fig.throughput is None else f"{fig.throughput:.2f}"
        roles.add_row(fig.workflow, fig.role, str(fig.length), lag, str(fig.pending), rate,
                      "-" if fig.acked is None else str(fig.acked), f"{live} live / {len(fig.consumers)}")
        for c in fig.consumers:
            consumers.add_row(fig.workflow, fig.role, c.name, str(c.pending), _idle(c.idle_ms),
                              Text("live", "green") if c.alive else Text("none", "red"))
    runs = ", ".join(f"{k} {v}" for k, v in sorted(snap.runs.items())) or "none"
    by_role = ", ".join(f"{k} {v}" for k, v in sorted(snap.dead_by_role.items()))
    summary = Text.assemble(
        ("runs in flight ", "bold"), str(snap.runs_in_flight), ("   done ", "bold"), str(snap.runs_done),
        f"   ({runs})\n", ("dead letters ", "bold"), (str(snap.dead_letters), "red" if snap.dead_letters else ""),
        f" ({by_role})" if by_role else "", "\n",
        (f"redis {snap.redis_version}  ·  {len(snap.workers)} workers  ·  {_clock(snap.at)} UTC", "dim"),
    )
    parts: list[Table | Text] = [roles, consumers, summary]
    for down in snap.model_down:
        since = _clock(down["since"]) if down["since"] else "?"
        parts.append(Text.assemble((f"model down since {since}", "bold red"),
                                   f" ({down['role']} worker {down['consumer']})"))
    if snap.outage_s:
        parts.append(Text(f"time spent waiting on model outages: {snap.outage_s:.0f} s", "yellow"))
    if snap.rate_limits:
        parts.append(_rate_limits(snap))
    if snap.recent_dead:
        dead = Table("entry", "role", "run", "attempts", "reason", title="recent dead letters", title_justify="left")
        for d in snap.recent_dead[:5]:
            dead.add_row(d.entry_id, d.role, d.run_id[:12], str(d.attempts), d.reason[:80])
        parts.append(dead)
    return Group(*parts)


def _rate_limits(snap: Snapshot) -> Table:
    table = Table("model", "requests/min", "tokens/min", title="rate limits (last minute, all workers)",
                  title_justify="left")
    for m in snap.rate_limits:
        table.add_row(m.model, _against(m.requests, m.rpm), _against(m.tokens, m.tpm))
    return table


def _against(used: float, limit: int) -> Text:
    if not limit:
        return Text(f"{used:.0f} / unlimited", "dim")
    share = used / limit
    return Text(f"{used:.0f} / {limit} ({share:.0%})", "red" if share >= 0.95 else "yellow" if share >= 0.8 else "")


@app.command()
def monitor(
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one object per refresh without --once).")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.1)] = 1.0,
    workflow: Annotated[str | None, typer.Option(help="Workflow TOML file (its roles are always shown).")] = None,
) -> None:
    """Watch every role of every workflow: stream length, lag, pending, consumers, msgs/s, dead letters, runs.

    Throughput needs two samples: --once samples twice, INTERVAL apart.
    """
    s = settings()
    client, keys = connect_checked(s)
    wf = named(workflow or s.workflow or None)
    mon = Monitor(client, keys, [(wf.name, r.role) for r in wf.roles])
    if once:
        mon.sample()
        time.sleep(interval)
        snap = mon.sample()
        if as_json:
            print(json.dumps(snap.to_builtins()))
        else:
            out.print(render_snapshot(snap))
        return
    try:
        if as_json:
            while True:
                print(json.dumps(mon.sample().to_builtins()), flush=True)
                time.sleep(interval)
        with Live(render_snapshot(mon.sample()), console=out, screen=False, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(render_snapshot(mon.sample()), refresh=True)
    except KeyboardInterrupt:
        return


def render_trace(tr: RunTrace) -> Group:
    """The text view of a run's flow."""
    head = Text.assemble(
        ("run ", "bold"), tr.run_id, "  ", (tr.status, "green" if tr.status == RunStatus.DONE else "yellow"),
        f"  ·  {tr.workflow or '-'}  ·  {len(tr.hops)} hops  ·  {tr.tokens} tokens  ·  {_secs(tr.duration_s)}\n",
        ("task ", "bold"), tr.task[:200], "\n",
        ("flow ", "bold"), _flow(tr),
    )
    lines: list[Text] = [head]
    for h in tr.hops:
        lines.append(Text.assemble(
            (f"\nhop {h.hop}  ", "bold"), f"{h.sender} → ", (f"{h.agent} ({h.role})", "cyan"),
            f" → {', '.join(h.receivers) or '-'}\n",
            f"       started {_clock(h.started)}  waited {_secs(h.wait_s)}  took {_secs(h.step_s)}  ",
            f"{h.tokens} tokens{' (cut at the limit)' if h.truncated else ''}\n",
            (f"       consumer {h.consumer}  msg {h.msg_id}  entry {h.entry_id}\n", "dim"),
            f"       task: {_preview(h.task)}",
        ))
    for w in tr.waiting:
        lines.append(Text.assemble(
            ("\nwaiting  ", "bold yellow"), f"{w.sender} → [{w.role}] since {_clock(w.created_at)}  msg {w.msg_id}\n",
            f"       task: {_preview(w.task)}",
        ))
    parts = lines
    if tr.error:
        parts.append(Text(f"error: {tr.error}", "red"))
    for d in tr.dead_letters:
        parts.append(Text(f"dead letter {d['entry_id']} ({d['role']}): {d['reason']}", "red"))
    return Group(*parts)


def _preview(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _flow(tr: RunTrace) -> str:
    steps = ["submit"] + [f"{h.agent} ({h.role})" for h in tr.hops] + [f"[{w.role}]" for w in tr.waiting]
    if any("result" in h.receivers for h in tr.hops):
        steps.append("result")
    return " → ".join(steps)


@app.command()
def trace(
    run_id: Annotated[str | None, typer.Argument(help="The run id (default: the newest run).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trace as JSON.")] = False,
) -> None:
    """Show a run's message flow hop by hop: who passed what to whom, when, how long, tokens."""
    client, keys = connect_checked(settings())
    run_id = run_id or latest_run(client, keys)
    if not run_id:
        raise CliError("there are no runs yet; submit one with baton submit")
    try:
        tr = build_trace(client, keys, run_id)
    except RunNotFound as exc:
        raise CliError(str(exc)) from None
    if as_json:
        print(json.dumps(tr.to_builtins()))
    else:
        out.print(render_trace(tr))
