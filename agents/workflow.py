"""Roles and the routing between them, as data. The seed notebook's chain is the default.

A ``Workflow`` is a list of ``RoleSpec`` s: who the agent is, how its prompt is built, which
role gets its output next and with what handoff text. The defaults reproduce the notebook:
``f"{role} agent named {name}. Task: {task}\\nMemory: {memory[-3:]}\\nResponse:"``.
"""

from __future__ import annotations

import msgspec

__all__ = ["SEED", "SEED_PROMPT", "RoleSpec", "Workflow", "WorkflowError"]

SEED_PROMPT = "{title} agent named {agent}. Task: {task}\nMemory: {memory}\nResponse:"


class WorkflowError(ValueError):
    """A workflow that cannot be used; the message says what to fix."""


class RoleSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One role: its agent, prompt template, and where its output goes.

    ``prompt`` may use ``{title}``, ``{agent}``, ``{role}``, ``{task}`` and ``{memory}``
    (the agent's last ``memory_window`` scratchpad entries rendered as the notebook does).
    ``handoff`` builds the next role's task from ``{output}``; an empty ``next`` ends the run.
    """

    role: str
    agent: str
    title: str = ""
    prompt: str = SEED_PROMPT
    next: str = ""
    handoff: str = "{output}"
    model: str = ""
    max_new_tokens: int = 0
    memory: str = "run"
    memory_window: int = 3

    @property
    def display(self) -> str:
        """The role's name as the prompt shows it (``title``, else the capitalised role)."""
        return self.title or self.role.capitalize()


class Workflow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A named set of roles; runs start at ``entry``."""

    name: str
    entry: str
    roles: list[RoleSpec]

    def __post_init__(self) -> None:
        names = [r.role for r in self.roles]
        if len(set(names)) != len(names):
            raise WorkflowError(f"workflow {self.name!r}: duplicate role names in {names}")
        if self.entry not in names:
            raise WorkflowError(f"workflow {self.name!r}: entry role {self.entry!r} is not declared")
        for r in self.roles:
            if r.next and r.next not in names:
                raise WorkflowError(f"workflow {self.name!r}: role {r.role!r} hands off to undeclared role {r.next!r}")
            if r.memory not in {"run", "agent", "none"}:
                raise WorkflowError(
                    f"workflow {self.name!r}: role {r.role!r} has memory {r.memory!r}; use run, agent or none"
                )

    def role(self, name: str) -> RoleSpec:
        """The spec of role ``name``; ``WorkflowError`` if the workflow has no such role."""
        for r in self.roles:
            if r.role == name:
                return r
        known = ", ".join(r.role for r in self.roles)
        raise WorkflowError(f"unknown role {name!r} in workflow {self.name!r} (known: {known})")

    def order(self) -> list[RoleSpec]:
        """Roles in handoff order from the entry, then any not reached from it."""
        seen: list[RoleSpec] = []
        current: str = self.entry
        while current and all(r.role != current for r in seen):
            spec = self.role(current)
            seen.append(spec)
            current = spec.next
        return seen + [r for r in self.roles if r not in seen]


SEED = Workflow(
    name="seed",
    entry="planner",
    roles=[
        RoleSpec(role="planner", agent="Alice", next="researcher", handoff="Research and elaborate: {output}"),
        RoleSpec(role="researcher", agent="Bob", next="summarizer", handoff="Summarize key points: {output}"),
        RoleSpec(role="summarizer", agent="Eve"),
    ],
)
