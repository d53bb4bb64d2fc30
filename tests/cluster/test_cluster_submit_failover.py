"""Submits ride over a primary's failover on a 3 + 3 cluster: a thread submits continuously
through the client while a primary is SIGKILLed; no submit fails, and every run whose submit
returned finishes, once, but for what replication is documented to lose without
``BATON_WAIT_REPLICAS`` (docs/RELIABILITY.md): runs the killed primary acknowledged in the moment
before it died, which its replica had not received yet. With ``BATON_WAIT_REPLICAS`` a submit returns
only once a replica holds the run, or says it does not (``NotReplicated``), and submitting again
with the same idempotency key confirms it without writing it twice.

The cluster is this module's own (the session's shared one keeps its replicas).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from baton import Client, NotReplicated
from baton.agents.settings import Settings
from baton.broker import Keys, connect, get_run
from baton.protocol import decode
from bench.localcluster import LocalCluster
from tests.cluster.conftest import PARTITIONS
from tests.conftest import Workers
from tests.waiting import wait_for


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster") as c:
        yield c


def _statuses(url: str, keys: Keys, run_ids: list[str]) -> list[str]:
    try:
        with connect(url) as c:
            return [(get_run(c, keys, r) or {}).get("status", "missing") for r in run_ids]
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return []


def test_no_submit_fails_over_a_primary_kill_and_every_accepted_run_finishes(
    own_cluster: LocalCluster, worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**worker_env, "REDIS_URL": own_cluster.url, "BATON_PARTITIONS": str(PARTITIONS), "BATON_MODEL": "echo"}
    workers = Workers(env, tmp_path)
    keys = Keys("baton", PARTITIONS)
    try:
        for role in ("planner", "researcher", "summarizer"):
            workers.spawn(role)
        with connect(own_cluster.url) as c:
            workers.wait_ready(c, 3)  # type: ignore[arg-type]
        accepted: list[tuple[float, str]] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def submit_forever() -> None:
            with Client(settings=Settings.from_env(env)) as api:
                while not stop.is_set():
                    try:
                        run_id = api.submit(f"topic {len(accepted)}").id
                        accepted.append((time.monotonic(), run_id))
                    except BaseException as exc:  # noqa: BLE001 - any failed submit is the test's failure
                        errors.append(exc)
                        return

        thread = threading.Thread(target=submit_forever, daemon=True)
        thread.start()
        wait_for(lambda: len(accepted) >= 30 or errors, 60, "submits before the kill")
        victim = own_cluster.primary_of(key_slot(keys.tag(0).encode()))
        killed = time.monotonic()
        victim.kill()  # SIGKILL
        at_kill = len(accepted)
        own_cluster.wait_ok(60)
        recovered = time.monotonic()
        wait_for(lambda: len(accepted) >= at_kill + 30 or errors, 60, "submits after the failover")
        stop.set()
        thread.join(60)
        assert errors == [], "".join(traceback.format_exception(errors[0]))
        victim.start()  # back as a replica of the promoted node
        with connect(own_cluster.url) as c:
            lost = [(at, r) for at, r in accepted if not c.exists(keys.run(r))]
        # only a write of the last moment before the kill may be missing from the promoted replica
        assert all(killed - 2.0 <= at <= recovered for at, _ in lost), (killed, recovered, lost)
        missing = {r for _, r in lost}
        run_ids = [r for _, r in accepted if r not in missing]
        assert len(run_ids) > len(lost)
        wait_for(lambda: _statuses(own_cluster.url, keys, run_ids).count("done") == len(run_ids), 120,
                 "every accepted run done", logs=workers.logs)
        with connect(own_cluster.url) as c:
            results = sum(c.xlen(keys.results(p)) for p in range(PARTITIONS))
        assert results == len(run_ids)  # each run once: a retried submit did not start it twice
        print(f"{len(run_ids)} submits, {len(run_ids) - at_kill} after the kill, none failed")
    finally:
        workers.stop_all()


def _replicas_online(cluster: LocalCluster) -> bool:
    for node in cluster.running():
        with redis.Redis(port=node.port) as c:
            info = c.info("replication")
            if info["role"] == "master" and "online" not in str(info.get("slave0", "")):
                return False
    return True


def test_wait_replicas_confirms_a_submit_or_says_it_is_not_replicated(own_cluster: LocalCluster) -> None:
    wait_for(lambda: _replicas_online(own_cluster), 60, "every primary's replica in sync")

    def settings(wait_ms: int) -> Settings:
        return Settings.from_env({}, redis_url=own_cluster.url, partitions=PARTITIONS, wait_replicas=1,
                                 wait_timeout_ms=wait_ms)

    keys = Keys("baton", PARTITIONS)
    # a live replica acknowledges at once: the long wait only spares a loaded machine a false alarm
    with Client(settings=settings(10_000)) as api, Client(settings=settings(300)) as impatient:
        first = api.submit("replicated")
        primary = own_cluster.primary_of(key_slot(keys.run(first.id).encode()))
        with redis.Redis(port=primary.port) as direct:
            replica_port = int(direct.info("replication")["slave0"]["port"])
        with redis.Redis(port=replica_port) as replica:
            replica.readonly()
            assert replica.exists(keys.run(first.id))  # on the replica when submit returned
        frozen = next(n for n in own_cluster.running() if n.port == replica_port)
        assert frozen.proc is not None
        os.kill(frozen.proc.pid, signal.SIGSTOP)  # shorter than the node timeout: no failover
        try:
            same_slot = next(r for r in (f"r{i}" for i in range(10_000))
                             if key_slot(keys.run(r).encode()) == key_slot(keys.run(first.id).encode()))
            key = next(k for k in (f"k{i}" for i in range(10_000)) if keys.partition(k) == keys.partition(same_slot))
            with pytest.raises(NotReplicated) as caught:  # (a key stored with its run: in its partition)
                impatient.submit("not replicated yet", run_id=same_slot, idempotency_key=key)
        finally:
            os.kill(frozen.proc.pid, signal.SIGCONT)
        assert caught.value.run_id == same_slot
        assert api.submit("not replicated yet", idempotency_key=key).id == same_slot  # confirmed now
        entries = api.redis.xrange(keys.run_stream("seed", "planner", same_slot))
        assert [decode(f[b"msg"]).run_id for _, f in entries].count(same_slot) == 1  # written once
