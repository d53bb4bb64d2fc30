"""Where a role's output goes: conditional routes, fan-out into parts, fan-in of parts.

- ``choose_target``: the first ``Route`` whose regex matches its source, else ``spec.next``.
- ``split_text``: a ``Split`` rule applied to the generated text, with the fallback when the
  text has no structure (the tiny model's "Conversion Conversion ..." has none).
- ``plan_outputs``: the messages one handoff publishes: one Task, ``count`` Tasks with
  ``part``/``parts``/``group`` (all in one atomic commit), or the final Result.
- ``gather``: for a ``join`` role, park each part until the group is complete (atomic, in
  ``broker/lua/join.lua``) and hand the worker one Task holding all parts in part order.

Parts are numbered from 0 on the wire (``Task.part``) and from 1 in templates (``{part}``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from ...broker import Entry, Keys, Redis
from ...broker.join import join_part
from ...protocol import Result, RunStatus, Task, decode, encode
from ..workflow.spec import END, RoleSpec, Split

__all__ = ["PART_SEPARATOR", "choose_target", "continuation", "gather", "needs_routing", "plan_outputs", "split_text"]

PART_SEPARATOR = "\n\n"
"""What separates the parts' texts in the task a join role receives."""

_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+(\S.*?)\s*$", re.MULTILINE)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]+")


def continuation(prompt: str, output: str) -> str:
    """The generated part of ``output`` (backends return the prompt followed by the continuation)."""
    return output[len(prompt):] if prompt and output.startswith(prompt) else output


def _chunks(text: str, count: int) -> list[str]:
    words = text.split()
    if not words:
        return [text.strip()] * count
    size, extra = divmod(len(words), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append(" ".join(words[start:end]) if end > start else " ".join(words))
        start = end
    return out


def split_text(rule: Split, text: str) -> list[str]:
    """Split ``text`` into exactly ``rule.count`` parts by ``rule.by``, else by ``rule.fallback``."""
    items: list[str] = []
    if rule.by == "lines":
        items = [m.group(1) for m in _NUMBERED.finditer(text)]
    elif rule.by == "sentences":
        items = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
    how = rule.by if rule.by in {"chunks", "copies"} else rule.fallback
    if len(items) >= rule.count and rule.by not in {"chunks", "copies"}:
        return items[: rule.count]
    if how == "chunks":
        return _chunks(text, rule.count)
    return [text.strip()] * rule.count


def choose_target(spec: RoleSpec, sources: Mapping[str, str]) -> str:
    """The role the output goes to (``""`` ends the run): the first matching route, else ``next``."""
    for route in spec.routes:
        if re.search(route.when, sources.get(route.source, ""), re.MULTILINE):
            return "" if route.to == END else route.to
    return spec.next


def needs_routing(spec: RoleSpec, task: Task) -> bool:
    """Whether this handoff needs more than the seed chain's single next task or result."""
    used = {name for _, name, _, _ in string.Formatter().parse(spec.handoff) if name}
    return bool(spec.split or spec.routes or task.parts > 1 or used - {"output"})


def plan_outputs(
    spec: RoleSpec, task: Task, output: str, fields: Mapping[str, str], keys: Keys,
    common: Mapping[str, Any], finished: float, carry: Mapping[str, str] | None = None,
) -> tuple[list[tuple[str, bytes]], dict[str, str | float | int]]:
    """The ``(stream, payload)`` outputs and run-record fields of one handoff.

    ``fields`` are the template values (``output``, ``continuation``, ``tools``, ...); the
    route sources are ``output``, ``continuation`` and ``tools`` from it. ``carry`` holds the next
    tasks' ``traceparent``/``tracestate`` (the hop span's; every fan-out part carries it).
    """
    target = choose_target(spec, fields)
    if not target:
        result = Result(role=spec.role, output=output, **common)
        return [(keys.results(keys.partition(task.run_id)), encode(result))], {
            "status": RunStatus.DONE, "role": "", "result": output, "finished_at": finished}
    stream = keys.run_stream(task.workflow, target, task.run_id, task.priority, task.tenant)
    base: dict[str, Any] = {"role": target, "workflow": task.workflow, "deadline": task.deadline,
                            "max_hops": task.max_hops, "priority": task.priority, **(carry or {})}
    if spec.split:
        pieces = split_text(spec.split, fields.get("continuation", output))
        n = len(pieces)
        outputs = []
        for i, piece in enumerate(pieces):
            text = spec.handoff.format_map({**fields, "output": piece, "part": str(i + 1), "parts": str(n)})
            nxt = Task(task=text, part=i, parts=n, group=task.id, **base, **common)
            outputs.append((stream, encode(nxt)))
        return outputs, {"status": RunStatus.RUNNING, "role": target}
    text = spec.handoff.format_map(fields)
    nxt = Task(task=text, part=task.part, parts=task.parts, group=task.group, **base, **common)
    return [(stream, encode(nxt))], {"status": RunStatus.RUNNING, "role": target}


class _Item(Protocol):
    entry: Entry
    task: Task


W = TypeVar("W", bound=_Item)


def gather(client: Redis, keys: Keys, group: str, consumer: str, work: Sequence[W]) -> list[W]:
    """For a join role: park incomplete groups' parts; turn each completing part into the whole.

    The returned items are the tasks to run now: tasks that are not parts pass through; a part
    that completes its group becomes one Task whose text is every part's text in part order
    joined by ``PART_SEPARATOR`` (its ``trace`` holds every branch's hops).
    """
    ready: list[W] = []
    for w in work:
        t = w.task
        if t.parts <= 1 or not t.group:
            ready.append(w)
            continue
        parts = join_part(client, keys, group, consumer, w.entry, t)
        if parts is None:
            continue
        tasks = [decode(parts[i]) for i in sorted(parts)]
        texts = [p.task for p in tasks if isinstance(p, Task)]
        w.task = msgspec.structs.replace(
            t, task=PART_SEPARATOR.join(texts), part=0, parts=1, trace=_merged_trace(tasks)
        )
        ready.append(w)
    return ready


def _merged_trace(tasks: Sequence[Any]) -> tuple[Any, ...]:
    seen: dict[tuple[str, str], Any] = {}
    for t in tasks:
        for h in t.trace:
            seen.setdefault((h.role, h.msg_id), h)
    return tuple(sorted(seen.values(), key=lambda h: h.started))
