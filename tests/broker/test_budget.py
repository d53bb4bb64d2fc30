"""Per-run budgets: the ``Budget`` rules, and ``lua/budget.lua`` (reserve, refuse, settle, count
tool calls) against a real Redis."""

from __future__ import annotations

import msgspec
import pytest
import redis

from baton.agents.workflow.loader import loads
from baton.agents.workflow.spec import WorkflowError
from baton.broker import Keys, get_run, submit
from baton.broker.budget import ModelCall, count_tool_call, reserve_model_calls, settle_model_calls, usage
from baton.protocol import Budget, Task, schema


def test_budget_rules() -> None:
    assert Budget.of(1200, None, 3) == Budget(max_tokens=1200, max_tool_calls=3)
    assert Budget.of(1200).limits() == {"max_tokens": 1200}
    for bad in ({"max_tokens": 0}, {"max_model_calls": -1}, {"max_tool_calls": "x"}, {"max_calls": 3}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, Budget)
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int` >= 1 - at `\$.max_tokens`"):
        Budget.of(max_tokens=0)
    assert Budget(max_tokens=5).over(Budget(max_tokens=9, max_model_calls=2)) == Budget(max_tokens=5,
                                                                                          max_model_calls=2)
    rules = schema()["budget"]
    assert rules == {"$ref": "#/$defs/Budget"}
    assert schema()["$defs"]["Budget"]["properties"]["max_tokens"]["anyOf"][0]["minimum"] == 1  # type: ignore[index]


def test_workflow_budget_defaults_and_bad_values() -> None:
    text = ('name = "b"\nentry = "a"\n[budget]\nmax_tokens = 500\nmax_model_calls = 4\n'
            '[[roles]]\nrole = "a"\nagent = "A"\n')
    wf = loads(text)
    assert wf.run_budget() == Budget(max_tokens=500, max_model_calls=4)
    assert wf.run_budget(Budget(max_model_calls=9, max_tool_calls=1)) == Budget(max_tokens=500, max_model_calls=9,
                                                                                  max_tool_calls=1)
    with pytest.raises(WorkflowError, match=r"Expected `int` >= 1 - at `\$.budget.max_tokens`"):
        loads(text.replace("max_tokens = 500", "max_tokens = 0"))
    with pytest.raises(WorkflowError, match="unknown field `max_cost`"):
        loads(text.replace("max_tokens = 500", "max_cost = 5"))


def _run(client: redis.Redis, keys: Keys, budget: Budget | None, run_id: str = "r1") -> str:
    return submit(client, keys, Task(run_id=run_id, role="planner", task="t"), budget=budget)


def _call(msg: str, tokens: int, *, role: str = "planner", called: bool = True, run_id: str = "r1") -> ModelCall:
    return ModelCall(run_id=run_id, msg_id=msg, role=role, model="echo", tokens=tokens, called=called)


def test_reserve_settle_and_refuse_tokens(client: redis.Redis, keys: Keys) -> None:
    _run(client, keys, Budget(max_tokens=1200))
    assert reserve_model_calls(client, keys, [_call("a", 400)]) == [""]
    settle_model_calls(client, keys, [_call("a", 240)])  # 160 of the reservation given back
    settle_model_calls(client, keys, [_call("a", 240)])  # a second settle of the same call counts nothing
    assert reserve_model_calls(client, keys, [_call("b", 500), _call("b", 500)]) == ["", ""]  # a redelivery replaces
    assert reserve_model_calls(client, keys, [_call("c", 500)]) == ["budget exceeded: 1,240 of 1,200 tokens"]
    rec = get_run(client, keys, "r1") or {}
    assert (rec["tokens"], rec["reserved_tokens"], rec["reserved_calls"]) == ("240", "500", "1")
    assert rec["budget_exceeded"] == "budget exceeded: 1,240 of 1,200 tokens"
    assert reserve_model_calls(client, keys, [_call("d", 1)]) == ["budget exceeded: 1,240 of 1,200 tokens"]
    settle_model_calls(client, keys, [_call("b", 0, called=False)])  # the call did not happen: given back
    u = usage(get_run(client, keys, "r1") or {})
    assert (u.tokens, u.model_calls, u.tokens_by_role, u.model_calls_by_role, u.tokens_by_model) == (
        240, 1, {"planner": 240}, {"planner": 1}, {"echo": 240})
    assert u.budget == Budget(max_tokens=1200) and u.exceeded.startswith("budget exceeded")
    assert u.cost({"echo": 2.0}) == pytest.approx(0.48) and u.cost({"other": 1.0}) is None


def test_model_calls_are_counted_per_prompt_and_per_role(client: redis.Redis, keys: Keys) -> None:
    _run(client, keys, Budget(max_model_calls=4))
    calls = [_call("a", 10), _call("b", 10, role="researcher"), _call("c", 10, role="researcher")]
    assert reserve_model_calls(client, keys, calls) == ["", "", ""]
    settle_model_calls(client, keys, calls)
    assert reserve_model_calls(client, keys, [_call("d", 10), _call("e", 10)]) == [
        "", "budget exceeded: 5 of 4 model calls"]
    u = usage(get_run(client, keys, "r1") or {})
    assert (u.model_calls, u.model_calls_by_role, u.tokens_by_role) == (3, {"planner": 1, "researcher": 2},
                                                                        {"planner": 10, "researcher": 20})


def test_tool_calls_and_runs_without_budget_or_record(client: redis.Redis, keys: Keys) -> None:
    _run(client, keys, Budget(max_tool_calls=2))
    _run(client, keys, None, run_id="free")
    assert [count_tool_call(client, keys, "r1", "researcher") for _ in range(3)] == [
        "", "", "budget exceeded: 3 of 2 tool calls"]
    assert [count_tool_call(client, keys, "free", "researcher") for _ in range(3)] == ["", "", ""]
    assert reserve_model_calls(client, keys, [_call("a", 10**6, run_id="free")]) == [""]
    u = usage(get_run(client, keys, "r1") or {})
    assert (u.tool_calls, u.tool_calls_by_role) == (2, {"researcher": 2})
    assert reserve_model_calls(client, keys, [_call("x", 1, run_id="gone")]) == [""]
    count_tool_call(client, keys, "gone", "researcher")
    assert not client.exists(keys.run("gone"))  # an expired or unknown record is never re-created
    assert "max_tokens" not in (get_run(client, keys, "free") or {})


def test_only_runs_with_model_limits_need_a_reservation_and_the_read_shares_the_guard_round_trip(
        client: redis.Redis, keys: Keys) -> None:
    from baton.broker import before_run

    _run(client, keys, None, "free")
    _run(client, keys, Budget(max_tool_calls=2), "tools")
    _run(client, keys, Budget(max_tokens=100), "capped")
    client.hset(keys.run("tools"), "budget_exceeded", "budget exceeded: 3 of 2 tool calls")
    calls0 = client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0)
    read = before_run(client, keys, ["free", "capped", "gone", "free"], [("free", "Alice")])
    assert read.limited == [False, True, False, False] and read.cancelled == [False] * 4 and read.pads == [[]]
    assert client.info("commandstats")["cmdstat_hmget"]["calls"] - calls0 == 3  # once per run, same pipeline
    assert before_run(client, keys, ["tools"], []).limited == [True]  # already refused: the reservation refuses
    assert before_run(client, keys, ["capped"], [], budgets=False).limited == [False]


def test_usage_counted_with_a_commit_reads_as_settled_usage(client: redis.Redis, keys: Keys) -> None:
    from baton.broker import Handoff, Outcome, RoleStreams, commit
    from baton.broker.budget import usage_counts

    _run(client, keys, None, "u1")
    streams = RoleStreams(client, keys, "seed", "planner", "c")
    streams.ensure_groups()
    entry, = streams.read(pending=False, count=1, block_ms=100)
    h = Handoff(entry=entry, run_id="u1", msg_id="m1", record={"status": "running"},
                counts=usage_counts("planner", "echo", 7))
    assert commit(client, keys, "planner", "c", [h]) == [Outcome.COMMITTED]
    assert commit(client, keys, "planner", "c", [h]) == [Outcome.STALE]  # acked: counted once
    u = usage(get_run(client, keys, "u1") or {})
    assert (u.tokens, u.model_calls, u.tokens_by_role, u.tokens_by_model) == (7, 1, {"planner": 7}, {"echo": 7})
