"""The seed notebook's agents, verbatim but for where the model comes from.

The reference the benchmark (``python -m bench.inproc seed``) runs and the end-to-end tests compare
baton against: ``Agent`` is sections 2-3 of the notebook, ``run_notebook`` sections 4-5.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["SEED_TASK", "Agent", "run_notebook"]

SEED_TASK = "Explain the importance of supervised learning."
"""The notebook's initial task."""


class Agent:
    """A notebook agent: a name, a role, a memory of its tasks and responses, and the shared model."""

    def __init__(self, name: str, role: str, agent_model: Callable[..., Any]) -> None:
        self.name = name
        self.role = role
        self.memory: list[dict[str, str]] = []
        self.agent_model = agent_model

    def log(self, entry: dict[str, str]) -> None:
        self.memory.append(entry)

    def run(self, task: str) -> str:
        prompt = f"{self.role} agent named {self.name}. Task: {task}\nMemory: {self.memory[-3:]}\nResponse:"
        output: str = self.agent_model(prompt, max_new_tokens=40)[0]["generated_text"]
        self.log({"task": task, "response": output})
        return output


def run_notebook(agent_model: Callable[..., Any], initial_task: str = SEED_TASK) -> dict[str, list[dict[str, str]]]:
    """One run of the notebook's three agents (fresh agents); returns each agent's memory by name."""
    planner = Agent("Alice", "Planner", agent_model)
    researcher = Agent("Bob", "Researcher", agent_model)
    summarizer = Agent("Eve", "Summarizer", agent_model)
    planner_output = planner.run(initial_task)
    research_task = f"Research and elaborate: {planner_output}"
    research_output = researcher.run(research_task)
    summary_task = f"Summarize key points: {research_output}"
    summarizer.run(summary_task)
    return {"Alice": planner.memory, "Bob": researcher.memory, "Eve": summarizer.memory}
