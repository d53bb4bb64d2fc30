"""``baton runs``: recent runs with their status, hops, tokens, duration and cost."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from baton.client import Client, RunInfo

from ...protocol import TERMINAL_STATUSES, RunStatus
from .common import CliError, app, connect_checked, out, settings

__all__ = ["run_row", "runs"]


_MIN_WIDTH = 200
"""Columns the table may use even in a narrow terminal or a pipe (rows are not wrapped)."""


def _duration(info: RunInfo, now: float) -> float:
    end = info.updated_at if info.status in TERMINAL_STATUSES else now
    return max(0.0, end - info.created_at) if info.created_at else 0.0


def run_row(info: RunInfo, prices: dict[str, float], now: float) -> dict[str, Any]:
    """One run as ``baton runs --json`` prints it."""
    u = info.usage
    return {
        "run_id": info.run_id, "status": info.status, "workflow": info.workflow, "task": info.task,
        "hops": info.hops, "tokens": u.tokens, "model_calls": u.model_calls, "tool_calls": u.tool_calls,
        "tokens_by_role": u.tokens_by_role, "model_calls_by_role": u.model_calls_by_role,
        "tool_calls_by_role": u.tool_calls_by_role, "tokens_by_model": u.tokens_by_model,
        "budget": u.budget.limits() if u.budget else {}, "duration_s": round(_duration(info, now), 3),
        "cost": u.cost(prices), "created_at": info.created_at, "error": info.error,
    }


def _budgeted(used: int, limit: int | None) -> str:
    return f"{used:,}" if limit is None else f"{used:,}/{limit:,}"


@app.command()
def runs(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many runs to list (newest first).")] = 20,
    status: Annotated[str | None, typer.Option(help="Only runs with this status (queued, running, done...).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recent runs: status, hops, tokens, model calls (CALLS) and tool calls (TOOLS), as
    ``used/limit`` under a budget, duration, and cost when BATON_MODEL_PRICES gives a price per
    1,000 tokens for the model."""
    if status is not None and status not in set(RunStatus):
        raise CliError(f"unknown status {status!r} (use {', '.join(RunStatus)})", 2)
    s = settings()
    prices = s.model_price_map()
    connect_checked(s)[0].close()
    with Client(settings=s) as client:
        infos = client.runs(status=status, limit=limit)
    now = time.time()
    rows = [run_row(i, prices, now) for i in infos]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("RUN", "STATUS", "WORKFLOW", "HOPS", "TOKENS", "CALLS", "TOOLS", "DURATION", "COST",
                  "ERROR", box=None, pad_edge=False)
    for info, row in zip(infos, rows, strict=True):
        b = info.usage.budget
        table.add_row(info.run_id, info.status, info.workflow, str(info.hops),
                      _budgeted(row["tokens"], b and b.max_tokens),
                      _budgeted(row["model_calls"], b and b.max_model_calls),
                      _budgeted(row["tool_calls"], b and b.max_tool_calls), f"{row['duration_s']:.1f}s",
                      "-" if row["cost"] is None else f"${row['cost']:.6f}", info.error)
    wide = out if out.width >= _MIN_WIDTH else Console(highlight=False, soft_wrap=True, width=_MIN_WIDTH)
    wide.print(table if rows else "no runs")
