"""Submits ride over a SIGKILL of the Sentinel group's primary: threads submit continuously
through the client, the HTTP API (a ``baton dashboard`` process) and ``baton submit``; no submit
fails, and every run whose submit returned finishes, but for what replication is documented to
lose without ``BATON_WAIT_REPLICAS`` (docs/RELIABILITY.md): runs the old primary acknowledged in
the moment before it died, which its replica had not received yet."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from baton import Client
from baton.agents.settings import Settings
from baton.broker import Keys, connect, free_port, get_run
from tests.cli import baton
from tests.conftest import ROOT, Workers
from tests.ops.conftest import dashboard_env
from tests.sentinel.conftest import SentinelGroup
from tests.waiting import wait_for


def _done(url: str, keys: Keys, run_ids: list[str]) -> int:
    try:
        with connect(url) as c:
            return sum((get_run(c, keys, r) or {}).get("status") == "done" for r in run_ids)
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return 0


TOKEN = "sentinel-submit-token-0b7e"


def test_no_submit_fails_over_a_primary_kill(sentinel_group: SentinelGroup, workers: Workers, tmp_path: Path) -> None:
    env = {"REDIS_URL": sentinel_group.url, "BATON_MODEL": "echo"}
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, env=env)
    with connect(sentinel_group.url) as c:
        workers.wait_ready(c, 3, timeout=120)
    port = free_port()
    with open(tmp_path / "dashboard.log", "wb") as log:
        dashboard = subprocess.Popen([sys.executable, "-m", "baton", "dashboard", "--port", str(port)], cwd=ROOT,
                                     env=dashboard_env(sentinel_group.url, BATON_API_TOKENS=TOKEN),
                                     stdout=log, stderr=subprocess.STDOUT)
    accepted: dict[str, list[tuple[float, str]]] = {"client": [], "api": [], "cli": []}
    errors: list[BaseException] = []
    stop = threading.Event()

    def api_submit(http: httpx.Client) -> str:
        resp = http.post("/v1/runs", json={"task": "through the API"})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["run_id"])

    def cli_submit() -> str:
        done = baton("submit", "through the CLI", env=dashboard_env(sentinel_group.url))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def submit_forever(name: str, submit: Callable[[], str]) -> None:
        while not stop.is_set():
            try:
                run_id = submit()
                accepted[name].append((time.monotonic(), run_id))
            except BaseException as exc:  # noqa: BLE001 - any failed submit is the test's failure
                errors.append(exc)
                return

    try:
        wait_for(lambda: _up(f"http://127.0.0.1:{port}/healthz"), 60, "the dashboard to start", interval=0.2)
        with Client(settings=Settings.from_env({}, redis_url=sentinel_group.url)) as api, \
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                             headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            threads = [threading.Thread(target=submit_forever, args=("client", lambda: api.submit("topic").id)),
                       threading.Thread(target=submit_forever, args=("api", lambda: api_submit(http))),
                       threading.Thread(target=submit_forever, args=("cli", cli_submit))]
            for t in threads:
                t.start()
            wait_for(lambda: len(accepted["client"]) >= 20 and len(accepted["api"]) >= 5 and accepted["cli"] or errors,
                     90, "submits before the kill")
            at_kill = {name: len(ids) for name, ids in accepted.items()}
            killed = time.monotonic()
            sentinel_group.kill_primary()  # SIGKILL; returns once a replica is promoted
            promoted = time.monotonic()
            wait_for(lambda: all(len(accepted[n]) >= at_kill[n] + 2 for n in accepted) or errors, 120,
                     "submits of each kind after the failover")
            stop.set()
            for t in threads:
                t.join(120)
    finally:
        stop.set()
        dashboard.terminate()
        dashboard.wait(10)
    assert errors == [], "".join(traceback.format_exception(errors[0]))
    keys = Keys()
    with connect(sentinel_group.url) as c:
        lost = [(at, r) for ids in accepted.values() for at, r in ids if not c.exists(keys.run(r))]
    # only a write of the last moment before the kill may be missing from the promoted replica:
    # a run accepted earlier, or after the promotion, is never lost
    assert all(killed - 2.0 <= at <= promoted for at, _ in lost), (killed, promoted, lost)
    missing = {r for _, r in lost}
    run_ids = [r for ids in accepted.values() for _, r in ids if r not in missing]
    assert len(run_ids) > len(lost)
    wait_for(lambda: _done(sentinel_group.url, keys, run_ids) == len(run_ids), 120, "every accepted run done",
             logs=lambda: _stuck(sentinel_group.url, keys, run_ids, accepted, killed, promoted) + workers.logs())


def _stuck(url: str, keys: Keys, run_ids: list[str], accepted: dict[str, list[tuple[float, str]]],
           killed: float, promoted: float) -> str:
    """What a run that did not finish looks like: its record and when its submit returned, and what
    each role's stream holds pending (for the failure message)."""
    when = {r: (name, at) for name, ids in accepted.items() for at, r in ids}
    lines = [f"killed at {killed:.2f}, replica promoted at {promoted:.2f}"]
    with connect(url) as c:
        for r in run_ids:
            rec = get_run(c, keys, r) or {}
            if rec.get("status") != "done":
                name, at = when[r]
                lines.append(f"run {r} ({name}, accepted at {at:.2f}): "
                             + str({k: rec.get(k) for k in ("status", "role", "hops", "error")}))
        for role in ("planner", "researcher", "summarizer"):
            for stream in keys.streams("seed", role):
                if c.exists(stream):
                    lines.append(f"{stream}: length {c.xlen(stream)}, pending {c.xpending(stream, keys.group(role))}")
    return "\n".join(lines) + "\n"


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
