"""Outages are not poison: model and Redis outages cost time, never a run (real worker processes).

A worker's model is a real HTTP server that fails on demand (``tests.flaky_model``); Redis is a
private ``redis-server`` whose ``maxmemory`` the test lowers and raises.
"""

from __future__ import annotations

import json
import time

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from baton.agents.workflow.spec import SEED
from baton.broker import EmbeddedRedis, Heartbeat, Keys, Retention, free_port, get_run, live_workers, submit
from baton.broker.stats import pad_entries
from baton.protocol import DeadLetter, Task, decode
from tests.cli import baton
from tests.conftest import Workers
from tests.flaky_model import FlakyModelServer
from tests.waiting import wait_for


def _dead(client: redis.Redis, keys: Keys) -> list[DeadLetter]:
    return [m for _, f in client.xrange(keys.dead()) if isinstance(m := decode(f[b"msg"]), DeadLetter)]


def _status(client: redis.Redis, keys: Keys, run_id: str) -> str:
    return (get_run(client, keys, run_id) or {}).get("status", "")


def test_503s_with_retry_after_cost_time_not_the_run(
    client: redis.Redis, keys: Keys, workers: Workers, flaky_model: FlakyModelServer
) -> None:
    flaky_model.fail(503, times=3, reason="warming up", retry_after="1")
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, env={"BATON_MODEL": flaky_model.url, "BATON_MAX_DELIVERIES": "1"})
    workers.wait_ready(client)
    run_id = submit(client, keys, Task(run_id="blip", role="planner", task="Explain supervised learning."))
    wait_for(lambda: _status(client, keys, run_id) in {"done", "failed"}, what="the run to end", logs=workers.logs)
    assert _status(client, keys, run_id) == "done", workers.logs()
    assert _dead(client, keys) == []
    assert flaky_model.completions == 3 + 3  # three 503s, then one answer per role
    assert workers.logged("unavailable (HTTP 503: warming up)"), workers.logs()


def test_a_400_dead_letters_at_once_with_the_servers_reason(
    client: redis.Redis, keys: Keys, workers: Workers, flaky_model: FlakyModelServer
) -> None:
    flaky_model.fail(400, reason="prompt contains a forbidden word")
    workers.spawn("planner", env={"BATON_MODEL": flaky_model.url})
    workers.wait_ready(client)
    run_id = submit(client, keys, Task(run_id="refused", role="planner", task="Explain supervised learning."))
    wait_for(lambda: _status(client, keys, run_id) == "failed", what="the run to fail", logs=workers.logs)
    (dead,) = _dead(client, keys)
    assert dead.run_id == run_id and dead.attempts == 1
    assert "HTTP 400: prompt contains a forbidden word" in dead.reason
    assert "every time" not in dead.reason
    assert flaky_model.completions == 1


def test_the_breaker_opens_on_an_outage_and_closes_when_the_endpoint_answers(
    client: redis.Redis, keys: Keys, workers: Workers, flaky_model: FlakyModelServer
) -> None:
    workers.spawn("planner", env={"BATON_MODEL": flaky_model.url, "BATON_BREAKER_THRESHOLD": "2",
                                  "BATON_BREAKER_CAP_S": "1", "BATON_METRICS_PORT": str(free_port())})
    workers.wait_ready(client)
    metrics_url = f"http://127.0.0.1:{_heartbeat(client, keys).metrics_port}/metrics"
    flaky_model.stop()
    run_id = submit(client, keys, Task(run_id="down", role="planner", task="Explain supervised learning."))

    wait_for(lambda: _heartbeat(client, keys).breaker == "open", what="the breaker to open",
               logs=workers.logs)
    assert _heartbeat(client, keys).model_down_since
    assert _status(client, keys, run_id) in {"queued", "running"}
    assert _metric(metrics_url, "baton_model_breaker_open") == 1.0
    shown = json.loads(baton("monitor", "--once", "--json", env=workers.env).stdout)
    (down,) = shown["model_down"]
    assert down["role"] == "planner" and down["since"] == _heartbeat(client, keys).model_down_since
    assert "model down since" in baton("monitor", "--once", env=workers.env).stdout
    flaky_model.start()
    wait_for(lambda: (get_run(client, keys, run_id) or {}).get("role") == "researcher",
               what="the planner's hop to be handed on", logs=workers.logs)
    wait_for(lambda: _heartbeat(client, keys).breaker == "closed", what="the breaker to close",
               logs=workers.logs)
    assert _heartbeat(client, keys).outage_s > 0
    assert _metric(metrics_url, "baton_model_breaker_open") == 0.0
    assert _metric(metrics_url, "baton_outage_seconds_total", dependency="model") > 0
    assert _dead(client, keys) == []


