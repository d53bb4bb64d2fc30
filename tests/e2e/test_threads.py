"""Threads with real worker processes and a real Redis: a turn sees the thread's earlier turns in its
prompt template (``{history}``) and in a code role (``ctx.history``); each policy under racing submits
to a busy thread; a worker SIGKILLed mid-turn (the turn is redelivered and the thread goes on)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from baton import Client, ThreadBusy
from baton.agents.settings import Settings
from baton.broker import Keys, read_events
from baton.broker.threads import get_thread
from baton.protocol import HopStarted, ThreadPolicy
from tests.conftest import Workers
from tests.e2e.codeapps import chatty  # noqa: F401  (the app the workers run)
from tests.e2e.helpers import wait_runs
from tests.waiting import wait_for

APPS = "tests.e2e.codeapps"
CHAT = """
name = "chat"
entry = "chat"

[[roles]]
role = "chat"
agent = "Ada"
prompt = "{history}\\nUser: {task}\\nAssistant:"
next = ""
"""
PLAIN = CHAT.replace('name = "chat"', 'name = "plain"').replace("{history}\\n", "")
RACERS = 6


def _chat(tmp_path: Path, text: str = CHAT) -> str:
    path = tmp_path / "chat.toml"
    path.write_text(text)
    return str(path)


def _started(client: redis.Redis, keys: Keys, run_id: str) -> bool:
    """Whether a worker has started the run's first hop (its ``hop_started`` event)."""
    return any(isinstance(e, HopStarted) for _, e in read_events(client, keys, run_id))


def _submit(c: Client, text: str, thread: str, policy: ThreadPolicy | None = None, wf: str = "") -> str:
    return c.submit(text, workflow=wf or None, thread=thread, thread_policy=policy).id


def test_history_in_the_template_and_in_ctx_history(redis_url: str, client: redis.Redis, keys: Keys,
                                                    workers: Workers, tmp_path: Path) -> None:
    wf = _chat(tmp_path)
    workers.spawn("chat", "--workflow", wf, env={"BATON_MODEL": "echo"})
    workers.spawn("listener", "--app", f"{APPS}:chatty", env={"BATON_MODEL": "echo"})
    workers.wait_ready(client)
    with Client(settings=Settings(redis_url=redis_url)) as c:
        ids = [_submit(c, f"turn {i}", "conv", wf=wf) for i in range(3)]  # enqueued: they run in order
        recs = wait_runs(client, keys, ids, timeout=120)
        assert [recs[r]["status"] for r in ids] == ["done"] * 3, workers.logs()
        first, second, third = (recs[r]["result"] for r in ids)
        assert "User: turn" not in first.split("User: turn 0")[0]  # the first turn has no history
        assert f"User: turn 0\nAssistant: {first}\nUser: turn 1" in second
        assert f"User: turn 0\nAssistant: {first}\nUser: turn 1\nAssistant: {second}\nUser: turn 2" in third
        info = wait_for(lambda: (t := c.thread("conv")) is not None and t.active == "" and t, 30,
                        "the thread released after its last turn's commit")
        assert [t.run_id for t in info.turns] == ids

        code = [_submit(c, f"say {i}", "code-conv", wf="chatty") for i in range(3)]
        recs = wait_runs(client, keys, code, timeout=120)
        assert [recs[r]["result"] for r in code] == [
            "[] say 0", "[say 0 -> done:[] say 0] say 1",
            "[say 0 -> done:[] say 0 | say 1 -> done:[say 0 -> done:[] say 0] say 1] say 2"], workers.logs()


def _race(redis_url: str, thread: str, policy: ThreadPolicy, wf: str) -> list[str | ThreadBusy]:
    gate = threading.Barrier(RACERS)

    def one(i: int) -> str | ThreadBusy:
        with Client(settings=Settings(redis_url=redis_url)) as c:
            gate.wait()
            try:
                return _submit(c, f"racer {i}", thread, policy, wf)
            except ThreadBusy as exc:
                return exc

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


