"""Dead letters are read by one broker function (``list_dead``) with one size rule, everywhere.

A task over the 1 MiB message limit is dead-lettered by a real worker (in this process, echo
model); its dead letter is then itself over 1 MiB. The monitor, the trace and the dashboard's
API all show it with its reason; an entry that is no dead letter at all is shown as unreadable.
"""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio
from fastapi.testclient import TestClient

from baton.agents.backends import load_backend
from baton.agents.ops.dashboard import create_app
from baton.agents.ops.monitor import ORIGINAL_SHOWN, Monitor
from baton.agents.ops.trace import build_trace
from baton.agents.runtime.worker import Worker
from baton.agents.settings import Settings
from baton.agents.workflow.spec import SEED
from baton.broker import Keys, ensure_group, get_run
from baton.broker.dlq import ReplayError, count_dead, find_dead, list_dead, list_dead_op, replay_dead
from baton.broker.drive import arun
from baton.protocol import MAX_MESSAGE_BYTES, DeadLetter, Task, encode
from tests.cli import baton
from tests.conftest import Workers
from tests.waiting import wait_for


def dead_letter_an_oversize_task(redis_url: str, client: redis.Redis, keys: Keys) -> str:
    run_id = "big-run"  # too big for submit(), which refuses it: written as a user's raw XADD would be
    ensure_group(client, keys.stream("seed", "planner"), "planner")
    client.xadd(keys.stream("seed", "planner"),
                {"msg": encode(Task(run_id=run_id, role="planner", task="x" * (MAX_MESSAGE_BYTES + 10)))})
    worker = Worker(Settings(redis_url=redis_url, model="echo", janitor_interval_s=3600), SEED, "planner",
                    backend=load_backend("echo"), client=client)
    worker.streams.ensure_groups()
    worker.process(worker.streams.read(pending=False, count=10, block_ms=None))
    assert worker.dead_lettered == 1
    (_, fields), = client.xrange(keys.dead())
    assert len(fields[b"msg"]) > MAX_MESSAGE_BYTES  # the dead letter itself is over the live limit
    return run_id


def test_an_oversize_dead_letter_is_shown_by_monitor_trace_and_dashboard(
    redis_url: str, client: redis.Redis, keys: Keys
) -> None:
    run_id = dead_letter_an_oversize_task(redis_url, client, keys)
    assert (get_run(client, keys, run_id) or {})["status"] == "failed"

    snap = Monitor(client, keys, [("seed", "planner")]).sample()
    assert snap.dead_letters == 1 and snap.dead_by_role == {"planner": 1}
    (view,) = snap.recent_dead
    assert (view.role, view.run_id, view.readable, view.truncated) == ("planner", run_id, True, True)
    assert view.reason.startswith("message too large")
    assert len(view.original) == ORIGINAL_SHOWN < MAX_MESSAGE_BYTES < view.original_size

    trace = build_trace(client, keys, run_id)
    assert [(d["role"], d["reason"][:17]) for d in trace.dead_letters] == [("planner", "message too large")]

    with TestClient(create_app(Settings(redis_url=redis_url), SEED, interval=60), base_url="http://localhost") as http:
        dead = http.get("/api/dead").json()
        assert dead["total"] == 1
        assert [(d["run_id"], d["reason"][:17], d["truncated"]) for d in dead["entries"]] == [
            (run_id, "message too large", True)]
        tr = http.get(f"/api/runs/{run_id}").json()["trace"]
        assert [d["reason"][:17] for d in tr["dead_letters"]] == ["message too large"]


def test_an_entry_that_is_no_dead_letter_is_shown_as_unreadable_and_not_replayed(
    client: redis.Redis, keys: Keys
) -> None:
    client.xadd(keys.dead(), {"msg": b"{not json"})
    client.xadd(keys.dead(), {"other": b"field"})
    (a, b) = list_dead(client, keys)
    assert not a.readable and a.letter.reason.startswith("unreadable dead letter: malformed JSON")
    assert a.letter.original == "{not json"
    assert not b.readable and "empty message" in b.letter.reason
    views = Monitor(client, keys).sample().recent_dead
    assert [v.readable for v in views] == [False, False]
    found = find_dead(client, keys, a.id)
    assert found is not None and not found.readable
    try:
        replay_dead(client, keys, found)
    except ReplayError as exc:
        assert "cannot be read" in str(exc)
    else:
        raise AssertionError("an unreadable dead letter was replayed")
    assert count_dead(client, keys) == 2


def test_list_dead_pages_merges_partitions_and_filters(redis_url: str, client: redis.Redis) -> None:
    keys = Keys(partitions=3)
    ids = []  # explicit ids: partitions number their entries independently, so ids could tie
    for i in range(400):  # over a page (100) in each partition
        letter = DeadLetter(run_id=f"r{i}", role="planner" if i % 2 else "researcher", reason=f"bad {i}",
                            original="{}")
        ids.append(client.xadd(keys.dead(i % 3), {"msg": encode(letter)}, id=f"{1000 + i}-0").decode())
    assert [d.id for d in list_dead(client, keys, limit=0)] == ids
    assert [d.id for d in list_dead(client, keys, limit=5, newest_first=True)] == ids[::-1][:5]
    planner = list_dead(client, keys, role="planner", limit=0)
    assert [d.letter.reason for d in planner] == [f"bad {i}" for i in range(1, 400, 2)]
    assert [d.letter.reason for d in list_dead(client, keys, run_id="r201")] == ["bad 201"]
    assert [d.id for d in list_dead(client, keys, role="researcher", limit=150, newest_first=True)] == ids[-2::-2][:150]
    assert count_dead(client, keys) == 400

    async def newest_first() -> list[str]:  # the same op, on redis.asyncio
        async with redis.asyncio.Redis.from_url(redis_url) as aclient:
            return [d.id for d in await arun(list_dead_op(keys, limit=0, newest_first=True), aclient)]

    assert asyncio.run(newest_first()) == ids[::-1]


def test_dlq_purge_by_id_and_all_from_the_cli(client: redis.Redis, keys: Keys, workers: Workers) -> None:
    workers.env["BATON_MODEL"] = "echo"
    workers.spawn("planner")
    workers.wait_ready(client, 1, timeout=180)
    for _ in range(3):
        client.xadd(keys.stream("seed", "planner"), {"msg": b"{oops"})
    wait_for(lambda: client.xlen(keys.dead()) == 3, what="three dead letters", logs=workers.logs)
    first = client.xrange(keys.dead())[0][0].decode()
    assert "purged 1 dead letter" in baton("dlq", "purge", first, env=workers.env).stdout
    assert "purged 2 dead letters" in baton("dlq", "purge", "--all", env=workers.env).stdout
    assert client.xlen(keys.dead()) == 0
    usage = baton("dlq", "purge", env=workers.env)
    assert usage.returncode == 2 and "give dead letter ids or --all" in usage.stderr
    typo = baton("dlq", "purge", "oops", env=workers.env)
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1 and "not a dead letter id: 'oops'" in typo.stderr