def _metric(url: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(httpx.get(url).text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    raise AssertionError(f"no {name} {labels} at {url}")


def _heartbeat(client: redis.Redis, keys: Keys) -> Heartbeat:
    (info,) = live_workers(client, keys)
    return info


def test_redis_at_maxmemory_delays_accepted_runs_but_fails_none(
    private_redis: EmbeddedRedis, private_client: redis.Redis, workers: Workers
) -> None:
    keys = Keys()
    workers.env.update({"REDIS_URL": private_redis.url, "BATON_MODEL": "echo", "BATON_MAX_DELIVERIES": "1"})
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role)
    workers.wait_ready(private_client)
    accepted: list[str] = []
    used = int(private_client.info("memory")["used_memory"])
    private_client.config_set("maxmemory-policy", "noeviction")
    private_client.config_set("maxmemory", used + 256 * 1024)
    for i in range(300):
        try:
            accepted.append(submit(private_client, keys, Task(run_id=f"oom-{i}", role="planner",
                                                              task=f"task {i} " + "x" * 400)))
        except redis.exceptions.OutOfMemoryError:
            break
    assert 0 < len(accepted) < 300  # Redis refused some submits: it really was full
    wait_for(lambda: workers.logged("waits for Redis"), what="a worker to wait on Redis", logs=workers.logs)
    private_client.config_set("maxmemory", 0)
    wait_for(lambda: all(_status(private_client, keys, r) in {"done", "failed"} for r in accepted),
               what="every accepted run to end", logs=workers.logs)
    assert [r for r in accepted if _status(private_client, keys, r) != "done"] == []
    assert _dead(private_client, keys) == []


def test_a_run_held_through_an_outage_longer_than_the_record_ttl_keeps_its_record_and_scratchpads(
    client: redis.Redis, keys: Keys, workers: Workers, flaky_model: FlakyModelServer
) -> None:
    ttl = 3
    env = {"BATON_MODEL": flaky_model.url, "BATON_RECORD_TTL_S": str(ttl), "BATON_BREAKER_THRESHOLD": "1",
           "BATON_BREAKER_CAP_S": "0.5"}
    kept = Keys(keys.prefix, keys.partitions, Retention(record_ttl_s=ttl))
    planner = next(r.agent for r in SEED.roles if r.role == "planner")
    workers.spawn("planner", env=env)
    run_id = submit(client, kept, Task(run_id="held-ttl", role="planner", task="Explain supervised learning."))
    wait_for(lambda: (get_run(client, keys, run_id) or {}).get("role") == "researcher",
             what="the planner's hop to be handed on", logs=workers.logs)
    flaky_model.stop()
    workers.spawn("researcher", env=env)
    wait_for(lambda: workers.logged("unavailable ("), what="the researcher to wait out the outage",
             logs=workers.logs)
    time.sleep(3 * ttl)  # the outage outlasts the record TTL (a commit would renew it; none comes)
    assert (get_run(client, keys, run_id) or {}).get("created_at"), "the held run's record expired"
    assert len(pad_entries(client, keys, run_id, planner)) == 1, "the planner's scratchpad expired"

    flaky_model.start()
    workers.spawn("summarizer", env=env)
    wait_for(lambda: _status(client, keys, run_id) in {"done", "failed"}, what="the run to end", logs=workers.logs)
    record = get_run(client, keys, run_id) or {}
    assert record.get("status") == "done" and record.get("created_at"), record
    assert 0 < int(client.ttl(keys.run(run_id))) <= ttl
