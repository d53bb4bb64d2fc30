"""Workflows beyond the chain, run by in-process workers on the twin and a real Redis."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import redis

from baton.agents.backends import EchoBackend
from baton.agents.runtime.routing import PART_SEPARATOR
from baton.agents.tools import ToolContext, register
from baton.agents.tools.registry import _tools
from baton.agents.workflow import loader as workflows
from baton.agents.workflow.spec import RoleSpec, ToolStep, Workflow
from baton.broker import Keys, agents_in_run, get_run, scratchpad, submit
from baton.broker.memory import read_shared
from baton.protocol import Result, Task, decode
from tests.workflows.conftest import Inline

FANOUT = workflows.load(Path("research_fanout"))


def _run(client: redis.Redis, keys: Keys, wf: Workflow, run_id: str, text: str, **kw: object) -> str:
    return submit(client, keys, Task(run_id=run_id, role=wf.entry, task=text, workflow=wf.name, **kw))  # type: ignore[arg-type]


def test_fanout_splits_runs_each_part_once_and_the_join_sees_all(
    client: redis.Redis, keys: Keys, inline: Inline
) -> None:
    inline.start(FANOUT)
    run_id = _run(client, keys, FANOUT, "fan-1", "Explain the importance of supervised learning.")
    inline.drain()
    rec = get_run(client, keys, run_id)
    assert rec is not None and rec["status"] == "done", rec
    assert agents_in_run(client, keys, run_id) == ["Alice", "Bob", "Eve"]
    bob = scratchpad(client, keys, run_id, "Bob")
    assert sorted(e.meta.part for e in bob) == [0, 1, 2]
    assert {e.meta.parts for e in bob} == {3}
    assert all(e.task.startswith(f"Research topic {e.meta.part + 1} of 3: ") for e in bob)
    # the declared tool step ran before prompting; its call and result are in the scratchpad
    for e in bob:
        (call,) = e.meta.tools
        assert call.tool == "kb_search" and call.error == "" and call.args["query"] == e.task
        assert f"Knowledge base:\n[kb_search] {call.output}" in e.response
    (eve,) = scratchpad(client, keys, run_id, "Eve")
    parts = eve.task.split(PART_SEPARATOR)
    assert [p.split(":")[0] for p in parts] == [f"Findings on topic {i} of 3" for i in (1, 2, 3)]
    shared = read_shared(client, keys, run_id)
    assert shared["goal"] == "Explain the importance of supervised learning."
    assert sorted(shared) == ["finding_1", "finding_2", "finding_3", "goal"]
    (_, fields), = client.xrange(keys.results())
    result = decode(fields[b"msg"])
    assert isinstance(result, Result) and result.output == rec["result"]
    assert [h.role for h in result.trace].count("researcher") == 3


def test_join_is_idempotent_when_a_part_is_redelivered(client: redis.Redis, keys: Keys, inline: Inline) -> None:
    planner, researcher = inline.start(FANOUT, "planner", "researcher")
    run_id = _run(client, keys, FANOUT, "fan-redeliver", "Topic")
    for w in (planner, researcher):
        w.process(w.streams.read(pending=False, count=8, block_ms=None))
    (summarizer,) = inline.start(FANOUT, "summarizer")
    first = summarizer.streams.read(pending=False, count=1, block_ms=None)
    summarizer.process(first)  # part parked and acked
    assert client.hlen(keys.join(run_id, decode(first[0].data or b"").group)) == 1  # type: ignore[union-attr]
    client.xadd(first[0].stream, {"msg": first[0].data or b""})  # the same part arrives again
    inline.drain()
    assert get_run(client, keys, run_id)["status"] == "done"  # type: ignore[index]
    (eve,) = scratchpad(client, keys, run_id, "Eve")
    assert len(eve.task.split(PART_SEPARATOR)) == 3
    assert client.xlen(keys.results()) == 1
    client.xadd(first[0].stream, {"msg": first[0].data or b""})  # and once more after the join
    inline.drain()
    assert len(scratchpad(client, keys, run_id, "Eve")) == 1 and client.xlen(keys.results()) == 1


def test_shared_memory_is_seen_across_agents_of_a_run_and_not_by_another_run(
    client: redis.Redis, keys: Keys, inline: Inline
) -> None:
    inline.start(FANOUT)
    a = _run(client, keys, FANOUT, "run-alpha", "Topic alpha")
    b = _run(client, keys, FANOUT, "run-beta", "Topic beta")
    inline.drain()
    assert read_shared(client, keys, a)["goal"] == "Topic alpha"
    assert read_shared(client, keys, b)["goal"] == "Topic beta"
    for run_id, mine, other in ((a, "alpha", "beta"), (b, "beta", "alpha")):
        for e in scratchpad(client, keys, run_id, "Bob"):  # written by Alice, read by Bob
            assert f"Shared memory: goal: Topic {mine}" in e.response
            assert other not in e.response


ROUTED = workflows.loads(b'''
name = "routed"
entry = "checker"
[[roles]]
role = "checker"
agent = "Carol"
tools = ["calculator"]
steps = [{ tool = "calculator", args = { expression = "{task}" } }]
prompt = "{title} agent named {agent}. Check {task}: {tools}\\nResponse:"
next = "refuter"
routes = [
  { when = '^\\[calculator\\] 4$', source = "tools", to = "confirmer" },
  { when = 'error', source = "tools", to = "end" },
]
handoff = "{tools}"
[[roles]]
role = "confirmer"
agent = "Dan"
[[roles]]
role = "refuter"
agent = "Fay"
''', source="routed")


def test_conditional_routing_on_a_tool_result(client: redis.Redis, keys: Keys, inline: Inline) -> None:
    inline.start(ROUTED)
    runs = {"2+2": "r-four", "2+3": "r-five", "2/0": "r-err"}
    for expr, run_id in runs.items():
        _run(client, keys, ROUTED, run_id, expr)
    inline.drain()
    assert agents_in_run(client, keys, "r-four") == ["Carol", "Dan"]
    assert agents_in_run(client, keys, "r-five") == ["Carol", "Fay"]
    assert agents_in_run(client, keys, "r-err") == ["Carol"]  # routed to the end
    assert all(get_run(client, keys, r)["status"] == "done" for r in runs.values())  # type: ignore[index]
    (dan,) = scratchpad(client, keys, "r-four", "Dan")
    assert dan.task == "[calculator] 4"
    (carol,) = scratchpad(client, keys, "r-err", "Carol")
    assert carol.meta.tools[0].error == "division by zero"


LOOP = workflows.loads(b'''
name = "loop"
entry = "echo"
[[roles]]
role = "echo"
agent = "Ed"
memory = "none"
routes = [{ when = ".", to = "echo" }]
handoff = "again"
''', source="loop")


def test_max_hops_guard_stops_a_routing_loop(client: redis.Redis, keys: Keys, inline: Inline) -> None:
    inline.start(LOOP)
    run_id = _run(client, keys, LOOP, "r-loop", "go", max_hops=4)
    inline.drain()
    rec = get_run(client, keys, run_id)
    assert rec is not None and rec["status"] == "failed" and "hop limit" in rec["error"]
    assert len(scratchpad(client, keys, run_id, "Ed")) == 4
    assert client.xlen(keys.dead()) == 1


AGENT_MEMORY = workflows.loads(b'''
name = "remembering"
entry = "diary"
[[roles]]
role = "diary"
agent = "Ann"
memory = "agent"
''', source="remembering")


def test_agent_memory_spans_runs_only_when_asked(client: redis.Redis, keys: Keys, inline: Inline) -> None:
    inline.start(AGENT_MEMORY)
    _run(client, keys, AGENT_MEMORY, "day-1", "first day")
    inline.drain()
    _run(client, keys, AGENT_MEMORY, "day-2", "second day")
    inline.drain()
    (entry,) = scratchpad(client, keys, "day-2", "Ann")
    assert "'task': 'first day'" in entry.response  # run 1's entry is in run 2's prompt
    assert client.hlen(keys.agent_pad("Ann")) == 2
    assert not client.exists(keys.agent_pad("Alice"))


class _Counting:
    """A real tool that counts its calls (the test reads the count)."""

    name = "test_counting"
    description = "counts its calls"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def run(self, args: Mapping[str, str], ctx: ToolContext) -> str:
        self.calls.append(args["q"])
        return f"seen {args['q']}"


def test_a_failed_batch_runs_each_declared_tool_step_once(
    client: redis.Redis, keys: Keys, redis_url: str
) -> None:
    counting = _Counting()
    register(counting, replace=True)
    try:
        spec = RoleSpec(role="planner", agent="Alice", tools=["test_counting"],
                        steps=[ToolStep(tool="test_counting", args={"q": "{task}"})])
        wf = Workflow(name="stepped", entry="planner", roles=[spec])
        inline = Inline(redis_url, EchoBackend(fault_injection=True), client)
        (worker,) = inline.start(wf, batch_size=8)
        texts = ["fine one", "fine two", "[[fault:raise:1]] fails once in the batch"]
        runs = [_run(client, keys, wf, f"step-{i}", text) for i, text in enumerate(texts)]
        inline.drain()
        assert sorted(counting.calls) == sorted(texts)  # the fallback re-ran the model call only
        assert worker.failed == 0 and worker.processed == 3
        assert all((get_run(client, keys, r) or {}).get("status") == "done" for r in runs)
        assert int(client.hget(keys.run(runs[0]), "hops") or 0) == 1
    finally:
        _tools.pop("test_counting", None)
