"""Human review and time travel: ``baton review list|show|approve|reject``, ``baton fork``, ``baton replay``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated

import typer
from rich.table import Column, Table

from ...broker import Keys, Redis
from ...broker.fork import ForkError, ForkOptions, fork_run, replay_run
from ...broker.reviews import Decided, Review, ReviewError, decide, find_review, list_reviews
from ...protocol import Decision
from .common import CliError, app, connect_checked, out, settings

__all__ = ["fork", "replay", "review_approve", "review_list", "review_reject", "review_show"]

review_app = typer.Typer(help="Human review: runs parked with a role's output until a person decides.",
                         no_args_is_help=True)
app.add_typer(review_app, name="review")

Target = Annotated[str, typer.Argument(help="A review id, or the id of a run waiting for review.")]


def _one_line(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@review_app.command("list")
def review_list(
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List pending reviews, oldest first: review id, run, role, proposed output."""
    client, keys = connect_checked(settings())
    reviews = list_reviews(client, keys, limit=limit)
    if as_json:
        out.print_json(json.dumps([r.view() for r in reviews]))
        return
    if not reviews:
        out.print("no pending reviews")
        return
    table = Table(Column("review", no_wrap=True), Column("run", no_wrap=True), "role", "output")
    for r in reviews:
        table.add_row(r.review_id, r.run_id, r.role, _one_line(r.output))
    out.print(table)


def _find(target: str) -> Review:
    client, keys = connect_checked(settings())
    review = find_review(client, keys, target)
    if review is None:
        raise CliError(f"no review or run with a review named {target!r} (see baton review list)")
    return review


@review_app.command("show")
def review_show(target: Target) -> None:
    """Print one review in full as JSON: the role's input, the proposed output, the decision if any."""
    out.print_json(json.dumps(_find(target).view()))


def _decide(target: str, decision: Decision, output: str | None, reason: str) -> Decided:
    s = settings()
    client, keys = connect_checked(s)
    try:
        return decide(client, keys, target, decision, output, reason)
    except ReviewError as exc:
        raise CliError(str(exc)) from None


def _report(d: Decided) -> None:
    r = d.review
    if d.first:
        out.print(f"{r.review_id}: {r.status} (run {r.run_id})")
    else:
        out.print(f"{r.review_id}: already {r.status} (run {r.run_id}); nothing changed")


@review_app.command("approve")
def review_approve(
    target: Target,
    output: Annotated[str | None, typer.Option(help="Hand off this text instead of the proposed output.")] = None,
) -> None:
    """Approve a review: the role's output (or --output) goes on to the next role."""
    _report(_decide(target, "approve", output, ""))


@review_app.command("reject")
def review_reject(
    target: Target,
    reason: Annotated[str, typer.Option(help="Why: the run fails with this reason.")],
) -> None:
    """Reject a review: the run fails with the reason."""
    if not reason.strip():
        raise CliError("the reason is empty: say why, e.g. --reason 'off topic'", 2)
    _report(_decide(target, "reject", None, reason))


@app.command()
def fork(
    run_id: Annotated[str, typer.Argument(help="The run to fork.")],
    from_role: Annotated[str, typer.Option("--from", help="The role to continue from.")],
    task: Annotated[str | None, typer.Option(help="Give the role this input instead of its original one.")] = None,
    reuse_journal: Annotated[bool, typer.Option(
        "--reuse-journal", help="Code roles get the source run's recorded calls back while they match.")] = False,
) -> None:
    """Start a new run from RUN's history: scratchpads up to ROLE's hop, then ROLE with its input; print its id."""
    _new_run(lambda client, keys, hops: fork_run(client, keys, run_id, from_role, task,
                                                 options=ForkOptions(max_hops=hops, reuse_journal=reuse_journal)))


@app.command()
def replay(
    run_id: Annotated[str, typer.Argument(help="The run to replay.")],
    reuse_journal: Annotated[bool, typer.Option(
        "--reuse-journal", help="Code roles get the source run's recorded calls back while they match.")] = False,
) -> None:
    """Re-run RUN from the start with the same workflow and task; print the new run's id."""
    _new_run(lambda client, keys, hops: replay_run(client, keys, run_id,
                                                   options=ForkOptions(max_hops=hops, reuse_journal=reuse_journal)))


def _new_run(start: Callable[[Redis, Keys, int], str]) -> None:
    """Print the id of the run ``start`` makes (with this process's ``BATON_MAX_HOPS``); a ``ForkError``
    is the command's one-line error."""
    s = settings()
    client, keys = connect_checked(s)
    try:
        out.print(start(client, keys, s.max_hops))
    except ForkError as exc:
        raise CliError(str(exc)) from None
