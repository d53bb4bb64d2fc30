"""Code roles end to end: worker processes of apps, a real Redis, the twin or an HTTP model."""

from __future__ import annotations

from pathlib import Path

import redis

from baton import Client
from baton.broker import Keys, scratchpad
from tests.conftest import Workers
from tests.scripted_model import ScriptedModel

TASK = "Explain the importance of supervised learning."


def test_notebook_app_outputs_equal_the_toml_seed(workers: Workers, client: redis.Redis, keys: Keys,
                                                   redis_url: str) -> None:
    workers.spawn("--all-roles")
    workers.spawn("--app", "examples.notebook_app:app", "--all-roles")
    workers.wait_ready(client, 6, timeout=240)  # an all-roles process beats once per role
    with Client(redis_url) as c:
        seed, app = c.submit(TASK), c.submit(TASK, workflow="notebook")
        assert app.wait(timeout=240) == seed.wait(timeout=240)
    for agent in ("Alice", "Bob", "Eve"):
        mine, theirs = scratchpad(client, keys, app.id, agent), scratchpad(client, keys, seed.id, agent)
        assert [(e["task"], e["response"]) for e in mine] == [(e["task"], e["response"]) for e in theirs]


def test_a_crash_mid_handler_repeats_nothing_that_finished(workers: Workers, client: redis.Redis,
                                                            redis_url: str, tmp_path: Path) -> None:
    log, marker = tmp_path / "charges.txt", tmp_path / "crashed"
    with ScriptedModel([]) as model:
        env = {"BATON_MODEL": f"{model.base_url}?model=default", "CRASH_LOG": str(log), "CRASH_MARKER": str(marker),
               "BATON_LEASE_MS": "1000", "BATON_RECLAIM_INTERVAL_S": "0.3"}
        first = workers.spawn("--app", "tests.app.crash_app:app", "writer", env=env)
        workers.wait_ready(client, 1, timeout=240)
        with Client(redis_url) as c:
            run = c.submit("the task", workflow="crashy")
            first.wait(timeout=240)
            assert first.returncode == -9 and marker.exists()
            assert model.completion_calls == 3
            workers.spawn("--app", "tests.app.crash_app:app", "writer", env=env)
            assert run.wait(timeout=240) == "4 calls, charged 1"
        assert log.read_text().count("charged") == 1
        assert model.completion_calls == 4  # not 7
