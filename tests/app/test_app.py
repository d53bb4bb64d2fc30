"""``App``, its decorators, the workflow it makes, and ``load_app``'s one-line errors (also through the CLI)."""

from __future__ import annotations

import msgspec
import pytest
import redis

import baton
from baton import App, Context
from baton.agents.app import load_app
from baton.agents.tools.base import ToolContext
from baton.agents.tools.registry import get_tool
from baton.agents.workflow import Workflow, WorkflowError, loads
from baton.agents.workflow.handlers import resolve_handler, resolve_handlers
from baton.agents.workflow.loader import named
from baton.agents.workflow.registry import publish_workflow
from baton.broker import Keys
from tests.app import sample_apps
from tests.cli import baton as baton_cli


def test_app_workflow_is_an_ordinary_workflow_with_handler_references() -> None:
    wf = sample_apps.app.workflow()
    assert isinstance(wf, Workflow)
    assert (wf.name, wf.entry, [r.role for r in wf.order()]) == ("sample", "triage", ["triage", "answer"])
    triage = wf.role("triage")
    assert triage.handler == "tests.app.sample_apps:triage" and triage.next == "answer" and triage.is_code
    assert triage.tools == ["lookup"]  # every @app.tool by default
    assert resolve_handler(triage) is sample_apps.triage
    # the spec survives JSON (what workers register for clients) with its handlers
    again = msgspec.json.decode(msgspec.json.encode(wf), type=Workflow)
    assert again.role("answer").handler == "tests.app.sample_apps:answer"


def test_role_options_and_entry() -> None:
    app = App("opts")

    @app.role(next="b", review="human", timeout=5, max_new_tokens=12, memory="none", tools=[], agent="Ann")
    def a(ctx: Context, task: str) -> str:
        return task

    @app.role("b", entry=True, routes=[{"to": "end", "when": "done"}])
    async def second(ctx: Context, task: str) -> str:
        return task

    wf = app.workflow()
    assert wf.entry == "b"
    spec = wf.role("a")
    assert (spec.review, spec.timeout, spec.max_new_tokens, spec.memory, spec.tools, spec.agent) == (
        "human", 5.0, 12, "none", [], "Ann")
    assert wf.role("b").routes[0].to == "end"


def test_bad_declarations_are_one_line_errors() -> None:
    app = App("bad")
    with pytest.raises(WorkflowError, match=r"cannot be called as \(ctx, task\)"):
        app.role()(sample_apps.wrong_signature)
    with pytest.raises(WorkflowError, match="hands off to undeclared role 'nowhere'"):
        app.role(next="nowhere")(sample_apps.flaky)
        app.workflow()
    with pytest.raises(WorkflowError, match="declares no roles"):
        App("empty").workflow()
    with pytest.raises(WorkflowError, match="review"):
        App("x").role(review="robot")(sample_apps.flaky)


def test_tool_schema_from_type_hints_and_typed_arguments() -> None:
    tool = get_tool("lookup")
    params = tool.parameters  # type: ignore[attr-defined]
    assert params["properties"]["order"] == {"type": "integer"}
    assert params["required"] == ["order"]
    assert tool.description == "Look an order up by number."
    assert tool.run({"order": "7"}, ToolContext()) == "order 7: shipped"  # a step's string args convert
    assert tool.run({"order": 7, "verbose": True}, ToolContext()) == "order 7: shipped (tracked)"
    assert sample_apps.lookup(3) == "order 3: shipped"  # the function stays a function


def test_load_app_by_reference_and_factory() -> None:
    assert load_app("tests.app.sample_apps:app") is sample_apps.app
    assert load_app("tests.app.sample_apps:make_app") is sample_apps.app


@pytest.mark.parametrize(("ref", "message"), [
    ("tests.app.no_such_module:app", "cannot import 'tests.app.no_such_module'.*no module named"),
    ("tests.app.sample_apps:nope", "has no attribute 'nope'"),
    ("tests.app.sample_apps:not_an_app", "is a int, not a baton.App"),
    ("tests.app.broken_app:app", r"RuntimeError: the database URL is not set \(.*broken_app.py:6\)"),
    ("tests.app.bad_signature_app:app", r"planner\(task: str\).*cannot be called as \(ctx, task\)"),
    ("no-colon", "is not 'pkg.module:name'"),
])
def test_load_app_errors(ref: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        load_app(ref)


def test_toml_handler_roles_mix_with_template_roles() -> None:
    text = """
name = "mixed"
entry = "planner"
[[roles]]
role = "planner"
agent = "Alice"
next = "coder"
[[roles]]
role = "coder"
agent = "Bob"
handler = "tests.app.sample_apps:answer"
"""
    wf = loads(text)
    assert not wf.role("planner").is_code and wf.role("coder").is_code
    assert resolve_handlers(wf) == {"coder": sample_apps.answer}
    with pytest.raises(WorkflowError, match="a handler is 'pkg.module:function'"):
        loads(text.replace("sample_apps:answer", "sample_apps"))
    with pytest.raises(WorkflowError, match="has no attribute 'nothing'"):
        resolve_handlers(loads(text.replace(":answer", ":nothing")))
    with pytest.raises(WorkflowError, match="drop steps and parse_tools"):
        loads(text + "parse_tools = true\n")


def test_registered_app_workflow_is_found_by_name(client: redis.Redis, keys: Keys, redis_url: str) -> None:
    with pytest.raises(WorkflowError, match="no app's worker registered it"):
        named("sample", client=client, keys=keys)
    publish_workflow(client, keys, sample_apps.app.workflow())
    assert named("sample", client=client, keys=keys).role("triage").handler == "tests.app.sample_apps:triage"
    with baton.Client(redis_url) as c:
        run = c.submit("where is my order?", workflow="sample")
        assert run.record().workflow == "sample"
    assert client.xlen(keys.run_stream("sample", "triage", run.id)) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["worker", "--app", "tests.app.no_such_module:app", "triage"], "cannot import 'tests.app.no_such_module'"),
    (["worker", "--app", "tests.app.sample_apps:nope", "triage"], "has no attribute 'nope'"),
    (["worker", "--app", "tests.app.bad_signature_app:app", "--all-roles"], "cannot be called as (ctx, task)"),
    (["worker", "--app", "tests.app.broken_app:app", "triage"], "RuntimeError: the database URL is not set"),
    (["worker", "--app", "tests.app.sample_apps:app", "nobody"], "unknown role 'nobody'"),
    (["run", "--app", "tests.app.sample_apps:app", "--workflow", "x.toml", "hi"], "give --app or --workflow"),
])
def test_cli_app_errors_are_one_line(args: list[str], message: str, worker_env: dict[str, str]) -> None:
    done = baton_cli(*args, env=worker_env, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("baton: error: ") and message in lines[0], done.stderr
