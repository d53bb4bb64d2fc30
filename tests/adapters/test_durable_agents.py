"""OpenAI Agents SDK and Pydantic AI agents as a role of real worker processes, against a real
``baton serve-model``: the worker is SIGKILLed between the agents' model calls, and the redelivered
task replays the recorded call and step from the journal instead of calling the model again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import baton
from baton.broker import Keys, get_run
from baton.broker.workflows import registered_workflows
from tests.conftest import ROOT
from tests.waiting import wait_for


@pytest.mark.parametrize("kind", ["sdk", "pydantic"])
def test_a_sigkilled_worker_resumes_the_agent_from_the_journal(
    kind: str, redis_url: str, client: redis.Redis, keys: Keys, worker_env: dict[str, str], model_server: str,
    tmp_path: Path,
) -> None:
    home = tmp_path / "app"  # no `agents/` folder here: `import agents` is the SDK
    home.mkdir()
    shutil.copy(ROOT / "tests" / "adapters" / "durable_app.py", home / "durable_app.py")
    note, gate = tmp_path / "notes.txt", tmp_path / "gate"
    env = {**worker_env, "BATON_MODEL": model_server, "PYTHONPATH": str(home), "DURABLE_LOG": str(note),
           "DURABLE_GATE": str(gate), "DURABLE_KIND": kind}

    def spawn(n: int) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"worker-{n}.log", "wb") as log:
            return subprocess.Popen([sys.executable, "-m", "baton", "worker", "--app", "durable_app:app", "write"],
                                    cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)

    def logs() -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(tmp_path.glob("worker-*.log")))

    first = spawn(1)
    try:
        wait_for(lambda: f"durable-{kind}" in registered_workflows(client, keys), 240, "the app's worker", logs=logs)
        with baton.Client(redis_url) as c:
            run_id = c.submit("Explain streams.", workflow=f"durable-{kind}").id

        def drafted() -> bool:
            events = [json.loads(f[b"ev"]) for _, f in client.xrange(keys.events(run_id))]
            return any(e["type"] == "custom" for e in events)

        wait_for(drafted, 240, "the first agent's answer", logs=logs)
        first.kill()  # SIGKILL while the handler waits before the second model call
        first.wait()
        gate.touch()
        second = spawn(2)
        try:
            wait_for(lambda: (get_run(client, keys, run_id) or {}).get("status") == "done", 240, "the run",
                     logs=logs)
        finally:
            second.kill()
            second.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    record = get_run(client, keys, run_id)
    assert record is not None and record["result"]
    assert note.read_text() == "drafted\n"  # the step ran once
    assert int(record.get("model_calls", 0)) == 2  # draft once (replayed after the kill), edit once: not 3
