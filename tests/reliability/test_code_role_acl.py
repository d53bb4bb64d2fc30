"""Code roles under the least-privilege Redis users ``baton acl ROLE --app ...`` prints: their workers
journal steps (``ctx.step``), sleep (``ctx.sleep``) and wait for signals (``ctx.wait_for``) with
nothing refused (``ACL LOG`` is the oracle), and are refused another role's due index."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import redis

from baton.broker import EmbeddedRedis, Keys, submit
from baton.broker.scripts import setup_library
from baton.broker.timers import send_signal
from baton.protocol import Task
from tests.cli import baton
from tests.conftest import Workers
from tests.e2e.helpers import wait_runs
from tests.waiting import wait_for

APP = "tests.e2e.waitapps:timers"


def _role_user(admin: redis.Redis, url: str, role: str, password: str) -> str:
    """The ACL user ``baton acl ROLE --app APP`` prints, set by the admin."""
    done = baton("acl", role, "--app", APP, "--password", password, env={"REDIS_URL": url})
    assert done.returncode == 0, done.stderr
    words = shlex.split(done.stdout.strip())
    assert words[:2] == ["ACL", "SETUSER"]
    admin.execute_command(*words)
    return words[2]


def _refusals(admin: redis.Redis, keys: Keys) -> list[dict[str, object]]:
    """ACL LOG entries, less the app's best-effort registration of its workflow (an admin's job)."""
    return [e for e in admin.acl_log() if e.get("object") != keys.workflows()]


def test_code_role_workers_step_sleep_and_wait_under_their_acl_users(
    private_redis: EmbeddedRedis, private_client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path
) -> None:
    admin = private_client
    setup_library(admin)
    port = private_redis.port
    env = {"BATON_MODEL": "echo", "BATON_RECLAIM_INTERVAL_S": "0.2", "BATON_TEST_FILE": str(tmp_path / "notes"),
           "NAP_S": "1"}
    for role in ("napper", "approver"):
        user = _role_user(admin, private_redis.url, role, f"{role}-pw")
        workers.spawn(role, "--app", APP, env={**env, "REDIS_URL": f"redis://{user}:{role}-pw@127.0.0.1:{port}/0"})
    admin.acl_log_reset()
    nap = submit(admin, keys, Task(run_id="acl-nap", role="napper", task="n", workflow="timers"))
    ask = submit(admin, keys, Task(run_id="acl-ask", role="approver", task="a", workflow="timers"))
    wait_for(lambda: (admin.hget(keys.run(ask), "status") or b"") == b"waiting", 180, "the approver parked",
             logs=workers.logs)
    assert send_signal(admin, keys, ask, "approval", {"by": "acl", "ok": True}) is True
    recs = wait_runs(admin, keys, [nap, ask], timeout=180)
    assert recs[nap]["result"] == "slept n" and recs[ask]["result"] == "a: acl said True", workers.logs()
    assert sorted((tmp_path / "notes").read_text().splitlines()) == ["after n", "asked a", "before n"]
    assert _refusals(admin, keys) == [], "a code role's worker needed something its ACL does not grant"
    napper = redis.Redis(port=port, username="baton-timers-napper", password="napper-pw")
    with pytest.raises(redis.exceptions.NoPermissionError):  # not another role's due index
        napper.zrange(keys.timers("timers", "approver", 0), 0, -1)
    napper.close()
