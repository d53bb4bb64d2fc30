"""Bad input of every kind from the issue: a clear reason in the dead-letter stream, no dead worker.

Malformed JSON, wrong types, invalid UTF-8, unexpected types, wrong roles and missing ``msg``
fields are covered in ``tests/e2e/test_pipeline.py``; the decoder is fuzzed with hypothesis in
``tests/protocol/test_codec.py``. Here: unsupported version, unknown type tag, missing fields,
oversize entries and a prompt longer than the model's context, with the real (twin) model; and
tasks the protocol's constraints forbid (empty run id, negative hop, hop limit below 1, a
workflow the worker does not run), with the echo model.
"""

from __future__ import annotations

import json

import redis

from baton.broker import Keys, get_run, scratchpad, submit
from baton.broker.dlq import list_dead
from baton.protocol import MAX_MESSAGE_BYTES, Task, decode
from tests.cli import baton
from tests.conftest import Workers
from tests.waiting import wait_for


def test_bad_entries_get_reasons_and_long_prompts_are_truncated_with_a_note(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    proc = workers.spawn("planner")  # the twin: a real model with a 1024-token context
    workers.wait_ready(client, 1, timeout=180)
    stream = keys.stream("seed", "planner")
    bad = [
        (b'{"type":"task","v":2,"run_id":"r-v2","role":"planner","task":"t"}', "unsupported protocol version 2"),
        (b'{"type":"bogus","run_id":"r-tag","role":"planner"}', "invalid message"),
        (b'{"type":"task","run_id":"r-missing","role":"planner"}', "missing required field `task`"),
        (b'{"type":"task","run_id":"r-big","role":"planner","task":"' + b"x" * MAX_MESSAGE_BYTES + b'"}',
         "message too large"),
    ]
    for data, _ in bad:
        client.xadd(stream, {"msg": data})
    long_task = " ".join(f"word{i}" for i in range(3000))  # far beyond 1024 tokens
    run_id = submit(client, keys, Task(run_id="long-prompt", role="planner", task=long_task))
    wait_for(lambda: client.xlen(keys.dead()) == len(bad) and client.xlen(keys.stream("seed", "researcher")) == 1,
               timeout=120, what="dead letters and the long task's handoff", logs=workers.logs)
    letters = list_dead(client, keys)
    for letter, (data, reason) in zip((d.letter for d in letters), bad, strict=True):
        assert reason in letter.reason, letter.reason
        assert letter.original == data.decode() and letter.role == "planner" and letter.attempts == 1
    (pad,) = scratchpad(client, keys, run_id, "Alice")
    assert pad.meta.truncated is True and pad.task == long_task
    (_, fields), = client.xrange(keys.stream("seed", "researcher"))
    assert decode(fields[b"msg"]).run_id == run_id
    assert proc.poll() is None
    listed = baton("dlq", "list", "--json", env=workers.env)
    assert [row["run_id"] for row in json.loads(listed.stdout)] == ["r-v2", "r-tag", "r-missing", "r-big"]


def test_unknown_role_is_a_one_line_cli_error(worker_env: dict[str, str]) -> None:
    proc = baton("worker", "janitor-of-doom", env=worker_env)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "unknown role 'janitor-of-doom'" in proc.stderr


def test_tasks_the_protocol_forbids_are_dead_lettered_with_their_reason(
    client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    """What a new user might XADD by hand into the planner stream (docs/PROTOCOL.md)."""
    proc = echo.spawn("planner")
    echo.wait_ready(client, 1)
    stream = keys.stream("seed", "planner")
    task = '{"type":"task","role":"planner","task":"Explain."'
    bad = [
        (task + ',"run_id":""}', None, "invalid message: Expected `str` of length >= 1 - at `$.run_id`"),
        (task + ',"run_id":"neg-hop","hop":-5,"max_hops":-1}', "neg-hop",
         "invalid message: Expected `int` >= 0 - at `$.hop`"),
        (task + ',"run_id":"no-hops","max_hops":-1}', "no-hops",
         "invalid message: Expected `int` >= 1 - at `$.max_hops`"),
        (task + ',"run_id":"elsewhere","workflow":"nope"}', "elsewhere",
         "task names workflow 'nope', but this worker runs 'seed'"),
    ]
    for data, _, _ in bad:
        client.xadd(stream, {"msg": data.encode()})
    good = submit(client, keys, Task(run_id="fine-after", role="planner", task="still served"))
    wait_for(lambda: client.xlen(keys.dead()) == len(bad)
               and client.xlen(keys.stream("seed", "researcher")) == 1,
               what="the dead letters and the good task's handoff", logs=echo.logs)
    letters = [d.letter for d in list_dead(client, keys)]
    assert [(d.reason, d.original, d.run_id) for d in letters] == [
        (reason, data, run_id or "") for data, run_id, reason in bad]
    for _, run_id, reason in bad[1:]:  # the run a bad task names has failed, with the reason
        rec = get_run(client, keys, run_id or "") or {}
        assert (rec.get("status"), rec.get("error"), rec.get("role")) == ("failed", reason, "planner")
    assert client.exists(keys.run("")) == 0 and scratchpad(client, keys, "", "Alice") == []
    assert (get_run(client, keys, good) or {})["role"] == "researcher"
    assert proc.poll() is None
