"""Workflow files: TOML decoded into ``Workflow`` Structs, with one-line errors on bad files."""

from __future__ import annotations

from pathlib import Path

import msgspec

from agents.workflow import Workflow, WorkflowError

__all__ = ["load", "loads"]


def loads(text: str | bytes, *, source: str = "<workflow>") -> Workflow:
    """Decode a workflow from TOML text; ``WorkflowError`` names the file and the problem."""
    try:
        return msgspec.toml.decode(text, type=Workflow)
    except msgspec.ValidationError as exc:
        raise WorkflowError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise WorkflowError(f"{source}: not valid TOML: {exc}") from None


def load(path: Path) -> Workflow:
    """Read and decode a workflow file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkflowError(f"cannot read workflow file {path}: {exc.strerror}") from None
    return loads(data, source=str(path))
