"""Each model's usage against its shared rate limits, in ``baton monitor`` and the dashboard (real Redis)."""

from __future__ import annotations

import json

import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from baton.agents.ops.dashboard import create_app
from baton.agents.settings import Settings
from baton.agents.workflow.spec import SEED
from baton.broker import Keys
from baton.broker.ratelimit import reserve
from tests.cli import baton
from tests.minutes import inside_a_minute
from tests.waiting import wait_for

MODEL = "http://models.example.com:8080/v1/tiny"


def _calls(client: redis.Redis, keys: Keys) -> None:
    """Three prompts (120 tokens reserved) to a limited model, two to an unlimited one."""
    inside_a_minute(client)
    assert reserve(client, keys, MODEL, rpm=60, tpm=6000, requests=3, tokens=120).granted
    assert reserve(client, keys, "echo", rpm=0, tpm=0, requests=2, tokens=0).granted


def test_monitor_shows_usage_against_each_limit(client: redis.Redis, keys: Keys, worker_env: dict[str, str]) -> None:
    _calls(client, keys)
    proc = baton("monitor", "--once", "--json", "--interval", "0.1", env=worker_env)
    assert proc.returncode == 0, proc.stderr
    limits = {m["model"]: m for m in json.loads(proc.stdout)["rate_limits"]}
    assert limits == {
        MODEL: {"model": MODEL, "rpm": 60, "tpm": 6000, "requests": 3, "tokens": 120},
        "echo": {"model": "echo", "rpm": 0, "tpm": 0, "requests": 2, "tokens": 0},
    }
    text = baton("monitor", "--once", "--interval", "0.1", env=worker_env)
    assert text.returncode == 0, text.stderr
    assert "rate limits" in text.stdout and "3 / 60 (5%)" in text.stdout and "120 / 6000 (2%)" in text.stdout
    assert "2 / unlimited" in text.stdout


def test_dashboard_serves_usage_and_limit_gauges(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    _calls(client, keys)
    app = create_app(Settings(redis_url=redis_url), SEED, interval=0.2)
    with TestClient(app, base_url="http://localhost") as http:
        assert 'id="ratelimits"' in http.get("/").text

        def sampled() -> list[dict[str, object]] | None:
            snap = http.get("/api/snapshot").json()["snapshot"]
            return (snap or {}).get("rate_limits") or None

        limits = {m["model"]: m for m in wait_for(sampled, 30, "a snapshot with the rate limits")}
        assert (limits[MODEL]["requests"], limits[MODEL]["rpm"]) == (3, 60)
        samples = {(f.name, s.labels.get("model")): s.value
                   for f in text_string_to_metric_families(http.get("/metrics").text) for s in f.samples}
        assert samples[("baton_model_requests_last_minute", MODEL)] == 3
        assert samples[("baton_model_tokens_last_minute", MODEL)] == 120
        assert samples[("baton_model_rpm_limit", MODEL)] == 60
        assert samples[("baton_model_tpm_limit", "echo")] == 0
