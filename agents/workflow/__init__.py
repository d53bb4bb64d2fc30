"""Workflows as data: the spec (msgspec Structs), the TOML loader and the workflows shipped with baton."""

from .loader import load, loads, named, packaged, validate_tools
from .spec import (
    END,
    SEED,
    SEED_PROMPT,
    MCPServerSpec,
    RoleSpec,
    Route,
    Split,
    ToolConfig,
    ToolStep,
    Workflow,
    WorkflowError,
)

__all__ = [
    "END",
    "SEED",
    "SEED_PROMPT",
    "MCPServerSpec",
    "RoleSpec",
    "Route",
    "Split",
    "ToolConfig",
    "ToolStep",
    "Workflow",
    "WorkflowError",
    "load",
    "loads",
    "named",
    "packaged",
    "validate_tools",
]
