"""Per-tenant token quotas and per-minute limits against real worker processes (the offline twin)
and real redis-server: a run whose tenant used up its quota fails with the reason at its next hop,
the tenant's next submit is refused (client, HTTP 429 with Retry-After, one-line CLI error), another
tenant goes on; a forged tenant on an entry is dead-lettered; ``baton tenants`` shows the usage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from baton import Client, SubmitRefused
from baton.agents.ops.dashboard import create_app
from baton.agents.settings import Settings
from baton.agents.tenants import Directory
from baton.agents.workflow.spec import SEED
from baton.broker import Keys
from baton.broker.dlq import list_dead
from baton.broker.ratelimit import usage
from baton.broker.tenants import publish_limits
from baton.protocol import Task, encode
from tests.cli import baton
from tests.conftest import Workers
from tests.tenants.conftest import write_tenants
from tests.waiting import wait_for

LIMITS = {"acme": "quota_tokens = 1\nquota_window_s = 3600\nrpm = 6000\ntpm = 1000000", "globex": "rpm = 6000"}


def test_quota_fails_running_work_refuses_submits_and_spares_other_tenants(
        redis_url: str, client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path) -> None:
    tenants = write_tenants(tmp_path / "tenants.toml", LIMITS)
    publish_limits(client, keys, Directory.of(str(tenants.path)).limits())
    workers.env["BATON_MAX_NEW_TOKENS"] = "4"
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role)
    workers.wait_ready(client)
    with Client(redis_url, tenant="acme") as acme, Client(redis_url, tenant="globex") as globex:
        first = acme.submit("Explain streams.")
        other = globex.submit("Explain groups.")
        wait_for(lambda: first.record().ended and other.record().ended, 180, "both runs to end")
        failed = first.record()
        assert failed.status == "failed", failed
        assert "tenant 'acme' is over its token quota" in failed.error and "of 1 tokens per 3,600 s" in failed.error
        assert failed.hops == 1  # the planner's hop ran (under quota), the researcher's was refused
        assert other.record().status == "done"  # the other tenant is untouched
        assert acme.runs() and [r.run_id for r in acme.runs()] == [first.id]
        with pytest.raises(SubmitRefused) as refused:
            acme.submit("one more")
        assert "over its token quota" in refused.value.reason and 0 < refused.value.retry_after_s <= 3600

    # the HTTP API answers 429 with Retry-After; the CLI with one line
    app = create_app(Settings(redis_url=redis_url, tenants_file=str(tenants.path)), SEED, interval=0.2)
    with TestClient(app, base_url="http://localhost") as http:
        res = http.post("/v1/runs", json={"task": "again"}, headers=tenants.headers("acme"))
        assert res.status_code == 429 and 0 < int(res.headers["Retry-After"]) <= 3600
        assert "over its token quota" in res.json()["detail"]
        assert http.post("/v1/runs", json={"task": "fine"}, headers=tenants.headers("globex")).status_code == 201
        shown = {t["tenant"]: t for t in http.get("/v1/tenants", headers=tenants.headers("ops")).json()["tenants"]}
        assert set(shown) == {"acme", "globex", "ops"}
        assert shown["acme"]["over_quota"] and shown["acme"]["tokens_used"] >= 1
        assert shown["globex"]["tokens_used"] >= 3 and shown["globex"]["queued"] + shown["globex"]["running"] >= 0
        assert [t["tenant"] for t in http.get("/v1/tenants", headers=tenants.headers("acme")).json()["tenants"]] == [
            "acme"]
    cli = baton("submit", "Explain streams.", env={**workers.env, "BATON_TENANT": "acme"})
    assert cli.returncode == 1 and cli.stdout == ""
    assert cli.stderr.count("\n") == 1 and cli.stderr.startswith("baton: error: tenant 'acme' is over its token quota")
    table = baton("tenants", "--json", env=workers.env)
    assert table.returncode == 0, table.stderr
    rows = {r["tenant"]: r for r in json.loads(table.stdout)}
    assert rows["acme"]["over_quota"] and rows["acme"]["limits"]["quota_tokens"] == 1

    # each tenant's model calls went through its own per-minute limiter
    limited = {u.model: u for u in usage(client, keys)}
    assert limited["tenant:acme"].total_requests == 1 and limited["tenant:globex"].total_requests >= 3

    # an entry that names another tenant than its run's record is dead-lettered; the run is left as it is
    forged = Task(run_id=other.id, role="planner", task="steal", tenant="acme")
    client.xadd(keys.stream("seed", "planner"), {"msg": encode(forged)})
    def forged_dead() -> bool:
        return any(d.letter.reason.startswith("the entry names tenant 'acme'") for d in list_dead(client, keys))

    wait_for(forged_dead, 60, "the forged entry to be dead-lettered")
    assert client.hget(keys.run(other.id), "status") == b"done"
