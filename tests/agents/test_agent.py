"""Prompt and handoff rendering match the seed notebook character for character."""

from __future__ import annotations

import pytest

from baton.agents.runtime.prompt import handoff_text, render_memory, render_prompt
from baton.agents.settings import Settings, SettingsError
from baton.agents.workflow.spec import SEED, RoleSpec, Workflow, WorkflowError
from baton.broker import PadEntry, PadMeta


class NotebookAgent:
    """The notebook's Agent, minus the model: its prompt f-string verbatim."""

    def __init__(self, name: str, role: str) -> None:
        self.name, self.role, self.memory = name, role, []  # type: ignore[var-annotated]

    def prompt(self, task: str) -> str:
        return f"{self.role} agent named {self.name}. Task: {task}\nMemory: {self.memory[-3:]}\nResponse:"


@pytest.mark.parametrize(("role", "name", "title"), [("planner", "Alice", "Planner"),
                                                    ("researcher", "Bob", "Researcher"),
                                                    ("summarizer", "Eve", "Summarizer")])
def test_prompt_matches_notebook_with_growing_memory(role: str, name: str, title: str) -> None:
    nb = NotebookAgent(name, title)
    spec = SEED.role(role)
    memory: list[PadEntry] = []
    for i in range(5):
        task = f"task {i} with 'quotes', \"double\" and\nnewlines {{braces}}"
        assert render_prompt(spec, task, memory) == nb.prompt(task)
        entry = {"task": task, "response": f"resp {i} \\ back'slash"}
        nb.memory.append(entry)
        memory.append(PadEntry(**entry, meta=PadMeta(hop=i)))


def test_handoff_templates_match_notebook() -> None:
    out = "Planner output with {braces}"
    assert handoff_text(SEED.role("planner"), out) == f"Research and elaborate: {out}"
    assert handoff_text(SEED.role("researcher"), out) == f"Summarize key points: {out}"
    assert [r.role for r in SEED.order()] == ["planner", "researcher", "summarizer"]
    assert render_memory([]) == "[]"


def test_workflow_validation() -> None:
    with pytest.raises(WorkflowError, match="undeclared role 'nobody'"):
        Workflow(name="w", entry="a", roles=[RoleSpec(role="a", agent="A", next="nobody")])
    with pytest.raises(WorkflowError, match="entry role"):
        Workflow(name="w", entry="zz", roles=[RoleSpec(role="a", agent="A")])
    with pytest.raises(WorkflowError, match="unknown role 'x'"):
        SEED.role("x")


def test_settings_from_env_are_typed() -> None:
    s = Settings.from_env({"REDIS_URL": "rediss://u:p@h:1/0", "BATON_BATCH_SIZE": "16",
                           "BATON_LINGER_MS": "0", "BATON_HEARTBEAT_TTL_S": "2.5"})
    assert (s.redis_url, s.batch_size, s.linger_ms, s.heartbeat_ttl_s) == ("rediss://u:p@h:1/0", 16, 0, 2.5)
    assert Settings.from_env({}).torch_threads == 1
    with pytest.raises(SettingsError, match="BATON_MAX_DELIVERIES"):
        Settings.from_env({"BATON_MAX_DELIVERIES": "many"})
