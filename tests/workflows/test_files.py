"""Workflow files: decoding, validation, one-line CLI errors, the shipped workflows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from baton.agents.workflow import loader as workflows
from baton.agents.workflow.spec import SEED, WorkflowError
from tests.conftest import ROOT

GOOD = """
name = "ok"
entry = "a"
[[roles]]
role = "a"
agent = "A"
next = "b"
[[roles]]
role = "b"
agent = "B"
"""

BAD = {
    "toml": ("name = 'x\n", "not valid TOML"),
    "unknown_field": (GOOD + "colour = 'red'\n", "unknown field `colour`"),
    "missing_role": (GOOD.replace('next = "b"', 'next = "c"'), "hands off to undeclared role 'c'"),
    "template": (GOOD + "prompt = 'Task: {tsk}'\n", "template field {tsk} is unknown"),
    "tool": (GOOD + "tools = ['shell']\n", "unknown tool 'shell'"),
    "step_not_allowed": (GOOD + "steps = [{tool = 'clock'}]\n", "not in the role's tools list"),
    "route": (GOOD + "routes = [{when = '(', to = 'a'}]\n", "not a valid regex"),
    "split_without_join": (GOOD.replace('next = "b"', 'next = "b"\nsplit = {count = 2}'), "no role has join"),
    "split_rule": (GOOD.replace('next = "b"', 'next = "b"\nsplit = {by = "words"}') + "join = true\n",
                   "Invalid enum value 'words' - at `$.roles[0].split.by` (use chunks, copies, lines or sentences)"),
    "split_count": (GOOD.replace('next = "b"', 'next = "b"\nsplit = {count = 65}') + "join = true\n",
                    "Expected `int` <= 64 - at `$.roles[0].split.count`"),
    "memory": (GOOD + "memory = 'forever'\n", "at `$.roles[1].memory` (use agent, none or run)"),
    "route_source": (GOOD + "routes = [{when = 'x', to = 'a', source = 'mood'}]\n",
                     "(use continuation, output or tools)"),
    "tool_timeout": (GOOD + "[tools.clock]\ntimeout = 0\n", "Expected `float` > 0.0 - at `$.tools[...].timeout`"),
    "role_name": (GOOD.replace('role = "b"', 'role = "b c"').replace('next = "b"', 'next = "b c"'),
                  "matching regex"),
    "empty_agent": (GOOD.replace('agent = "B"', 'agent = ""'), "Expected `str` of length >= 1 - at `$.roles[1].agent`"),
    "workflow_name": (GOOD.replace('name = "ok"', 'name = "ok:*"'), "- at `$.name`"),
}


def test_good_file_and_defaults() -> None:
    wf = workflows.loads(GOOD)
    assert [r.role for r in wf.order()] == ["a", "b"] and wf.roles[0].tools == [] and wf.roles[0].split is None
    assert SEED.roles[0].prompt == "{title} agent named {agent}. Task: {task}\nMemory: {memory}\nResponse:"


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_name_the_problem(case: str) -> None:
    text, why = BAD[case]
    with pytest.raises(WorkflowError, match="^bad.toml: ") as exc:
        workflows.loads(text, source="bad.toml")
    assert why in str(exc.value) and "\n" not in str(exc.value)


def test_shipped_workflows_load_by_name_and_path() -> None:
    assert "research_fanout" in workflows.packaged()
    by_name = workflows.load(Path("research_fanout"))
    by_path = workflows.load(ROOT / "agents" / "workflow" / "shipped" / "research_fanout.toml")
    assert by_name == by_path and (Path(by_name.base_dir) / "kb").is_dir()


@pytest.mark.parametrize("argv", [["workflow", "check"], ["run", "--workflow"]])
def test_cli_bad_workflow_is_one_line(argv: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD["missing_role"][0])
    cmd = [sys.executable, "-m", "baton", *argv, str(bad)] + (["some task"] if argv[0] == "run" else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stderr == f"baton: error: {bad}: workflow 'ok': role 'a' hands off to undeclared role 'c'\n"
    missing = subprocess.run([sys.executable, "-m", "baton", "workflow", "check", "nope.toml"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "nope.toml" in missing.stderr


def test_cli_check_prints_the_routing() -> None:
    proc = subprocess.run([sys.executable, "-m", "baton", "workflow", "check", "research_fanout"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: workflow 'research_fanout', entry 'planner', 3 roles")
    assert "join" in proc.stdout and "kb_search" in proc.stdout
