"""Baton on a real 3 + 3 Redis Cluster: partitions on every primary, worker processes, operators' tools."""

from __future__ import annotations

import json
import shlex
from typing import Any

import redis
from redis.crc import key_slot

from baton import Client
from baton.agents.settings import Settings
from baton.broker import Keys, Redis, get_run, scratchpad, submit
from baton.protocol import Task
from bench.localcluster import LocalCluster
from tests.cli import baton
from tests.cluster.conftest import PARTITIONS
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import wait_runs
from tests.waiting import wait_for

FANOUT = str(ROOT / "agents" / "workflow" / "shipped" / "research_fanout.toml")


def _run_ids(keys: Keys, per_partition: int) -> list[str]:
    """Run ids covering every partition ``per_partition`` times."""
    ids: list[str] = []
    counts = dict.fromkeys(range(keys.partitions), 0)
    n = 0
    while min(counts.values()) < per_partition:
        run_id, n = f"run-{n}", n + 1
        if counts[keys.partition(run_id)] < per_partition:
            counts[keys.partition(run_id)] += 1
            ids.append(run_id)
    return ids


def _blocked_reads(cluster: LocalCluster) -> dict[int, int]:
    """Per primary port: how many clients sit blocked in XREADGROUP."""
    out: dict[int, int] = {}
    for node in cluster.running():
        with redis.Redis(port=node.port) as c:
            if c.execute_command("ROLE")[0] != b"master":
                continue
            clients: Any = c.client_list()
            out[node.port] = sum(1 for x in clients if x["cmd"] == "xreadgroup" and "b" in x["flags"])
    return out


