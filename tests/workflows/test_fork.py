"""Fork and replay on the twin model (greedy decoding): the same inputs give the same outputs."""

from __future__ import annotations

import os

import pytest
import redis

from baton.agents.workflow.spec import SEED
from baton.broker import Keys, get_run, scratchpad, submit
from baton.broker.fork import ForkError, fork_run, replay_run
from baton.protocol import Task
from tests.cli import baton
from tests.workflows.conftest import Inline

AGENTS = ("Alice", "Bob", "Eve")
TASK = "Explain the importance of supervised learning."


def _original(inline: Inline, client: redis.Redis, keys: Keys) -> str:
    inline.start(SEED)
    run_id = submit(client, keys, Task(run_id="source", role="planner", task=TASK))
    inline.drain()
    assert (get_run(client, keys, run_id) or {})["status"] == "done"
    return run_id


def _pads(client: redis.Redis, keys: Keys, run_id: str) -> dict[str, list[tuple[str, str]]]:
    return {a: [(e.task, e.response) for e in scratchpad(client, keys, run_id, a)] for a in AGENTS}


def test_replay_reruns_with_the_same_inputs_and_greedy_outputs_match(
    inline: Inline, client: redis.Redis, keys: Keys
) -> None:
    source = _original(inline, client, keys)
    replay = replay_run(client, keys, source)
    inline.drain()
    rec = get_run(client, keys, replay) or {}
    assert rec["status"] == "done" and rec["replayed_from"] == source and rec["task"] == TASK
    assert rec["result"] == (get_run(client, keys, source) or {})["result"]
    assert _pads(client, keys, replay) == _pads(client, keys, source)


def test_a_fork_copies_earlier_hops_and_continues_from_the_role_with_its_original_input(
    inline: Inline, client: redis.Redis, keys: Keys
) -> None:
    source = _original(inline, client, keys)
    forked = fork_run(client, keys, source, "researcher")
    rec = get_run(client, keys, forked) or {}
    assert (rec["forked_from"], rec["forked_at"], rec["forked_hop"]) == (source, "researcher", "1")
    assert scratchpad(client, keys, forked, "Alice") == scratchpad(client, keys, source, "Alice")  # copied as is
    assert scratchpad(client, keys, forked, "Bob") == []
    inline.drain()
    rec = get_run(client, keys, forked) or {}
    assert rec["status"] == "done" and rec["result"] == (get_run(client, keys, source) or {})["result"]
    assert _pads(client, keys, forked) == _pads(client, keys, source)
    assert [e.meta.hop for e in scratchpad(client, keys, forked, "Eve")] == [2]


def test_a_fork_with_an_edited_task_gives_the_role_that_input(inline: Inline, client: redis.Redis, keys: Keys) -> None:
    source = _original(inline, client, keys)
    forked = fork_run(client, keys, source, "summarizer", "Summarize key points: a shorter text.")
    inline.drain()
    assert (get_run(client, keys, forked) or {})["status"] == "done"
    [eve] = scratchpad(client, keys, forked, "Eve")
    assert eve.task == "Summarize key points: a shorter text." and eve.meta.hop == 2
    assert _pads(client, keys, forked)["Bob"] == _pads(client, keys, source)["Bob"]
    assert eve.response != scratchpad(client, keys, source, "Eve")[0].response


def test_fork_errors_name_the_problem(inline: Inline, client: redis.Redis, keys: Keys, redis_url: str) -> None:
    source = _original(inline, client, keys)
    with pytest.raises(ForkError, match="no run 'nope'"):
        fork_run(client, keys, "nope", "planner")
    with pytest.raises(ForkError, match=r"role 'critic' has no scratchpad entry .* planner, researcher, summarizer"):
        fork_run(client, keys, source, "critic")
    env = {**os.environ, "REDIS_URL": redis_url}
    bad = baton("fork", source, "--from", "critic", env=env)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "has no scratchpad entry" in bad.stderr
    good = baton("fork", source, "--from", "researcher", env=env)
    assert good.returncode == 0, good.stderr
    assert (get_run(client, keys, good.stdout.strip()) or {})["forked_from"] == source
    replayed = baton("replay", source, env=env)
    assert (get_run(client, keys, replayed.stdout.strip()) or {})["replayed_from"] == source
