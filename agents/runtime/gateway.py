"""The seam between a code role's ``Context`` (``agents/app``) and the worker that runs it.

A handler's model and tool calls go through the worker's ``Gateway``: the role's backend behind
the shared rate limiter, the run's budget, the circuit breaker and outage riding, token events
and spans; concurrent calls may be coalesced into one backend call. ``agents/app`` imports this
Protocol; the runtime never imports ``agents/app`` (it gets handlers as callables from the
``RoleSpec``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ...protocol.chat import ChatRequest, ChatResult
    from ..backends import Generation
    from ..tools.runner import ToolOutcome
    from .work import WorkItem

__all__ = ["Gateway"]


class Gateway(Protocol):
    """What a code role's context may ask of its worker, for the work item ``item`` it runs."""

    async def generate(self, item: WorkItem, prompt: str, *, max_new_tokens: int,
                       stop: Sequence[str] | None = None) -> Generation:
        """Generate a continuation of ``prompt`` with the role's model (``Generation.text``: prompt + continuation)."""
        ...

    async def chat(self, item: WorkItem, request: ChatRequest) -> ChatResult:
        """One chat model call with the role's model (no tool loop: the context runs that)."""
        ...

    async def tool(self, item: WorkItem, name: str, args: Mapping[str, Any]) -> ToolOutcome:
        """Run tool ``name`` (the role's allow-list holds; never raises: errors are in the outcome)."""
        ...
