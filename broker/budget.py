"""Per-run budgets and accounting on the run record (``lua/budget.lua``).

A run submitted with a :class:`~baton.protocol.Budget` carries its limits as record fields
(``max_tokens``, ``max_model_calls``, ``max_tool_calls``). Before each model call a worker
reserves one call and ``max_new_tokens`` tokens per prompt (:func:`reserve_model_calls`); after
it, :func:`settle_model_calls` gives the unused reservation back and adds what was used to the
record: ``tokens``, ``model_calls``, ``tokens:<role>``, ``model_calls:<role>`` and
``tokens@<model>``. Each tool call counts one (:func:`count_tool_call`: ``tool_calls``,
``tool_calls:<role>``). A request that would pass a limit is refused with a one-line reason
(``budget exceeded: 1,240 of 1,200 tokens``), kept in the record's ``budget_exceeded`` field.

Accounting is at least once, like delivery: a hop redelivered after its model call settled
(a worker crash before the commit) is counted again. A redelivered message's unsettled
reservation is replaced, not added to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import redis

from ..protocol import Budget
from .keys import Keys
from .scripts import LuaScript, is_missing, library
from .text import as_text

__all__ = ["RESERVE_FIELDS", "ModelCall", "Usage", "budget_fields", "count_tool_call", "needs_reservation",
           "reserve_model_calls", "settle_model_calls", "usage", "usage_counts"]

_script = LuaScript("budget.lua")


RESERVE_FIELDS = ("max_tokens", "max_model_calls", "budget_exceeded")
"""The run record fields that decide whether a model call must be reserved (``needs_reservation``)."""


def needs_reservation(values: Sequence[bytes | str | None]) -> bool:
    """Whether a run whose record has ``values`` for ``RESERVE_FIELDS`` must reserve its model
    calls: it has a token or model-call limit, or was already refused. A run without (and a run
    whose record is gone, which the reservation would allow anyway) calls the model at once and
    has its usage counted with its commit (``usage_counts``)."""
    return any(v not in (None, b"", "", b"0", "0") for v in values)


def usage_counts(role: str, model: str, tokens: int) -> dict[str, int]:
    """The run record increments of one model call of ``role`` that generated ``tokens`` tokens of
    ``model``: what ``settle_model_calls`` adds for a reserved call, for a commit to add instead."""
    return {"tokens": tokens, f"tokens:{role}": tokens, f"tokens@{model}": tokens, "model_calls": 1,
            f"model_calls:{role}": 1}


def budget_fields(budget: Budget | None) -> dict[str, int]:
    """The run record fields of ``budget``'s limits (empty for no budget)."""
    return budget.limits() if budget is not None else {}


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One prompt's share of a model call: its run, message, role and model, and its tokens."""

    run_id: str
    msg_id: str
    role: str
    model: str
    tokens: int
    called: bool = True


def reserve_model_calls(client: redis.Redis, keys: Keys, calls: Sequence[ModelCall]) -> list[str]:
    """Reserve one model call and ``tokens`` tokens for each of ``calls`` (one round trip); return
    for each ``''`` (reserved) or the reason it is refused."""
    return _many(client, [(keys.run(c.run_id), ["model", c.msg_id, c.tokens]) for c in calls])


def settle_model_calls(client: redis.Redis, keys: Keys, calls: Sequence[ModelCall]) -> None:
    """End the reservations of ``calls``: those ``called`` add ``tokens`` (the real count) to the
    run's accounting, the others give their reservation back."""
    _many(client, [(keys.run(c.run_id), ["settle", c.msg_id, c.tokens, c.role, c.model, "1" if c.called else "0"])
                   for c in calls])


def count_tool_call(client: redis.Redis, keys: Keys, run_id: str, role: str) -> str:
    """Count one tool call of ``role`` in ``run_id``; ``''`` or the reason it is refused."""
    return as_text(_script(client, [keys.run(run_id)], ["tool", role]))


def _many(client: redis.Redis, calls: Sequence[tuple[str, Sequence[str | int]]]) -> list[str]:
    """The script once per ``(record key, args)``, pipelined (one round trip once it is loaded)."""
    if len(calls) <= 1:
        return [as_text(_script(client, [key], args)) for key, args in calls]
    _script.ensure_loaded(client)
    pipe = client.pipeline(transaction=False)
    for key, args in calls:
        _script.queue(pipe, client, [key], args)
    replies = pipe.execute(raise_on_error=False)
    if any(is_missing(r) for r in replies):  # the server lost the library in between: one call at a time reloads it
        library().forget(client)
        replies = [_script(client, [key], args) for key, args in calls]
    for r in replies:
        if isinstance(r, Exception):
            raise r
    return [as_text(r) for r in replies]


@dataclass(frozen=True, slots=True)
class Usage:
    """What a run used and may use, from its record."""

    tokens: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    tokens_by_role: dict[str, int] = field(default_factory=dict)
    model_calls_by_role: dict[str, int] = field(default_factory=dict)
    tool_calls_by_role: dict[str, int] = field(default_factory=dict)
    tokens_by_model: dict[str, int] = field(default_factory=dict)
    budget: Budget | None = None
    exceeded: str = ""

    def as_dict(self) -> dict[str, object]:
        """A JSON-able dict (the budget as its limits, ``{}`` for none)."""
        return {"tokens": self.tokens, "model_calls": self.model_calls, "tool_calls": self.tool_calls,
                "tokens_by_role": self.tokens_by_role, "model_calls_by_role": self.model_calls_by_role,
                "tool_calls_by_role": self.tool_calls_by_role, "tokens_by_model": self.tokens_by_model,
                "budget": self.budget.limits() if self.budget else {}, "exceeded": self.exceeded}

    def cost(self, prices: Mapping[str, float]) -> float | None:
        """The cost of the tokens at ``prices`` (per 1,000 tokens, by model); None when no model
        the run used has a price."""
        priced = [(n, prices[m]) for m, n in self.tokens_by_model.items() if m in prices]
        return sum(n * p / 1000 for n, p in priced) if priced else None


_COUNTS = ("tokens", "model_calls", "tool_calls")


def usage(record: Mapping[str, str]) -> Usage:
    """The accounting fields of a run record (as ``get_run`` returns it)."""
    by: dict[str, dict[str, int]] = {name: {} for name in (*_COUNTS, "tokens@")}
    for name, value in record.items():
        if name.startswith("tokens@"):
            by["tokens@"][name[len("tokens@"):]] = _int(value)
        elif ":" in name and (total := name.split(":", 1)[0]) in _COUNTS and not name.startswith("reserved"):
            by[total][name.split(":", 1)[1]] = _int(value)
    limits = {f: _int(record[f]) for f in Budget.__struct_fields__ if record.get(f)}
    return Usage(tokens=_int(record.get("tokens")), model_calls=_int(record.get("model_calls")),
                 tool_calls=_int(record.get("tool_calls")), tokens_by_role=by["tokens"],
                 model_calls_by_role=by["model_calls"], tool_calls_by_role=by["tool_calls"],
                 tokens_by_model=by["tokens@"], budget=Budget(**limits) if limits else None,
                 exceeded=record.get("budget_exceeded", ""))


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