@pytest.mark.parametrize("policy", ["reject", "enqueue", "interrupt", "rollback"])
def test_each_policy_under_racing_submits_to_a_busy_thread(redis_url: str, client: redis.Redis, keys: Keys,
                                                           workers: Workers, tmp_path: Path,
                                                           policy: ThreadPolicy) -> None:
    wf = _chat(tmp_path, PLAIN)  # (no history in the prompt: the first turn's sleep marker stays in it)
    workers.spawn("chat", "--workflow", wf, env={"BATON_MODEL": "echo", "BATON_FAULT_INJECTION": "1"})
    workers.wait_ready(client)
    with Client(settings=Settings(redis_url=redis_url)) as c:
        first = _submit(c, "first [[fault:sleep:20]]", "busy", wf=wf)  # busy while the racers submit
        wait_for(lambda: _started(client, keys, first), 60, "the first turn to run", logs=workers.logs)
        got = _race(redis_url, "busy", policy, wf)
    accepted = [r for r in got if isinstance(r, str)]
    ids = [first, *accepted]
    recs = wait_runs(client, keys, ids, timeout=180)
    info = wait_for(lambda: (t := get_thread(client, keys, "busy")) is not None and t.active == "" and t, 30,
                    "the thread released after its last turn's commit", logs=workers.logs)
    assert info.queued == []
    status = {r: recs[r]["status"] for r in ids}
    turns = [(t.run_id, t.status) for t in info.turns]
    if policy == "reject":
        assert accepted == [] and len(got) == RACERS and {e.active for e in got} == {first}  # type: ignore[union-attr]
        assert turns == [(first, "done")]
    elif policy == "enqueue":
        assert set(status.values()) == {"done"} and len(accepted) == RACERS
        assert turns[0] == (first, "done") and sorted(turns[1:]) == sorted((r, "done") for r in accepted)
        assert len({r for r, _ in turns}) == len(ids)  # each turn once
        ends = [float(recs[r]["finished_at"]) for r, _ in turns]
        assert ends == sorted(ends)  # one at a time, in the order they were queued
    else:
        done = [r for r in ids if status[r] == "done"]
        assert len(done) == 1 and sorted(status.values()) == ["cancelled"] * RACERS + ["done"]
        if policy == "interrupt":
            assert len(turns) == RACERS + 1 and turns[-1] == (done[0], "done")
            assert {s for _, s in turns[:-1]} == {"cancelled"}
        else:
            assert turns == [(done[0], "done")]  # the cancelled turns left nothing
    assert int(client.xlen(keys.stream("plain", "chat"))) == len(ids)  # each accepted turn started once


def test_a_worker_killed_mid_turn_the_turn_is_redelivered_and_the_thread_goes_on(
        redis_url: str, client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path) -> None:
    wf = _chat(tmp_path)
    env = {"BATON_MODEL": "echo", "BATON_LEASE_MS": "1000"}
    doomed = workers.spawn("chat", "--workflow", wf, env={**env, "BATON_ECHO_DELAY_S": "60"})
    workers.wait_ready(client)
    with Client(settings=Settings(redis_url=redis_url)) as c:
        ids = [_submit(c, f"turn {i}", "survivor", wf=wf) for i in range(3)]
    wait_for(lambda: _started(client, keys, ids[0]), 60, "the first turn to run", logs=workers.logs)
    doomed.kill()  # SIGKILL mid-turn: the entry stays pending, the thread stays on its first turn
    doomed.wait()
    assert get_thread(client, keys, "survivor").active == ids[0]  # type: ignore[union-attr]
    workers.spawn("chat", "--workflow", wf, env=env)
    recs = wait_runs(client, keys, ids, timeout=120)
    assert [recs[r]["status"] for r in ids] == ["done"] * 3, workers.logs()
    info = wait_for(lambda: (t := get_thread(client, keys, "survivor")) is not None and len(t.turns) == 3 and t, 30,
                    "the thread released after its last turn's commit", logs=workers.logs)
    assert [(t.run_id, t.status) for t in info.turns] == [(r, "done") for r in ids]
    assert f"User: turn 0\nAssistant: {recs[ids[0]]['result']}\nUser: turn 1" in recs[ids[1]]["result"]
    assert int(client.xlen(keys.stream("chat", "chat"))) == 3  # each turn started once
