"""A model's rate limit is shared by every worker of every role calling it (echo model, real processes).

Three worker processes (one per role, all calling ``echo``) run a workflow whose roles declare
``rpm = 120`` (the settings allow far more): more runs are submitted than the limit lets through
in one burst, so the workers wait on the shared limit. Every run finishes, and the call rate
measured from the hops' finish times stays within 10% of the limit: a rate check, the test
does not assert how long anything takes.
"""

from __future__ import annotations

from pathlib import Path

import redis

from baton.broker import Keys, scratchpad, submit
from baton.broker.ratelimit import usage
from baton.protocol import Task
from tests.conftest import Workers
from tests.e2e.helpers import wait_runs

RPM = 120
BURST = RPM // 10
RUNS = 16  # 48 model requests: a burst of 12, then 36 at 2 a second (~18 s)
ROLES = (("planner", "Alice", "researcher"), ("researcher", "Bob", "summarizer"), ("summarizer", "Eve", ""))


def _workflow(path: Path) -> Path:
    roles = "".join(f'\n[[roles]]\nrole = "{role}"\nagent = "{agent}"\nnext = "{nxt}"\nmodel = "echo"\nrpm = {RPM}\n'
                    for role, agent, nxt in ROLES)
    path.write_text(f'name = "limited"\nentry = "planner"\n{roles}')
    return path


def test_three_workers_share_one_model_limit_and_lose_no_run(
    client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path
) -> None:
    flow = str(_workflow(tmp_path / "limited.toml"))
    env = {"BATON_MODEL_RPM": str(RPM * 50), "BATON_BATCH_SIZE": "2", "BATON_STREAM_TOKENS": "false"}
    for role, _, _ in ROLES:
        workers.spawn(role, "--workflow", flow, env=env)
    workers.wait_ready(client, 3)
    run_ids = [submit(client, keys, Task(run_id=f"limited-{i}", role="planner", task=f"Topic {i}",
                                         workflow="limited")) for i in range(RUNS)]
    recs = wait_runs(client, keys, run_ids, timeout=240)
    assert {r: rec["status"] for r, rec in recs.items()} == dict.fromkeys(run_ids, "done"), workers.logs()

    hops = [e.meta.finished for r in run_ids for _, agent, _ in ROLES for e in scratchpad(client, keys, r, agent)]
    assert len(hops) == 3 * RUNS
    first, last = min(hops), max(hops)
    rate_per_min = (len(hops) - BURST) / (last - first) * 60  # GCRA: at most the burst + the rate over any window
    assert 0.9 * RPM <= rate_per_min <= 1.1 * RPM, (rate_per_min, workers.logs())

    (model,) = usage(client, keys)
    assert (model.model, model.rpm) == ("echo", RPM)
    assert model.total_requests >= 3 * RUNS  # every prompt went through the shared limit
    assert workers.logged("at its rate limit"), workers.logs()  # the workers did wait on it
