"""``memory_recall``: search the run's shared memory and scratchpads for a query's words.

Only the caller's own run is searched (its run id comes from the call, not the arguments), so
one run cannot read another's memory. Results are the best ``k`` matching entries, scored by
how many query words they contain.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...broker import agents_in_run, scratchpad
from ...broker.memory import read_shared
from .base import ToolContext, ToolError
from .kb_search import tokenize

__all__ = ["MemoryRecall"]

_MAX_CHARS = 300


class MemoryRecall:
    """Search this run's memory: ``{"query": "plan", "k": "3"}``."""

    name = "memory_recall"
    description = "search this run's shared memory and scratchpads; args: query, k (default 3)"

    def run(self, args: Mapping[str, str], ctx: ToolContext) -> str:
        """Return ``source: text`` lines, best first."""
        if ctx.client is None or not ctx.run_id:
            raise ToolError("memory_recall needs a run (no Redis client or run id in the call)")
        words = set(tokenize(args.get("query", "")))
        if not words:
            raise ToolError("missing or empty argument 'query'")
        k = int(args["k"]) if args.get("k", "").isdigit() else 3
        found: list[tuple[str, str]] = [
            (f"shared.{name}", value) for name, value in read_shared(ctx.client, ctx.keys, ctx.run_id).items()
        ]
        for agent in agents_in_run(ctx.client, ctx.keys, ctx.run_id):
            for entry in scratchpad(ctx.client, ctx.keys, ctx.run_id, agent):
                found += [(f"{agent}.task", entry.task), (f"{agent}.response", entry.response)]
        scored = [(len(words & set(tokenize(text))), i, src, text) for i, (src, text) in enumerate(found)]
        best = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))[:k]
        if not best:
            return "no match"
        return "\n".join(f"{src}: {' '.join(text.split())[:_MAX_CHARS]}" for _, _, src, text in best)
