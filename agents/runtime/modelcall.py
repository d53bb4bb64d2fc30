"""One batched model call for the prompts of one or more roles: rate limits, span, token events.

``call_model`` is the only place a worker calls ``backend.generate``: each role whose prompts are
in the call reserves its own requests and tokens from its model's shared limit (and settles
with what it used), the call is traced (one model-call span per hop), and with token streaming
on, each role's prompts stream into its own ``TokenStream``. The generate stage calls it for
one role's batch; the cross-role driver for the prompts of several roles sharing a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backends import Generation, ModelBackend
from .ratelimits import Reservation
from .role import RoleRuntime
from .tokens import TokenStream
from .tracing import traced_model_call
from .work import WorkItem

__all__ = ["call_model"]

Member = tuple[RoleRuntime, WorkItem]


def call_model(backend: ModelBackend, members: Sequence[Member], max_new: int, *, stream_tokens: bool,
               roles: Sequence[RoleRuntime] | None = None, prompts: Sequence[str] | None = None,
               stop: Sequence[str] | None = None) -> list[Generation]:
    """ONE ``backend.generate`` for the prompts of ``members`` (``prompts`` when given, else each
    item's ``prompt``); ``roles`` orders the roles involved (the first appearance in ``members``
    when not given); ``stop`` ends each continuation at the first of these strings."""
    runtimes = list(dict.fromkeys(rt for rt, _ in members))
    if roles is not None:
        runtimes = [rt for rt in roles if rt in runtimes]
    held: list[tuple[RoleRuntime, Reservation]] = []
    used = dict.fromkeys(runtimes, 0)
    try:
        for rt in runtimes:
            held.append((rt, rt.limiter.acquire(sum(r is rt for r, _ in members), max_new)))
        gens = traced_model_call([item.span for _, item in members],
                                 lambda: _generate(backend, members, max_new, stream_tokens, len(runtimes) > 1,
                                                          prompts, stop),
                                 model=backend.name, role=",".join(rt.spec.role for rt in runtimes))
        for (rt, _), g in zip(members, gens, strict=True):
            used[rt] += g.new_tokens
    finally:
        for rt, reservation in held:
            rt.limiter.settle(reservation, used[rt])
    return gens


def _generate(backend: ModelBackend, members: Sequence[Member], max_new: int, stream_tokens: bool,
              cross_role: bool, given: Sequence[str] | None = None,
              stop: Sequence[str] | None = None) -> list[Generation]:
    prompts = list(given) if given is not None else [item.prompt for _, item in members]
    more: dict[str, Any] = {"stop": stop} if stop else {}  # only code roles' calls set stop sequences
    if not stream_tokens:
        return list(backend.generate(prompts, max_new_tokens=max_new, **more))
    if not cross_role:  # the stream itself: the backend flushes it after each round of chunks
        rt = members[0][0]
        stream = TokenStream(rt.events, [item.task for _, item in members], rt.spec.role, rt.spec.agent)
        try:
            return list(backend.generate(prompts, max_new_tokens=max_new, on_tokens=stream, **more))
        finally:
            stream.close()
    streams: dict[RoleRuntime, TokenStream] = {}
    route: list[tuple[TokenStream, int]] = []
    for rt, item in members:
        if rt not in streams:
            streams[rt] = TokenStream(rt.events, [], rt.spec.role, rt.spec.agent)
        streams[rt].tasks.append(item.task)
        streams[rt].sent.append(0)
        route.append((streams[rt], len(streams[rt].tasks) - 1))

    def on_tokens(index: int, text: str) -> None:
        stream, local = route[index]
        stream(local, text)

    try:
        return list(backend.generate(prompts, max_new_tokens=max_new, on_tokens=on_tokens, **more))
    finally:
        for stream in streams.values():
            stream.close()
