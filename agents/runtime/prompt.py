"""What one agent does with a task: build the prompt from its memory, and the handoff text.

Pure functions, no I/O: rendering must match the seed notebook character for character.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...broker.pads import Memory
from ..workflow.spec import RoleSpec

__all__ = ["handoff_text", "notebook_memory", "render_memory", "render_prompt"]


def notebook_memory(entries: Sequence[Memory]) -> list[dict[str, str]]:
    """Entries as the notebook's agents keep them: ``task`` and ``response``, oldest first."""
    return [{"task": e.task, "response": e.response} for e in entries]


def render_memory(entries: Sequence[Memory], window: int = 3) -> str:
    """Render the last ``window`` entries as the notebook's ``{self.memory[-3:]}`` does."""
    memory = notebook_memory(entries)
    return str(memory[-window:] if window > 0 else [])


def render_prompt(spec: RoleSpec, task: str, memory: Sequence[Memory]) -> str:
    """The prompt ``spec``'s agent sends to the model for ``task``."""
    return spec.prompt.format(
        title=spec.display,
        role=spec.role,
        agent=spec.agent,
        task=task,
        memory=render_memory(memory, spec.memory_window) if spec.memory != "none" else "[]",
    )


def handoff_text(spec: RoleSpec, output: str) -> str:
    """The task text the next role receives from ``output``."""
    return spec.handoff.format(output=output)
