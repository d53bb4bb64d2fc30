"""Human review: a role's output parked until a person approves (maybe edits) or rejects it.

A role with ``review = "human"`` does not hand off after it generates: its worker *parks* the run
(``park``: input acked, scratchpad entry written, review stored and indexed as pending, run record
set to ``review``, a ``review_requested`` event appended, all in one Lua step, ``lua/park.lua``).
Nothing waits in memory, so worker and Redis restarts lose nothing.

``decide`` records a decision once (``lua/decide.lua``; a second decision returns the first and
does nothing else). Approving publishes a *continuation* of the parked task on the role's stream
(``Task.review`` set): the role's worker hands the decided output off as a normal hop would,
without calling the model. Rejecting fails the run with the reason at once. The janitor fails
runs whose deadline passed while they waited (``expire_reviews``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import redis

from ..protocol import (
    DECISIONS,
    Decision,
    Error,
    ProtocolError,
    ReviewDecision,
    ReviewStatus,
    RunStatus,
    Task,
    decode,
    encode,
    new_id,
)
from ..protocol.events import Failed, ReviewDecided, ReviewRequested, encode_event
from .commit import Committer, Outcome
from .drive import Op, awaiting, blocking, run
from .ends import runs_ended_op
from .keys import Keys
from .lenient import decode_hash
from .records import runs_over
from .scripts import LuaScript
from .streams import Entry
from .text import as_text

__all__ = [
    "Decided",
    "Park",
    "Review",
    "ReviewError",
    "VIEW_FIELDS",
    "adecide",
    "continuations",
    "decide",
    "decide_op",
    "decode_review",
    "expire_reviews",
    "find_review",
    "find_review_op",
    "list_reviews",
    "park",
]

Value = str | bytes | float | int

_park = LuaScript("park.lua")
_decide = LuaScript("decide.lua")


class ReviewError(ValueError):
    """A review that cannot be found or decided; the message says why."""


class Review(msgspec.Struct, frozen=True, kw_only=True):
    """One review as stored: what was proposed and, once decided, the decision (:func:`decode_review`)."""

    review_id: str
    run_id: str
    workflow: str = ""
    role: str = ""
    agent: str = ""
    hop: int = 0
    msg_id: str = ""
    task: str = ""
    output: str = ""
    requested_at: float = 0.0
    deadline: float | None = None
    status: ReviewStatus = ReviewStatus.PENDING
    decision: Decision | Literal[""] = ""
    decided_output: str = ""
    reason: str = ""
    decided_at: float | None = None
    prompt: str = ""
    """The prompt of the generation under review (with ``started``, ``finished`` and ``tokens``)."""
    started: float = 0.0
    finished: float = 0.0
    tokens: int = 0
    continuation_id: str = ""
    """The id of the task an approval published (the only continuation its role's worker accepts)."""

    @property
    def pending(self) -> bool:
        """Whether it still waits for a decision."""
        return not self.decision

    def view(self) -> dict[str, Any]:
        """What the CLI and the API show of it: what was proposed and the decision (not the prompt)."""
        return {name: getattr(self, name) for name in VIEW_FIELDS}


VIEW_FIELDS = Review.__struct_fields__[: Review.__struct_fields__.index("decided_at") + 1]
"""The fields a review's views show, in order."""


def decode_review(raw: Mapping[Any, Any]) -> tuple[Review, Task | None] | None:
    """The review stored in ``raw`` (its hash) and the parked task it holds; None for an empty hash.

    A field that does not convert keeps its default (a hash written by hand); an unreadable parked
    task is None.
    """
    if not raw:
        return None
    data = {as_text(k): v for k, v in raw.items()}
    base = {name: as_text(data.get(name, b"")) for name in ("review_id", "run_id")}
    return decode_hash(data, Review, base), _parked(data.get("msg"))


def _parked(msg: bytes | str | None) -> Task | None:
    """The parked task a review's ``msg`` holds; None when there is none or it does not decode."""
    try:
        parked = decode(msg) if msg else None
    except ProtocolError:
        return None
    return parked if isinstance(parked, Task) else None


@dataclass(frozen=True, slots=True)
class Decided:
    """What ``decide`` did: the review after the call, and whether this call made the decision."""

    review: Review
    first: bool


@dataclass(frozen=True, slots=True)
class Park:
    """Everything parking one reviewed output writes (see ``park``).

    ``task`` is the parked input (kept to build the continuation), ``pad`` the scratchpad entry
    ``(agent, field, value)``, ``record`` extra run-record fields; ``prompt``, ``started``,
    ``finished`` and ``tokens`` describe the generation under review.
    """

    entry: Entry
    task: Task
    role: str
    agent: str
    output: str
    pad: tuple[str, str, bytes]
    prompt: str = ""
    started: float = 0.0
    finished: float = 0.0
    tokens: int = 0
    record: Mapping[str, Value] = field(default_factory=dict)

    @property
    def review_id(self) -> str:
        """The review's id: the parked task's id (unique, and stable across redeliveries)."""
        return self.task.id




def _pairs(mapping: Mapping[str, Value]) -> list[Value]:
    flat: list[Value] = [len(mapping)]
    for k, v in mapping.items():
        flat += [k, v]
    return flat


def park(to: Committer, parks: Sequence[Park], *, now: float | None = None) -> list[Outcome]:
    """Park each reviewed output in one atomic step per output (as ``to``'s consumer, with its
    keys' retention); return each one's outcome."""
    at = time.time() if now is None else now
    return [_park_one(to, p, at) for p in parks]


def _park_one(to: Committer, p: Park, at: float) -> Outcome:
    keys, t = to.keys, p.task
    partition = keys.partition(t.run_id)
    review: dict[str, Value] = {
        "review_id": p.review_id, "run_id": t.run_id, "workflow": t.workflow, "role": p.role, "agent": p.agent,
        "hop": t.hop, "msg_id": t.id, "task": t.task, "output": p.output, "prompt": p.prompt,
        "started": p.started, "finished": p.finished, "tokens": p.tokens, "requested_at": at,
        "deadline": "" if t.deadline is None else t.deadline, "status": ReviewStatus.PENDING, "msg": encode(t),
    }
    record: dict[str, Value] = {**p.record, "status": RunStatus.REVIEW, "role": p.role, "review": p.review_id,
                                "updated_at": at}
    event = encode_event(ReviewRequested(run_id=t.run_id, role=p.role, agent=p.agent, hop=t.hop, at=at,
                                         review_id=p.review_id, msg_id=t.id, output=p.output))
    agent, pad_field, pad_value = p.pad
    script_keys: list[Value] = [
        p.entry.stream, keys.done(t.run_id, t.id), keys.run(t.run_id), keys.pad(t.run_id, agent),
        keys.pads(t.run_id), keys.review(t.run_id, p.review_id), keys.reviews(partition),
        keys.review_runs(partition), keys.events(t.run_id),
    ]
    kept = keys.retention
    args: list[Value] = [
        to.group, to.consumer, p.entry.id, kept.marker_s, pad_field, pad_value, agent, p.entry.id.split("-")[0],
        kept.record_ttl_s, p.review_id, t.run_id, at, event, kept.events_maxlen, kept.events_ttl_s,
        *_pairs(review), *_pairs(record),
    ]
    return Outcome(int(_park(to.client, script_keys, args)))


def continuations(client: redis.Redis, keys: Keys, tasks: Sequence[Task]) -> list[Task | str]:
    """For each task carrying ``Task.review``, the continuation as ``decide`` recorded it, or why it is none.

    Nothing of the entry is trusted beyond the run and review it names: the review record must say
    ``approve`` and name this task's id as the continuation ``decide`` published (both written in
    decide's one atomic step, before the entry existed), and the task returned is rebuilt from the
    record: the parked task, the decided output and the reviewed generation. A forged entry (a
    pending, rejected or unknown review, or another id) gets the reason to dead-letter it with.
    One round trip for the batch.
    """
    pipe = client.pipeline(transaction=False)
    for t in tasks:
        pipe.hgetall(keys.review(t.run_id, t.review.review_id if t.review else "-"))
    out: list[Task | str] = []
    for t, raw in zip(tasks, pipe.execute(), strict=True):
        rid = t.review.review_id if t.review else ""
        review, parked = decode_review(raw) or (None, None)
        if review is None or parked is None or parked.run_id != t.run_id:
            out.append(f"no review {rid!r} of run {t.run_id!r}: the entry's decision was not made by `decide`")
        elif review.decision != "approve":
            state = f"was {'rejected' if review.decision else 'not decided'}"
            out.append(f"review {rid!r} of run {t.run_id!r} {state}: the entry's approval is not the reviewer's")
        elif review.continuation_id != t.id:
            out.append(f"task {t.id!r} is not the continuation that the approval of review {rid!r} published")
        else:
            out.append(_continuation(parked, review, t.id, review.decided_at or 0.0, review.decided_output))
    return out


def _continuation(parked: Task, review: Review, task_id: str, at: float, output: str) -> Task:
    """The parked task as the approval of ``review`` continues it: ``output`` decided, the generation
    under review kept."""
    return msgspec.structs.replace(parked, id=task_id, created_at=at, review=ReviewDecision(
        review_id=review.review_id, decision="approve", output=output, prompt=review.prompt,
        started=review.started, finished=review.finished, tokens=review.tokens))


def find_review_op(keys: Keys, review_id_or_run: str) -> Op[Review | None]:
    """The review named by its id, or the latest review of a run named by its id; None if neither."""
    run_id = review_id = None
    latest: Any = yield lambda c: c.hget(keys.run(review_id_or_run), "review")
    if latest is not None:
        run_id, review_id = review_id_or_run, as_text(latest)
    else:
        pipe = yield lambda c: c.pipeline(transaction=False)
        for p in range(keys.partitions):
            pipe.hget(keys.review_runs(p), review_id_or_run)
        found = [as_text(r) for r in (yield lambda _: pipe.execute()) if r is not None]
        if found:
            run_id, review_id = found[0], review_id_or_run
    if run_id is None or review_id is None:
        return None
    review_key = keys.review(run_id, review_id)
    stored = decode_review((yield lambda c: c.hgetall(review_key)))
    return stored[0] if stored else None


find_review = blocking(find_review_op)


def list_reviews(client: redis.Redis, keys: Keys, *, limit: int = 100) -> list[Review]:
    """Pending reviews, oldest request first (at most ``limit``)."""
    ids: list[tuple[float, str, int]] = []
    for p in range(keys.partitions):
        rows: Any = client.zrange(keys.reviews(p), 0, limit - 1, withscores=True)
        ids += [(score, as_text(member), p) for member, score in rows]
    ids.sort()
    ids = ids[:limit]
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for _, review_id, p in ids:
        pipe.hget(keys.review_runs(p), review_id)
    run_ids = pipe.execute()
    pipe = client.pipeline(transaction=False)
    for (_, review_id, _), run_id in zip(ids, run_ids, strict=True):
        pipe.hgetall(keys.review(as_text(run_id or b"-"), review_id))
    return [found[0] for raw in pipe.execute() if (found := decode_review(raw))]


def decide_op(keys: Keys, review_id_or_run: str, decision: Decision, output: str | None = None,
              reason: str = "", *, now: float | None = None) -> Op[Decided]:
    """Decide a review (by its id, or the latest review of a run) once.

    ``approve`` hands the output off (``output`` replaces the proposed one when given): a
    continuation task goes to the role's stream and its worker completes the hop. ``reject``
    fails the run with ``reason``. Deciding again returns the first decision and changes nothing.
    ``ReviewError`` when there is no such review or its run has ended (e.g. cancelled).
    """
    if decision not in DECISIONS:
        raise ReviewError(f"unknown decision {decision!r} (use {' or '.join(DECISIONS)})")
    review = yield from find_review_op(keys, review_id_or_run)
    if review is None:
        raise ReviewError(f"no review or run with a review named {review_id_or_run!r}")
    if review.decision:
        return Decided(review, first=False)
    code, detail = yield from _decide_once(keys, review, decision, output, reason,
                                           now=time.time() if now is None else now)
    if code == -2:
        raise ReviewError(f"run {review.run_id} is {detail or 'gone'}: review {review.review_id} can no longer "
                          "be decided")
    after = yield from find_review_op(keys, review.review_id)
    if after is None:
        raise ReviewError(f"review {review.review_id} of run {review.run_id} expired")
    return Decided(after, first=code == 1)


decide = blocking(decide_op)
adecide = awaiting(decide_op)


def _decide_once(keys: Keys, review: Review, decision: Decision, output: str | None,
                 reason: str, *, now: float) -> Op[tuple[int, str]]:
    """Run the decide script; ``(code, detail)`` as ``lua/decide.lua`` returns them."""
    run_id = review.run_id
    msg: Any = yield lambda c: c.hget(keys.review(run_id, review.review_id), "msg")
    parked = _parked(msg)
    if parked is None:
        return -1, ""
    final = review.output if output is None else output
    reason = reason or ("rejected by the reviewer" if decision == "reject" else "")
    common: dict[str, Any] = {"run_id": run_id, "role": review.role, "agent": review.agent, "hop": review.hop,
                              "at": now}
    events = [encode_event(ReviewDecided(**common, review_id=review.review_id, decision=decision,
                                         output=final if decision == "approve" else "", reason=reason))]
    verdict: dict[str, Value] = {"decision": decision, "decided_at": now, "reason": reason,
                                 "status": ReviewStatus.after(decision)}
    if decision == "approve":
        cont = _continuation(parked, review, new_id(), now, final)
        verdict |= {"decided_output": final, "continuation_id": cont.id}
        record: dict[str, Value] = {"status": RunStatus.RUNNING, "role": review.role, "updated_at": now}
        target, payload = keys.run_stream(parked.workflow, review.role, run_id, parked.priority,
                                          parked.tenant), encode(cont)
    else:
        err = Error(run_id=run_id, role=review.role, reason=reason, parent_id=parked.id, hop=parked.hop,
                    trace=parked.trace)
        record = {"status": RunStatus.FAILED, "error": reason, "updated_at": now, "finished_at": now}
        target, payload = keys.results(keys.partition(run_id)), encode(err)
        events.append(encode_event(Failed(**common, reason=reason)))
    script_keys: list[Value] = [keys.review(run_id, review.review_id), keys.reviews(keys.partition(run_id)),
                                keys.run(run_id), target, keys.events(run_id)]
    kept = keys.retention
    args: list[Value] = [review.review_id, decision, kept.record_ttl_s, payload, kept.events_maxlen, kept.events_ttl_s,
                         *_pairs(verdict), *_pairs(record), *events]
    code, detail = yield from _decide.op(script_keys, args)
    if int(code) == 1 and decision == "reject":
        yield from runs_ended_op(keys, [run_id])
    return int(code), as_text(detail)


def expire_reviews(client: redis.Redis, keys: Keys, *, now: float | None = None, limit: int = 1000) -> int:
    """Fail parked runs whose deadline has passed, and drop index entries of runs that ended
    (cancelled, expired). Returns how many runs were failed."""
    now = time.time() if now is None else now
    failed = 0
    for review in list_reviews(client, keys, limit=limit):
        if review.deadline is None or review.deadline >= now:
            continue
        reason = (f"deadline passed {now - review.deadline:.1f}s ago while the output of role {review.role!r} "
                  "waited for review")
        code, _ = run(_decide_once(keys, review, "reject", None, reason, now=now), client)
        failed += code == 1
    _forget_unparked(client, keys, limit)
    return failed


def _forget_unparked(client: redis.Redis, keys: Keys, limit: int) -> None:
    for p in range(keys.partitions):
        ids = [as_text(m) for m in client.zrange(keys.reviews(p), 0, limit - 1)]
        if not ids:
            continue
        pipe = client.pipeline(transaction=False)
        for review_id in ids:
            pipe.hget(keys.review_runs(p), review_id)
        runs = [as_text(r) if r is not None else "-" for r in pipe.execute()]
        gone = [i for i, over in zip(ids, runs_over(client, keys, runs), strict=True) if over]
        if gone:
            client.zrem(keys.reviews(p), *gone)
