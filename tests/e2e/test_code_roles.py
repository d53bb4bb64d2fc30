"""Code roles (``baton worker --app``) in real worker processes, against a real Redis and a real
HTTP model server that counts the calls it answers (``tests/flaky_model.py``)."""

from __future__ import annotations

from pathlib import Path

import redis

from baton.broker import Keys, agents_in_run, scratchpad, submit
from baton.broker.reviews import decide, find_review
from baton.protocol import Budget, DeadLetter, Task, decode
from tests.conftest import Workers
from tests.e2e.helpers import SEED_TASK, notebook, wait_runs
from tests.flaky_model import FlakyModelServer
from tests.waiting import wait_for

APPS = "tests.e2e.codeapps"


def _dead_letters(client: redis.Redis, keys: Keys) -> list[DeadLetter]:
    out = []
    for _, fields in client.xrange(keys.dead()):
        msg = decode(fields[b"msg"])
        assert isinstance(msg, DeadLetter)
        out.append(msg)
    return out


def test_a_crash_mid_handler_repeats_nothing_that_finished(
    client: redis.Redis, keys: Keys, workers: Workers, flaky_model: FlakyModelServer, tmp_path: Path
) -> None:
    lines = tmp_path / "steps.txt"
    env = {"BATON_MODEL": flaky_model.url, "BATON_TEST_FILE": str(lines), "BATON_LEASE_MS": "1000"}
    flaky_model.hold(from_request=4)
    first = workers.spawn("solo", "--app", f"{APPS}:crash", env=env)
    workers.wait_ready(client)
    run_id = submit(client, keys, Task(run_id="crash-1", role="solo", task="remember this", workflow="crash"))
    assert flaky_model.holding.wait(90), workers.logs()
    first.kill()  # SIGKILL in the 4th model call: 3 calls and the step are journaled
    first.wait()
    flaky_model.release()
    workers.spawn("solo", "--app", f"{APPS}:crash", env=env)
    recs = wait_runs(client, keys, [run_id], timeout=120)
    assert recs[run_id]["status"] == "done", workers.logs()
    assert lines.read_text().splitlines() == ["remember this"]
    assert flaky_model.answered == 4  # not 7: the redelivered handler replayed 3 calls from the journal


def test_a_step_killed_before_its_result_is_recorded_runs_again_with_the_same_key(
    client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path
) -> None:
    """The documented guarantee of ``ctx.step`` (OPERATIONS, "Steps run at least once"): a worker
    SIGKILLed inside a step's body, before its result is journaled, leaves the step unrecorded, and
    the redelivered task runs it again, with the same ``ctx.idempotency_key``; a body that dedupes
    on that key has its effect once. Recorded, it never runs again (the test above)."""
    lines, gate = tmp_path / "attempts.txt", tmp_path / "gate"
    env = {"BATON_MODEL": "echo", "BATON_TEST_FILE": str(lines), "BATON_GATE": str(gate), "BATON_LEASE_MS": "1000"}
    first = workers.spawn("charger", "--app", f"{APPS}:once", env=env)
    run_id = submit(client, keys, Task(run_id="once-1", role="charger", task="t", workflow="once"))
    wait_for(lambda: lines.exists() and lines.read_text(), 120, "the step's first attempt", logs=workers.logs)
    first.kill()  # SIGKILL inside the step's body: nothing journaled for it
    first.wait()
    gate.touch()
    workers.spawn("charger", "--app", f"{APPS}:once", env=env)
    recs = wait_runs(client, keys, [run_id], timeout=120)
    attempts = lines.read_text().splitlines()
    key = attempts[0].removeprefix("attempt ")
    assert attempts == [f"attempt {key}"] * 2, workers.logs()  # at least once: twice, with one key
    assert key.startswith(f"{run_id}.") and key.endswith(":charge")
    assert (tmp_path / "attempts.txt.effects").read_text().splitlines() == [key]  # the effect once
    assert recs[run_id]["status"] == "done" and recs[run_id]["result"] == f"charged {key}"