def test_partitions_land_on_three_different_primaries(cluster: LocalCluster, ckeys: Keys) -> None:
    owners = [cluster.primary_of(key_slot(ckeys.tag(p).encode())).port for p in range(PARTITIONS)]
    assert len(set(owners)) == 3
    assert all(owners.count(port) == PARTITIONS // 3 for port in owners)


def test_seed_runs_on_every_partition_with_worker_processes_then_the_tools_see_them(
    cluster: LocalCluster, cclient: Redis, ckeys: Keys, cworkers: Workers, cluster_env: dict[str, str]
) -> None:
    for role in ("planner", "researcher", "summarizer"):
        cworkers.spawn(role)
    cworkers.wait_ready(cclient, 3)  # type: ignore[arg-type]
    settings = Settings.from_env(cluster_env)
    with Client(settings=settings) as api:
        runs = [api.submit(f"Topic {i}", run_id=rid) for i, rid in enumerate(_run_ids(ckeys, 3))]
        results = {r.id: r.wait(timeout=90) for r in runs}
    assert len({ckeys.partition(r) for r in results}) == PARTITIONS
    for run_id, result in results.items():
        assert get_run(cclient, ckeys, run_id)["status"] == "done"  # type: ignore[index]
        assert [len(scratchpad(cclient, ckeys, run_id, a)) for a in ("Alice", "Bob", "Eve")] == [1, 1, 1]
        assert result
    assert sum(cclient.xlen(ckeys.results(p)) for p in range(PARTITIONS)) == len(runs)
    # idle workers keep a blocked read on every primary instead of polling
    wait_for(lambda: all(n >= 3 for n in _blocked_reads(cluster).values()), 10, "blocked reads on every primary",
             logs=cworkers.logs)
    assert len(_blocked_reads(cluster)) == 3

    bad = ckeys.stream("seed", "planner", PARTITIONS - 1)
    cclient.xadd(bad, {"msg": b"not json"})
    wait_for(lambda: cclient.xlen(ckeys.dead(PARTITIONS - 1)), 30, "the dead letter", logs=cworkers.logs)
    dead = baton("dlq", "list", "--json", env=cluster_env)
    assert dead.returncode == 0, dead.stderr
    assert [d["role"] for d in json.loads(dead.stdout)] == ["planner"]

    mon = baton("monitor", "--once", "--json", "--interval", "0.2", env=cluster_env)
    assert mon.returncode == 0, mon.stderr
    snap = json.loads(mon.stdout)
    assert snap["dead_letters"] == 1 and snap["runs_done"] == len(runs)
    assert len(snap["workers"]) == 3

    jan = baton("janitor", "--json", env=cluster_env)
    assert jan.returncode == 0, jan.stderr
    assert len(json.loads(jan.stdout)["trimmed"]) >= PARTITIONS  # every partition's planner stream


def test_research_fanout_joins_in_every_partition(cclient: Redis, ckeys: Keys, cworkers: Workers) -> None:
    for role in ("planner", "researcher", "researcher", "summarizer"):
        cworkers.spawn(role, "--workflow", FANOUT)
    cworkers.wait_ready(cclient, 4)  # type: ignore[arg-type]
    run_ids = [submit(cclient, ckeys, Task(run_id=rid, role="planner", task=f"Topic {rid}",
                                           workflow="research_fanout")) for rid in _run_ids(ckeys, 1)]
    recs = wait_runs(cclient, ckeys, run_ids, timeout=120)  # type: ignore[arg-type]
    assert all(r["status"] == "done" for r in recs.values()), (recs, cworkers.logs())
    for run_id in run_ids:
        bob = scratchpad(cclient, ckeys, run_id, "Bob")
        assert sorted(e.meta.part for e in bob) == [0, 1, 2]
        (eve,) = scratchpad(cclient, ckeys, run_id, "Eve")
        assert recs[run_id]["result"] == eve.response


def test_workers_shard_the_partitions(cclient: Redis, ckeys: Keys, cworkers: Workers,
                                      cluster_env: dict[str, str]) -> None:
    wrong = baton("worker", "planner", "--partitions", f"1,{PARTITIONS}", env=cluster_env)
    assert wrong.returncode != 0 and "BATON_WORKER_PARTITIONS" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    cworkers.spawn("planner", "--partitions", "0,2")
    cworkers.wait_ready(cclient, 1)  # type: ignore[arg-type]
    run_ids = [submit(cclient, ckeys, Task(run_id=rid, role="planner", task="t")) for rid in _run_ids(ckeys, 2)]
    mine = [r for r in run_ids if ckeys.partition(r) in (0, 2)]

    def role(run_id: str) -> str:
        return (get_run(cclient, ckeys, run_id) or {}).get("role", "")

    wait_for(lambda: all(role(r) == "researcher" for r in mine), 30, "partitions 0 and 2 handed off",
             logs=cworkers.logs)
    assert all(role(r) == "planner" for r in run_ids if r not in mine)
    cworkers.spawn("planner", "--partitions", ",".join(str(p) for p in range(PARTITIONS) if p not in (0, 2)))
    wait_for(lambda: all(role(r) == "researcher" for r in run_ids), 30, "the other partitions handed off",
             logs=cworkers.logs)


def test_a_least_privilege_worker_user_set_on_every_node_serves_the_cluster(
    cluster: LocalCluster, cclient: Redis, ckeys: Keys, cworkers: Workers, cluster_env: dict[str, str]
) -> None:
    loaded = baton("setup", env=cluster_env)
    assert loaded.returncode == 0 and f"on {cluster.primaries} primaries" in loaded.stdout, loaded.stderr
    printed = baton("acl", "planner", "--password", "s3cret", env=cluster_env)
    assert printed.returncode == 0, printed.stderr
    rules = shlex.split(printed.stdout)[2:]
    assert "+cluster|slots" in rules
    for node in cluster.running():
        with redis.Redis(port=node.port) as c:
            c.execute_command("ACL", "SETUSER", *rules)
    url = cluster_env["REDIS_URL"].replace("redis+cluster://", "redis+cluster://baton-seed-planner:s3cret@", 1)
    cworkers.spawn("planner", env={"REDIS_URL": url})
    cworkers.wait_ready(cclient, 1)  # type: ignore[arg-type]
    run_ids = [submit(cclient, ckeys, Task(run_id=rid, role="planner", task="t")) for rid in _run_ids(ckeys, 1)]
    wait_for(lambda: all((get_run(cclient, ckeys, r) or {}).get("role") == "researcher" for r in run_ids), 30,
             "every partition handed off by the ACL user", logs=cworkers.logs)
    assert not cworkers.logged("NOPERM"), cworkers.logs()
