"""Budgets with in-process workers on the twin: a refused hop in a batch, forks and replays
keeping the source run's budget with fresh counts."""

from __future__ import annotations

import redis

from baton.agents.workflow.spec import SEED
from baton.broker import Keys, get_run, scratchpad, submit
from baton.broker.fork import fork_run, replay_run
from baton.protocol import Budget, Task
from tests.workflows.conftest import Inline


def test_budget_in_a_batch_and_carried_by_fork_and_replay(inline: Inline, client: redis.Redis, keys: Keys) -> None:
    inline.start(SEED)
    capped = submit(client, keys, Task(run_id="capped", role="planner", task="Explain."),
                    budget=Budget(max_model_calls=2))
    free = submit(client, keys, Task(run_id="free", role="planner", task="Explain."))
    inline.drain()
    rec = get_run(client, keys, capped) or {}
    assert (rec["status"], rec["error"], rec["model_calls"]) == ("failed", "budget exceeded: 3 of 2 model calls", "2")
    assert scratchpad(client, keys, capped, "Eve") == []
    other = get_run(client, keys, free) or {}
    assert other["status"] == "done" and other["model_calls"] == "3"  # the same batches, no budget: not refused
    assert int(other["tokens"]) == sum(int(other[f"tokens:{r}"]) for r in ("planner", "researcher", "summarizer"))

    forked = fork_run(client, keys, capped, "researcher")
    replayed = replay_run(client, keys, capped)
    inline.drain()
    fork_rec, replay_rec = get_run(client, keys, forked) or {}, get_run(client, keys, replayed) or {}
    assert (fork_rec["status"], fork_rec["max_model_calls"], fork_rec["model_calls"]) == ("done", "2", "2")
    assert (replay_rec["status"], replay_rec["error"]) == ("failed", "budget exceeded: 3 of 2 model calls")
