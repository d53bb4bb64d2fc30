"""The ``/v1`` routes that step into runs: human review (list, show, decide) and fork and replay.

``create_app`` (``agents/ops/dashboard.py``) mounts :func:`review_router` beside the runs router.
Reviews come from ``broker/reviews.py`` (a parked run waits for ``POST /v1/reviews/{id}``);
fork and replay from ``broker/fork.py``. A review is named by its id or by its run's id (the
run's latest review), as ``baton review`` names it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from ...broker.fork import ForkError, ForkOptions, fork_run, replay_run
from ...broker.reviews import Decided, Review, ReviewError, decide, find_review, list_reviews
from ...broker.runs import run_record, run_records
from .api import ApiContext, record_or_404, v1_router
from .bodies import DecisionRequest, ForkRequest, json_body, openapi_body
from .tenancy import owns

__all__ = ["decided_view", "review_router", "review_view"]

log = logging.getLogger("baton.api")

PENDING_FIELDS = ("review_id", "run_id", "workflow", "role", "agent", "hop", "task", "output", "requested_at",
                  "deadline")
"""What ``GET /v1/reviews`` shows of each pending review."""

BAD_BODY: dict[int | str, dict[str, Any]] = {
    413: {"description": "Body too large"}, 422: {"description": "The body breaks a rule (the reason says which)"}}


def review_view(review: Review, names: tuple[str, ...] = PENDING_FIELDS) -> dict[str, Any]:
    """A review as the API shows it: the fields in ``names``."""
    return {name: getattr(review, name) for name in names}


def decided_view(d: Decided) -> dict[str, Any]:
    """What deciding a review answers: the decision in force and whether this request made it."""
    r = d.review
    return {"review_id": r.review_id, "run_id": r.run_id, "decision": r.decision, "status": r.status,
            "output": r.decided_output if r.decision == "approve" else "", "reason": r.reason,
            "decided_at": r.decided_at, "first": d.first}


def review_router(ctx: ApiContext) -> APIRouter:
    """``/v1/reviews`` (pending reviews, one review, decide) and ``/v1/runs/{id}/fork`` and ``/replay``."""
    router = v1_router(ctx)

    @router.get("/reviews", tags=["reviews"], summary="Pending reviews, oldest request first")
    def list_route(limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        return {"reviews": [review_view(r) for r in _waiting(ctx, list_reviews(ctx.client, ctx.keys, limit=limit))]}

    @router.get("/reviews/{review_id}", tags=["reviews"], summary="One review (by its id or its run's id)")
    def show_route(review_id: str) -> dict[str, Any]:
        review = _review_or_404(ctx, review_id)
        return {**review.view(), "pending": review.pending}

    @router.post("/reviews/{review_id}", tags=["reviews"], summary="Approve (maybe edited) or reject a review",
                 openapi_extra=openapi_body(DecisionRequest),
                 responses={**BAD_BODY, 404: {"description": "No such review"},
                            409: {"description": "The run ended before the decision (e.g. cancelled)"}})
    def decide_route(review_id: str,
                     body: Annotated[DecisionRequest, Depends(json_body(DecisionRequest))]) -> dict[str, Any]:
        review = _review_or_404(ctx, review_id)
        try:
            done = decide(ctx.client, ctx.keys, review.review_id, body.decision, body.output, body.reason)
        except ReviewError as exc:
            raise HTTPException(409, str(exc)) from None
        if done.first:
            log.info("review %s of run %s %s over the API", review.review_id, review.run_id, done.review.status)
        return decided_view(done)

    @router.post("/runs/{run_id}/fork", status_code=201, tags=["runs"], summary="Fork a run from one of its roles",
                 openapi_extra=openapi_body(ForkRequest),
                 responses={**BAD_BODY, 404: {"description": "No such run"},
                            409: {"description": "The run cannot be forked there (the reason says why)"}})
    def fork_route(run_id: str, body: Annotated[ForkRequest, Depends(json_body(ForkRequest))]) -> dict[str, str]:
        record_or_404(ctx, run_id)
        s = ctx.settings
        try:
            new = fork_run(ctx.client, ctx.keys, run_id, body.from_role, body.task,
                           options=ForkOptions(max_hops=s.max_hops, reuse_journal=body.reuse_journal))
        except ForkError as exc:
            raise HTTPException(409, str(exc)) from None
        log.info("run %s forked from %s at %s over the API", new, run_id, body.from_role)
        return {"run_id": new}

    @router.post("/runs/{run_id}/replay", status_code=201, tags=["runs"],
                 summary="Re-run a run from the start with the same inputs",
                 responses={404: {"description": "No such run"},
                            409: {"description": "The run cannot be replayed (the reason says why)"}})
    def replay_route(run_id: str, reuse_journal: Annotated[bool, Query(
            description="Code roles get the source run's recorded calls back while their calls match.")] = False,
    ) -> dict[str, str]:
        record_or_404(ctx, run_id)
        s = ctx.settings
        try:
            new = replay_run(ctx.client, ctx.keys, run_id,
                             options=ForkOptions(max_hops=s.max_hops, reuse_journal=reuse_journal))
        except ForkError as exc:
            raise HTTPException(409, str(exc)) from None
        log.info("run %s replays %s over the API", new, run_id)
        return {"run_id": new}

    return router


def _waiting(ctx: ApiContext, reviews: list[Review]) -> list[Review]:
    """The reviews whose run still waits: a run cancelled or expired while parked leaves its review in the
    index until the janitor sweeps it, and it can no longer be decided. Only the caller's tenant's."""
    records = run_records(ctx.client, ctx.keys, [r.run_id for r in reviews])
    return [r for r, rec in zip(reviews, records, strict=True)
            if rec is not None and not rec.ended and owns(rec.tenant)]


def _review_or_404(ctx: ApiContext, review_id: str) -> Review:
    review = find_review(ctx.client, ctx.keys, review_id)
    rec = run_record(ctx.client, ctx.keys, review.run_id) if review is not None else None
    if review is None or not owns(rec.tenant if rec is not None else ""):
        raise HTTPException(404, f"no review {review_id!r} (nor a run with a review of that id)")
    return review


