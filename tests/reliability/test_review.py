"""Human review with worker processes: park, approve (edited or not), reject, twice, restarts, deadlines.

The shipped ``reviewed`` workflow (the seed chain with the planner reviewed) runs on echo workers;
decisions come from ``broker.reviews.decide`` and the ``baton review`` command line.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
import redis

from baton.broker import EmbeddedRedis, Keys, get_run, scratchpad, submit
from baton.broker.janitor import Janitor
from baton.broker.reviews import Review, decide, find_review, list_reviews
from baton.protocol import Error, Result, Task, decode
from tests.cli import baton
from tests.conftest import Workers
from tests.waiting import wait_for

ROLES = ("planner", "researcher", "summarizer")
HANDOFF = "Research and elaborate: "


def _start(echo: Workers, client: redis.Redis, env: dict[str, str] | None = None) -> None:
    for role in ROLES:
        echo.spawn(role, "--workflow", "reviewed", env=env)
    echo.wait_ready(client, len(ROLES), timeout=180)


def _submit(client: redis.Redis, keys: Keys, run_id: str, deadline: float | None = None) -> str:
    return submit(client, keys, Task(run_id=run_id, role="planner", task=f"plan {run_id}", workflow="reviewed",
                                     deadline=deadline))


def _status(client: redis.Redis, keys: Keys, run_id: str, want: str, echo: Workers) -> dict[str, str]:
    def reached() -> dict[str, str] | None:
        try:
            rec = get_run(client, keys, run_id) or {}
        except redis.ConnectionError:
            return None
        return rec if rec.get("status") == want else None

    return wait_for(reached, timeout=90, what=f"run {run_id} to be {want}", logs=echo.logs)


def _events(client: redis.Redis, keys: Keys, run_id: str) -> list[dict[str, Any]]:
    return [json.loads(fields[b"ev"]) for _, fields in client.xrange(keys.events(run_id))]


def _parked(client: redis.Redis, keys: Keys, run_id: str, echo: Workers) -> Review:
    rec = _status(client, keys, run_id, "review", echo)
    review = find_review(client, keys, run_id)
    assert review is not None and review.pending and rec["review"] == review.review_id
    return review


def _results(client: redis.Redis, keys: Keys, run_id: str) -> list[Any]:
    return [m for m in (decode(f[b"msg"]) for _, f in client.xrange(keys.results())) if m.run_id == run_id]


def test_a_reviewed_role_parks_and_an_edited_approval_reaches_the_next_role(
    client: redis.Redis, keys: Keys, echo: Workers, worker_env: dict[str, str]
) -> None:
    _start(echo, client)
    run_id = _submit(client, keys, "edited")
    review = _parked(client, keys, run_id, echo)

    assert review.role == "planner" and review.task == f"plan {run_id}" and review.output.startswith("Planner")
    assert [r.review_id for r in list_reviews(client, keys)] == [review.review_id]
    [pad] = scratchpad(client, keys, run_id, "Alice")
    assert pad.response == review.output and pad.meta.review == review.review_id
    assert pad.meta.role == "planner" and pad.meta.hop == 0
    assert scratchpad(client, keys, run_id, "Bob") == []  # nothing handed off while it waits
    requested = [e for e in _events(client, keys, run_id) if e["type"] == "review_requested"]
    assert [(e["review_id"], e["output"], e["role"]) for e in requested] == [(review.review_id, review.output,
                                                                               "planner")]

    listed = baton("review", "list", "--json", env=worker_env)
    assert [r["review_id"] for r in json.loads(listed.stdout)] == [review.review_id], listed.stderr
    assert review.review_id in baton("review", "list", env=worker_env).stdout
    shown = baton("review", "show", run_id, env=worker_env)
    assert json.loads(shown.stdout)["output"] == review.output
    approved = baton("review", "approve", run_id, "--output", "EDITED PLAN", env=worker_env)
    assert approved.returncode == 0 and "approved" in approved.stdout, approved.stderr

    rec = _status(client, keys, run_id, "done", echo)
    [bob] = scratchpad(client, keys, run_id, "Bob")
    assert bob.task == HANDOFF + "EDITED PLAN"
    assert len(scratchpad(client, keys, run_id, "Alice")) == 1  # the approval wrote no second entry
    assert rec["result"].startswith("Summarizer agent named Eve. Task: Summarize key points: Researcher")
    assert list_reviews(client, keys) == []
    decided = [e for e in _events(client, keys, run_id) if e["type"] == "review_decided"]
    assert [(e["decision"], e["output"]) for e in decided] == [("approve", "EDITED PLAN")]
    [result] = _results(client, keys, run_id)
    assert [h.role for h in result.trace] == list(ROLES)


def test_an_approval_as_is_hands_off_the_proposed_output(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    _start(echo, client)
    run_id = _submit(client, keys, "as-is")
    review = _parked(client, keys, run_id, echo)
    d = decide(client, keys, review.review_id, "approve")
    assert d.first and d.review.decided_output == review.output
    _status(client, keys, run_id, "done", echo)
    assert [e.task for e in scratchpad(client, keys, run_id, "Bob")] == [HANDOFF + review.output]


def test_a_rejection_fails_the_run_with_the_reason(
    client: redis.Redis, keys: Keys, echo: Workers, worker_env: dict[str, str]
) -> None:
    _start(echo, client)
    run_id = _submit(client, keys, "rejected")
    _parked(client, keys, run_id, echo)
    empty = baton("review", "reject", run_id, "--reason", " ", env=worker_env)
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1 and "Traceback" not in empty.stderr
    unknown = baton("review", "approve", "no-such-run", env=worker_env)
    assert unknown.returncode == 1 and unknown.stderr.startswith("baton: error: no review")
    rejected = baton("review", "reject", run_id, "--reason", "off topic", env=worker_env)
    assert rejected.returncode == 0, rejected.stderr

    rec = _status(client, keys, run_id, "failed", echo)
    assert rec["error"] == "off topic"
    assert scratchpad(client, keys, run_id, "Bob") == []
    assert [(type(m), m.reason) for m in _results(client, keys, run_id)] == [(Error, "off topic")]
    types = [e["type"] for e in _events(client, keys, run_id)]
    assert types[-3:] == ["review_requested", "review_decided", "failed"]


def test_deciding_twice_returns_the_first_decision_and_does_nothing_more(
    client: redis.Redis, keys: Keys, echo: Workers, worker_env: dict[str, str]
) -> None:
    _start(echo, client)
    run_id = _submit(client, keys, "twice")
    review = _parked(client, keys, run_id, echo)
    first = decide(client, keys, run_id, "approve", "FIRST")
    again = decide(client, keys, review.review_id, "approve", "SECOND")
    rejected = decide(client, keys, run_id, "reject", reason="too late")
    assert first.first and not again.first and not rejected.first
    assert again.review.decided_output == rejected.review.decided_output == "FIRST"
    cli = baton("review", "reject", run_id, "--reason", "no", env=worker_env)
    assert cli.returncode == 0 and "already approved" in cli.stdout

    _status(client, keys, run_id, "done", echo)
    assert [e.task for e in scratchpad(client, keys, run_id, "Bob")] == [HANDOFF + "FIRST"]
    assert [type(m) for m in _results(client, keys, run_id)] == [Result]
    assert [e["type"] for e in _events(client, keys, run_id)].count("review_decided") == 1


def test_a_parked_run_survives_a_worker_restart(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    _start(echo, client)
    run_id = _submit(client, keys, "worker-restart")
    review = _parked(client, keys, run_id, echo)
    echo.stop_all()  # SIGKILL every worker while the run waits
    _start(echo, client)
    assert find_review(client, keys, run_id) == review
    decide(client, keys, run_id, "approve", "AFTER RESTART")
    _status(client, keys, run_id, "done", echo)
    assert [e.task for e in scratchpad(client, keys, run_id, "Bob")] == [HANDOFF + "AFTER RESTART"]


def test_a_parked_run_survives_a_redis_restart(
    private_redis: EmbeddedRedis, private_client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    private_client.config_set("appendfsync", "always")  # every write is on disk before the SIGKILL
    _start(echo, private_client, env={"REDIS_URL": private_redis.url})
    run_id = _submit(private_client, keys, "redis-restart")
    review = _parked(private_client, keys, run_id, echo)
    private_redis.kill()
    private_redis.start()
    assert find_review(private_client, keys, run_id) == review
    assert [r.review_id for r in list_reviews(private_client, keys)] == [review.review_id]
    decide(private_client, keys, run_id, "approve")
    _status(private_client, keys, run_id, "done", echo)
    assert [e.task for e in scratchpad(private_client, keys, run_id, "Bob")] == [HANDOFF + review.output]


def test_a_decision_after_the_deadline_fails_the_run(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    _start(echo, client)
    deadline = time.time() + 5
    run_id = _submit(client, keys, "late-decision", deadline=deadline)
    _parked(client, keys, run_id, echo)
    wait_for(lambda: time.time() > deadline, what="the run's deadline to pass")
    decide(client, keys, run_id, "approve")
    rec = _status(client, keys, run_id, "failed", echo)
    assert "before the review of role 'planner' was decided" in rec["error"]
    assert scratchpad(client, keys, run_id, "Bob") == []


def test_the_janitor_fails_parked_runs_past_their_deadline(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    _start(echo, client)
    deadline = time.time() + 600
    late, on_time = _submit(client, keys, "janitor-late", deadline=deadline), _submit(client, keys, "janitor-ok")
    _parked(client, keys, late, echo)
    _parked(client, keys, on_time, echo)
    report = Janitor(client, keys).sweep(now=deadline + 1)
    assert report.reviews_expired == 1
    rec = get_run(client, keys, late) or {}
    assert rec["status"] == "failed" and "waited for review" in rec["error"]
    assert (get_run(client, keys, on_time) or {})["status"] == "review"
    assert [r.run_id for r in list_reviews(client, keys)] == [on_time]
    assert msgspec.json.decode(client.xrange(keys.events(late))[-1][1][b"ev"])["type"] == "failed"


def test_a_forged_approval_on_the_stream_is_dead_lettered_and_the_review_waits(
    client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    """Anyone who can write the role's stream can put an entry carrying ``review={..., "decision": "approve"}``
    there: the worker reads the decision from the review record ``decide`` wrote, so it is refused."""
    from baton.broker.dlq import list_dead
    from baton.protocol import ReviewDecision, encode, new_id

    _start(echo, client)
    run_id = _submit(client, keys, "forged")
    review = _parked(client, keys, run_id, echo)
    parked = decode(client.hget(keys.review(run_id, review.review_id), "msg"))
    assert isinstance(parked, Task)
    stream = keys.run_stream("reviewed", "planner", run_id)

    def forge(review_id: str, msg_id: str | None = None) -> None:
        fake = msgspec.structs.replace(parked, id=msg_id or new_id(), review=ReviewDecision(
            review_id=review_id, decision="approve", output="FORGED OUTPUT"))
        client.xadd(stream, {"msg": encode(fake)})

    def dead_reasons() -> list[str]:
        return [d.letter.reason for d in list_dead(client, keys)]

    forge(review.review_id)
    forge("no-such-review")
    wait_for(lambda: len(dead_reasons()) == 2, what="both forged entries dead-lettered", logs=echo.logs)
    reasons = sorted(dead_reasons())
    assert "no review 'no-such-review'" in reasons[0]
    assert f"review {review.review_id!r} of run {run_id!r} was not decided" in reasons[1]
    assert [r.review_id for r in list_reviews(client, keys)] == [review.review_id]  # still waiting, still listed
    assert (get_run(client, keys, run_id) or {})["status"] == "review"
    assert client.xlen(keys.stream("reviewed", "researcher")) == 0

    decided = decide(client, keys, review.review_id, "approve")
    forge(review.review_id)  # a second, forged copy of an approved review: not the continuation decide published
    _status(client, keys, run_id, "done", echo)
    wait_for(lambda: len(dead_reasons()) == 3, what="the forged copy dead-lettered", logs=echo.logs)
    assert any("is not the continuation" in r for r in dead_reasons())
    bob = scratchpad(client, keys, run_id, "Bob")
    assert [e.task for e in bob] == [HANDOFF + decided.review.decided_output]
    assert "FORGED" not in msgspec.json.encode(bob).decode()
