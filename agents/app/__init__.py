"""Agents written in Python: ``App``, its ``@app.role`` / ``@app.tool`` decorators, the ``Context`` a
handler gets, the outcomes it may choose, ``Retry``, and ``load_app`` for workers and clients."""

from baton.agents.app.app import App
from baton.agents.app.context import AppServices, Context, ToolFailed
from baton.agents.app.failures import Retry, failure_reason, is_transient
from baton.agents.app.handler import run_handler
from baton.agents.app.loader import app_workflow, load_app
from baton.agents.app.outcome import BadReturn, Fail, FanOut, Finish, Handoff, Next, Outcome, as_outcome
from baton.agents.app.runner import AppRunner
from baton.agents.app.waits import WaitTimeout

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
