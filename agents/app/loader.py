"""``load_app("pkg.module:app")``: the ``App`` (or ``Workflow``) a worker or client is pointed at.

Everything that can go wrong is a one-line ``WorkflowError`` (the CLI prints it and exits non-zero):
a module that does not import (with the exception's type, message and innermost frame), a missing
attribute, an object that is not an app, an app whose roles do not fit together, a handler with the
wrong signature.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..workflow.handlers import import_object, resolve_handlers
from ..workflow.spec import Workflow, WorkflowError
from .app import App

__all__ = ["app_workflow", "load_app"]


def load_app(ref: str) -> App:
    """The ``App`` that ``pkg.module:attr`` names (the current directory is on the import path)."""
    obj: Any = import_object(ref)
    if callable(obj) and not isinstance(obj, App | type) and _no_arguments(obj):
        try:
            obj = obj()  # an app factory, as uvicorn --factory / celery -A accept
        except Exception as exc:
            raise WorkflowError(f"{ref!r}: calling the app factory raised {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, App):
        raise WorkflowError(f"{ref!r} is a {type(obj).__name__}, not a baton.App")
    return obj


def _no_arguments(fn: Any) -> bool:
    try:
        inspect.signature(fn).bind()
    except (TypeError, ValueError):
        return False
    return True


def app_workflow(ref: str) -> Workflow:
    """The workflow of the app ``ref`` names, every handler resolved and checked."""
    wf = load_app(ref).workflow()
    resolve_handlers(wf)
    return wf
