"""Helpers for end-to-end tests: the notebook reproduced verbatim, waiting on runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis

from baton.broker import Keys, get_run

SEED_TASK = "Explain the importance of supervised learning."


def notebook(model_path: Path, initial_task: str = SEED_TASK) -> dict[str, list[dict[str, Any]]]:
    """Sections 1-5 of the seed notebook, verbatim but for the model path; returns memories."""
    from transformers import pipeline

    agent_model = pipeline("text-generation", model=str(model_path))

    class Agent:
        def __init__(self, name: str, role: str) -> None:
            self.name = name
            self.role = role
            self.memory: list[dict[str, str]] = []

        def log(self, entry: dict[str, str]) -> None:
            self.memory.append(entry)

        def run(self, task: str) -> str:
            prompt = f"{self.role} agent named {self.name}. Task: {task}\nMemory: {self.memory[-3:]}\nResponse:"
            output: str = agent_model(prompt, max_new_tokens=40)[0]["generated_text"]
            self.log({"task": task, "response": output})
            return output

    planner = Agent("Alice", "Planner")
    researcher = Agent("Bob", "Researcher")
    summarizer = Agent("Eve", "Summarizer")
    planner_output = planner.run(initial_task)
    research_task = f"Research and elaborate: {planner_output}"
    research_output = researcher.run(research_task)
    summary_task = f"Summarize key points: {research_output}"
    summarizer.run(summary_task)
    return {"Alice": planner.memory, "Bob": researcher.memory, "Eve": summarizer.memory}


def wait_runs(client: redis.Redis, keys: Keys, run_ids: list[str], timeout: float = 90,
              final: tuple[str, ...] = ("done", "failed", "cancelled")) -> dict[str, dict[str, str]]:
    """Poll run records until all are final; fail with the statuses seen on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        recs = {r: get_run(client, keys, r) or {} for r in run_ids}
        if all(rec.get("status") in final for rec in recs.values()):
            return recs
        if time.monotonic() > deadline:
            raise TimeoutError({r: rec.get("status") for r, rec in recs.items()})
        time.sleep(0.05)
