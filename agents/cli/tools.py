"""``baton worker --tools NAME...``: a tool worker serving the call streams of some tools."""

from __future__ import annotations

from ..settings import Settings
from ..workflow.spec import Workflow
from .common import CliError

__all__ = ["tool_names", "tool_worker"]


def tool_names(raw: list[str]) -> list[str]:
    """Tool names from ``--tools`` values (repeated, space- or comma-separated), checked and deduplicated."""
    from ..tools import known_tools

    names = list(dict.fromkeys(n.strip() for item in raw for n in item.split(",") if n.strip()))
    unknown = [n for n in names if n not in known_tools()]
    if unknown or not names:
        known = ", ".join(sorted(known_tools()))
        raise CliError(f"unknown tool(s) {', '.join(unknown) or '(none given)'}; known: {known}", 2)
    return names


def tool_worker(s: Settings, wf: Workflow, raw: list[str]) -> int:
    """Run a tool worker until SIGTERM; return its exit code."""
    from ..runtime.logs import context, setup_logging
    from ..tools.worker import ToolWorker

    names = tool_names(raw)
    setup_logging(s.log_format, s.log_level)
    w = ToolWorker(s, names, wf)
    context(role="tools", consumer=w.consumer)
    w.install_signal_handlers()
    return w.run()