def test_a_handler_exception_dead_letters_with_type_message_and_frame(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    proc = workers.spawn("boom", "--app", f"{APPS}:failing", env={"BATON_MODEL": "echo"})
    workers.wait_ready(client)
    run_ids = [submit(client, keys, Task(run_id=f"boom-{i}", role="boom", task=f"t{i}", workflow="failing"))
               for i in range(2)]
    recs = wait_runs(client, keys, run_ids, timeout=60)
    for i, run_id in enumerate(run_ids):
        error = recs[run_id]["error"]
        assert recs[run_id]["status"] == "failed", recs
        assert f"ValueError: no good: t{i}" in error and "codeapps.py:" in error and "in boom" in error, error
    dead = {d.run_id: d for d in _dead_letters(client, keys)}
    assert set(dead) == set(run_ids) and dead["boom-0"].attempts == 1  # at once, no retry
    assert proc.poll() is None  # the worker lives on


def test_a_handler_past_its_timeout_is_cancelled_and_counts_a_delivery(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    proc = workers.spawn("sleepy", "--app", f"{APPS}:slow", env={"BATON_MODEL": "echo", "BATON_MAX_DELIVERIES": "2"})
    workers.wait_ready(client)
    run_id = submit(client, keys, Task(run_id="slow-1", role="sleepy", task="zz", workflow="slow"))
    recs = wait_runs(client, keys, [run_id], timeout=60)
    assert recs[run_id]["status"] == "failed", workers.logs()
    assert "delivered 3 times (max_deliveries=2)" in recs[run_id]["error"]
    assert workers.logs().count("ran past its timeout (0.5s)") == 2
    assert proc.poll() is None


def test_concurrent_handlers_model_calls_are_coalesced(
    client: redis.Redis, keys: Keys, workers: Workers, flaky_model: FlakyModelServer
) -> None:
    n = 64
    run_ids = [submit(client, keys, Task(run_id=f"wide-{i}", role="twice", task=f"t{i}", workflow="wide"))
               for i in range(n)]
    workers.spawn("twice", "--app", f"{APPS}:wide", "--concurrency", str(n),
                  env={"BATON_MODEL": flaky_model.url, "BATON_BATCH_SIZE": "32"})
    recs = wait_runs(client, keys, run_ids, timeout=120)
    assert all(r["status"] == "done" for r in recs.values()), workers.logs()
    model_calls = 2 * n
    assert flaky_model.answered <= model_calls // 8, (flaky_model.answered, workers.logs())


def test_a_plain_function_handler_runs_in_a_thread(
    client: redis.Redis, keys: Keys, workers: Workers, flaky_model: FlakyModelServer
) -> None:
    workers.spawn("plain", "--app", f"{APPS}:wide", env={"BATON_MODEL": flaky_model.url})
    run_id = submit(client, keys, Task(run_id="plain-1", role="plain", task="hi", workflow="wide"))
    recs = wait_runs(client, keys, [run_id], timeout=60)
    assert recs[run_id]["status"] == "done", workers.logs()
    assert recs[run_id]["result"].startswith("plain hi")
    wait_for(lambda: flaky_model.answered == 1, timeout=10, what="one model call")


def test_outcomes_fan_out_join_handoff_and_finish_in_one_all_roles_process(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    workers.spawn("--app", f"{APPS}:flow", "--all-roles", env={"BATON_MODEL": "echo"})
    run_id = submit(client, keys, Task(run_id="flow-1", role="splitter", task="x", workflow="flow"))
    rec = wait_runs(client, keys, [run_id], timeout=90)[run_id]
    assert rec["status"] == "done", workers.logs()
    assert rec["result"] == "done: X A | X B | X C"
    assert set(agents_in_run(client, keys, run_id)) == {"splitter", "part", "gatherer", "closer"}
    assert len(scratchpad(client, keys, run_id, "part")) == 3
    (pad,) = scratchpad(client, keys, run_id, "closer")
    assert pad.meta.scratchpad == {"seen": "X A | X B | X C"}


def test_the_run_budget_counts_a_handlers_model_calls(
    client: redis.Redis, keys: Keys, workers: Workers, flaky_model: FlakyModelServer, tmp_path: Path
) -> None:
    lines = tmp_path / "steps.txt"
    workers.spawn("solo", "--app", f"{APPS}:crash", env={"BATON_MODEL": flaky_model.url,
                                                          "BATON_TEST_FILE": str(lines)})
    run_id = submit(client, keys, Task(run_id="budget-1", role="solo", task="t", workflow="crash"),
                    budget=Budget(max_model_calls=2))
    rec = wait_runs(client, keys, [run_id], timeout=60)[run_id]
    assert (rec["status"], rec["error"]) == ("failed", "budget exceeded: 3 of 2 model calls"), workers.logs()
    assert flaky_model.answered == 2 and not lines.exists()


def test_the_notebook_app_gives_the_seed_workflows_outputs(
    client: redis.Redis, keys: Keys, workers: Workers, twin: Path
) -> None:
    workers.spawn("--app", "examples.notebook_app:app", "--all-roles")
    run_id = submit(client, keys, Task(run_id="nb-app", role="planner", task=SEED_TASK, workflow="notebook"))
    rec = wait_runs(client, keys, [run_id], timeout=180)[run_id]
    assert rec["status"] == "done", workers.logs()
    expected = notebook(twin)  # what the TOML seed workflow gives (tests/e2e/test_pipeline.py)
    for agent in ("Alice", "Bob", "Eve"):
        assert [{"task": p.task, "response": p.response} for p in scratchpad(client, keys, run_id, agent)] \
            == expected[agent]
    assert rec["result"] == expected["Eve"][0]["response"]


def test_retry_and_the_apps_retryable_types_deliver_again(client: redis.Redis, keys: Keys, workers: Workers) -> None:
    workers.spawn("patient", "--app", f"{APPS}:again", env={"BATON_MODEL": "echo"})
    run_id = submit(client, keys, Task(run_id="again-1", role="patient", task="t", workflow="again"))
    rec = wait_runs(client, keys, [run_id], timeout=60)[run_id]
    assert (rec["status"], rec["result"]) == ("done", "ok after 3 deliveries"), workers.logs()
    assert _dead_letters(client, keys) == []
    assert workers.logged("will be retried: Retry('not yet')"), workers.logs()


def test_a_code_roles_output_waits_for_review_then_goes_on(client: redis.Redis, keys: Keys, workers: Workers) -> None:
    workers.spawn("--app", f"{APPS}:reviewed", "--all-roles", env={"BATON_MODEL": "echo"})
    run_id = submit(client, keys, Task(run_id="rev-1", role="draft", task="t", workflow="reviewed",
                                       priority="batch"))
    wait_runs(client, keys, [run_id], timeout=60, final=("review",))
    review = find_review(client, keys, run_id)
    assert review is not None and review.output == "draft of t" and review.role == "draft"
    assert scratchpad(client, keys, run_id, "after") == []  # nothing handed off while it waits
    decide(client, keys, review.review_id, "approve", "EDITED")
    rec = wait_runs(client, keys, [run_id], timeout=60)[run_id]
    assert (rec["status"], rec["result"]) == ("done", "final: EDITED"), workers.logs()
    assert client.xlen(keys.run_stream("reviewed", "after", run_id, "batch")) == 1  # the run's lane is kept
