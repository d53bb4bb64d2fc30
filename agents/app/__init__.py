"""Agents written in Python: ``App``, its ``@app.role`` / ``@app.tool`` decorators, the ``Context`` a
handler gets, the outcomes it may choose, ``Retry``, and ``load_app`` for workers and clients."""

from .app import App
from .context import AppServices, Context, ToolFailed
from .failures import Retry, failure_reason, is_transient
from .handler import run_handler
from .loader import app_workflow, load_app
from .outcome import BadReturn, Fail, FanOut, Finish, Handoff, Next, Outcome, as_outcome
from .runner import AppRunner
from .waits import WaitTimeout

__all__ = [
    "App",
    "AppRunner",
    "AppServices",
    "BadReturn",
    "Context",
    "FanOut",
    "Fail",
    "Finish",
    "Handoff",
    "Next",
    "Outcome",
    "Retry",
    "ToolFailed",
    "WaitTimeout",
    "app_workflow",
    "as_outcome",
    "failure_reason",
    "is_transient",
    "load_app",
    "run_handler",
]
