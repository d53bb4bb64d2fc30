"""Request bodies of the HTTP API: msgspec Structs, read with a size limit, documented in OpenAPI.

A route takes its body as a dependency, ``body: SubmitRequest = Depends(json_body(SubmitRequest))``,
and publishes the Struct's JSON schema with ``openapi_extra=openapi_body(SubmitRequest)``. A body
over ``MAX_BODY_BYTES`` is refused with 413 before it is read whole; one that is not JSON or breaks
a rule of the Struct gets 422 with msgspec's one-line reason (``... - at `$.task```).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from fastapi import HTTPException, Request
from msgspec import Meta

from ...protocol import Budget, BudgetLimit, Decision, ThreadPolicy
from ...protocol.fields import Id, Name, Priority
from .timeouts import read_capped

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DEADLINE_S",
    "MAX_METADATA_ITEMS",
    "MAX_REASON_CHARS",
    "MAX_TASK_CHARS",
    "DecisionRequest",
    "ForkRequest",
    "SubmitRequest",
    "json_body",
    "openapi_body",
]

MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted (64 KiB); larger ones get 413."""

MAX_TASK_CHARS = 50_000
"""Longest task text a submission may carry."""

MAX_DEADLINE_S = 30 * 86400.0
"""Longest deadline a submission may set, in seconds from now (30 days)."""

MAX_METADATA_ITEMS = 32
"""Most metadata entries one run may carry."""

MAX_METADATA_VALUE = 1024
"""Longest metadata value, in characters."""

MAX_REASON_CHARS = 2000
"""Longest reason a reviewer may give."""

T = TypeVar("T", bound=msgspec.Struct)

TaskText = Annotated[str, Meta(min_length=1, max_length=MAX_TASK_CHARS, pattern=r"\S",
                               description="The text the workflow's entry role receives (not blank).")]
DeadlineS = Annotated[float, Meta(gt=0, le=MAX_DEADLINE_S,
                                  description="Fail the run if it is not done within this many seconds.")]
MetadataValue = Annotated[str, Meta(max_length=MAX_METADATA_VALUE)]
Metadata = Annotated[dict[Name, MetadataValue], Meta(max_length=MAX_METADATA_ITEMS,
                                                     description="The caller's labels, kept on the run record.")]


class SubmitRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Start a run: ``task`` goes to the entry role of ``workflow`` (default: the served workflow).
    ``max_tokens``, ``max_model_calls`` and ``max_tool_calls`` are its budget (``baton.protocol.Budget``;
    unset ones come from the workflow's ``[budget]``). ``priority`` is its lane (``batch`` work
    waits behind ``interactive`` work). ``thread`` makes the run a turn of that conversation, under
    ``thread_policy`` while another turn runs."""

    task: TaskText
    workflow: Name | None = None
    deadline: DeadlineS | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    max_tokens: BudgetLimit | None = None
    max_model_calls: BudgetLimit | None = None
    max_tool_calls: BudgetLimit | None = None
    priority: Priority = "interactive"
    webhook: Annotated[str, Meta(min_length=1, max_length=2048, description=(
        "POST the run's end (terminal event and result, HMAC-signed) to this URL; it must be allowed by "
        "BATON_WEBHOOK_ALLOW (else 400)."))] | None = None
    thread: Annotated[Id, Meta(description="Make the run a turn of this thread (a conversation).")] | None = None
    thread_policy: Annotated[ThreadPolicy, Meta(description="While the thread runs a turn: reject, enqueue, "
                                                            "interrupt or rollback (default: the workflow's)")
                             ] | None = None

    def budget(self) -> Budget | None:
        """The budget the body asks for (``None``: the workflow's own, if any)."""
        given = Budget(max_tokens=self.max_tokens, max_model_calls=self.max_model_calls,
                       max_tool_calls=self.max_tool_calls)
        return given if given.limits() else None


class ForkRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fork a run: a new run continues from ``from_role``'s hop with its original input, or ``task``."""

    from_role: Name
    task: TaskText | None = None
    reuse_journal: Annotated[bool, Meta(description="Code roles get the source run's recorded model, tool and "
                                                    "step results back while their calls match.")] = False


OutputText = Annotated[str, Meta(max_length=MAX_TASK_CHARS,
                                 description="Hand off this text instead of the proposed output (approve only).")]
ReasonText = Annotated[str, Meta(max_length=MAX_REASON_CHARS, description="Why (a rejected run fails with it).")]


class DecisionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Decide a review: ``approve`` hands the output (or ``output``) on, ``reject`` fails the run."""

    decision: Decision
    output: OutputText | None = None
    reason: ReasonText = ""

    def __post_init__(self) -> None:
        if self.output is not None and self.decision != "approve":
            raise ValueError("`output` goes with `approve` only (a rejected output is not handed off)")


def json_body(kind: type[T], *, max_bytes: int = MAX_BODY_BYTES) -> Callable[[Request], Awaitable[T]]:
    """A FastAPI dependency that reads the request body (at most ``max_bytes``) as a ``kind``."""
    decoder = msgspec.json.Decoder(kind)

    async def read(request: Request) -> T:
        data = await read_capped(request, max_bytes, _too_large)
        if not data.strip():
            raise HTTPException(422, "the request body is empty (expected a JSON object)")
        try:
            return decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise HTTPException(422, str(exc)) from None
        except msgspec.DecodeError as exc:
            raise HTTPException(422, f"the request body is not valid JSON: {exc}") from None

    return read


def openapi_body(kind: type[msgspec.Struct]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is a ``kind`` (its msgspec JSON schema, inlined)."""
    (ref,), components = msgspec.json.schema_components([kind], ref_template="#/components/schemas/{name}")
    name = ref["$ref"].rsplit("/", 1)[-1]
    schema = components.pop(name)
    if components:
        raise TypeError(f"{kind.__name__} nests other Structs ({', '.join(components)}); inline them")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _too_large(max_bytes: int) -> HTTPException:
    return HTTPException(413, f"the request body is over {max_bytes} bytes")
