"""``baton events RUN``: a run's events, one line each (token chunks appended as they come)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import msgspec
import typer
from rich.markup import escape

from ...broker import Keys, Redis, iter_events, read_events, run_record
from ...protocol import (
    Cancelled,
    Custom,
    Done,
    Event,
    Failed,
    HopFinished,
    HopStarted,
    Queued,
    ReviewDecided,
    ReviewRequested,
    Tokens,
    ToolCalled,
    ToolReturned,
    Waiting,
    Woken,
)
from .common import CliError, app, connect_checked, out, settings, visible

__all__ = ["EventPrinter", "events_cmd", "follow_events"]

_PREVIEW = 120


def _short(text: str, limit: int = _PREVIEW) -> str:
    flat = " ".join(visible(text).split())
    return escape(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


class EventPrinter:
    """Prints events as rich lines, or as JSON lines (``as_json``: ``{"id", "event"}`` per line)."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        self._streaming: str | None = None  # the msg_id whose token chunks the open line shows

    def __call__(self, entry_id: str, event: Event) -> None:
        if self.as_json:
            out.print(json.dumps({"id": entry_id, "event": msgspec.to_builtins(event)}), markup=False)
            return
        if isinstance(event, Tokens):
            if self._streaming != event.msg_id:
                self._end_line()
                out.print(f"{_clock(event.at)} [cyan]tokens[/]       {event.role} ", end="")
                self._streaming = event.msg_id
            out.print(visible(event.text), end="", markup=False)
            return
        self._end_line()
        out.print(f"{_clock(event.at)} {self._describe(event)}")

    def close(self) -> None:
        """End a line of token chunks left open."""
        self._end_line()

    def _end_line(self) -> None:
        if self._streaming is not None:
            out.print()
            self._streaming = None

    @staticmethod
    def _describe(event: Event) -> str:  # noqa: PLR0911 - one line per event type
        who = f"{event.role} ({event.agent})" if event.agent else event.role
        match event:
            case Queued():
                return f"[bold]queued[/]       {event.workflow} → {event.role}: {_short(event.task)}"
            case HopStarted():
                return f"[blue]hop_started[/]  hop {event.hop} {who} on {escape(event.consumer)}"
            case HopFinished():
                took = max(0.0, event.finished - event.started)
                return f"[blue]hop_finished[/] hop {event.hop} {who}: {event.tokens} tokens in {took:.2f}s"
            case ToolCalled():
                return f"[magenta]tool_call[/]    {event.tool} {_short(json.dumps(event.args))}"
            case ToolReturned():
                what = f"[red]error[/] {_short(event.error)}" if event.error else _short(event.output)
                return f"[magenta]tool_result[/]  {event.tool}: {what}"
            case ReviewRequested():
                return f"[yellow]review_requested[/] {event.review_id} {who}: {_short(event.output)}"
            case ReviewDecided():
                return f"[yellow]review_decided[/] {event.review_id}: {event.decision} {_short(event.reason)}"
            case Waiting():
                until = f" until {event.until:.0f}" if event.until is not None else ""
                return f"[yellow]waiting[/]      {who}: {event.kind} {escape(event.name)}{until}".rstrip()
            case Woken():
                return f"[yellow]woken[/]        {who}: {event.kind} {escape(event.name)} ({event.why})"
            case Custom():
                return f"[cyan]custom[/]       {who}: {_short(json.dumps(event.data))}"
            case Done():
                return f"[green bold]done[/]         {_short(event.output)}"
            case Failed():
                return f"[red bold]failed[/]       {who}: {_short(event.reason)}"
            case Cancelled():
                return f"[yellow bold]cancelled[/]    {_short(event.reason)}"
        return escape(type(event).__name__)


def follow_events(client: Redis, keys: Keys, run_id: str, *, follow: bool, as_json: bool = False,
                  after: str | None = None) -> Event | None:
    """Print the events of ``run_id`` (live with ``follow``, until its terminal event); return the last."""
    printer = EventPrinter(as_json=as_json)
    last: Event | None = None
    try:
        for entry_id, event in iter_events(client, keys, run_id, after=after, follow=follow, block_ms=500):
            printer(entry_id, event)
            last = event
    finally:
        printer.close()
    return last


@app.command("events")
def events_cmd(
    run_id: Annotated[str, typer.Argument(help="The run whose events to print.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line: {id, event}.")] = False,
    after: Annotated[str | None, typer.Option(help="Start after this event id.")] = None,
) -> None:
    """Print a run's events: queued, hops, tokens, tool calls, reviews and how it ended."""
    s = settings()
    client, keys = connect_checked(s)
    if run_record(client, keys, run_id) is None and not read_events(client, keys, run_id, count=1):
        raise CliError(f"no run {run_id!r} (check the id, BATON_PREFIX and REDIS_URL)")
    follow_events(client, keys, run_id, follow=follow, as_json=as_json, after=after)
