"""A rate-limited worker under its least-privilege ACL user: the shared limit needs nothing more."""

from __future__ import annotations

import redis

from baton.broker import EmbeddedRedis, Keys, get_run, submit
from baton.broker.acl import RoleNeeds, role_acl
from baton.broker.ratelimit import usage
from baton.broker.scripts import setup_library
from baton.protocol import Task
from tests.conftest import Workers
from tests.waiting import wait_for


def test_a_rate_limited_worker_runs_under_its_acl_user(
    private_redis: EmbeddedRedis, private_client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    admin = private_client
    rules = role_acl(keys, "seed", "planner", RoleNeeds(next_roles=("researcher",), rate_limits=True), password="pw")
    admin.execute_command("ACL", "SETUSER", *rules)
    setup_library(admin)
    admin.acl_log_reset()
    env = {"REDIS_URL": f"redis://{rules[0]}:pw@127.0.0.1:{private_redis.port}/0", "BATON_MODEL_RPM": "600",
           "BATON_MODEL_TPM": "60000"}
    proc = echo.spawn("planner", env=env)
    runs = [submit(admin, keys, Task(run_id=f"rl-acl-{i}", role="planner", task="t")) for i in range(3)]
    wait_for(lambda: all((get_run(admin, keys, r) or {}).get("role") == "researcher" for r in runs),
             what="the planner handoffs under the ACL user", logs=echo.logs)
    assert proc.poll() is None
    assert admin.acl_log() == [], "the worker needed something its ACL does not grant"
    assert sum(u.total_requests for u in usage(admin, keys)) == 3
