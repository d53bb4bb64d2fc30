"""Budget accounting of a batch whose runs live on several primaries (a pipelined EVALSHA per run)."""

from __future__ import annotations

from dataclasses import replace

from baton.broker import Keys, Redis, get_run, submit
from baton.broker.budget import ModelCall, reserve_model_calls, settle_model_calls, usage
from baton.protocol import Budget, Task
from bench.localcluster import LocalCluster


def test_a_batch_over_every_primary_reserves_and_settles(cluster: LocalCluster, cclient: Redis, ckeys: Keys) -> None:
    run_ids = [next(f"r{i}" for i in range(10_000) if ckeys.partition(f"r{i}") == p) for p in range(ckeys.partitions)]
    for run_id in run_ids:
        submit(cclient, ckeys, Task(run_id=run_id, role="planner", task="t"), budget=Budget(max_tokens=100))
    calls = [ModelCall(run_id=r, msg_id="m", role="planner", model="echo", tokens=60) for r in run_ids]
    assert reserve_model_calls(cclient, ckeys, calls) == [""] * len(run_ids)
    settle_model_calls(cclient, ckeys, [ModelCall(run_id=r, msg_id="m", role="planner", model="echo", tokens=7)
                                        for r in run_ids])
    assert [usage(get_run(cclient, ckeys, r) or {}).tokens for r in run_ids] == [7] * len(run_ids)
    over = [replace(c, msg_id="n", tokens=99) for c in calls]
    assert reserve_model_calls(cclient, ckeys, over) == ["budget exceeded: 106 of 100 tokens"] * len(run_ids)
