"""Code roles' handlers: ``"pkg.module:function"`` references resolved to callables, and checked.

A role's ``handler`` is a reference, so a workflow stays data (TOML, JSON in Redis). An ``App``
registers the functions it decorates under their references (``module:qualname``), so a process
that loaded the app resolves them without importing anything again; other references are imported
(the current directory and the workflow file's directory are searched first, as ``celery -A`` and
``uvicorn`` do). Every failure is a one-line ``WorkflowError``: a module that does not import, a
missing attribute, something that is not a function of ``(ctx, task)``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from .spec import RoleSpec, Workflow, WorkflowError

__all__ = ["check_handler", "handler_ref", "import_object", "register_handler", "resolve_handler",
           "resolve_handlers"]

Handler = Callable[..., Any]
_registry: dict[str, Handler] = {}


def handler_ref(fn: Handler) -> str:
    """The reference ``module:qualname`` of function ``fn`` (a function defined inside another has
    ``.<locals>`` dropped: resolvable in the process that registered it, not by importing)."""
    return f"{fn.__module__}:{fn.__qualname__.replace('.<locals>', '')}"


def register_handler(fn: Handler) -> str:
    """Register ``fn`` (checked) under its reference; return the reference."""
    check_handler(fn, handler_ref(fn))
    ref = handler_ref(fn)
    _registry[ref] = fn
    return ref


def check_handler(fn: object, where: str) -> None:
    """``WorkflowError`` unless ``fn`` can be called as ``fn(ctx, task)`` (async or plain)."""
    if not callable(fn):
        raise WorkflowError(f"{where} is a {type(fn).__name__}, not a function (ctx, task)")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise WorkflowError(f"{where} is a generator; a handler returns a str or an Outcome")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to check
    try:
        sig.bind(None, "")
    except TypeError:
        raise WorkflowError(f"{where}{sig} cannot be called as (ctx, task): a handler takes (ctx: Context, task: str)"
                            ) from None


def import_object(ref: str, *, search: str = "") -> Any:
    """The object ``pkg.module:attr.path`` names; ``WorkflowError`` with one line when it cannot."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise WorkflowError(f"{ref!r} is not 'pkg.module:name'")
    for path in (search, os.getcwd()):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise WorkflowError(f"cannot import {module_name!r} for {ref!r}: no module named {exc.name!r}") from None
        raise WorkflowError(f"cannot import {module_name!r} for {ref!r}: {exc}") from None
    except WorkflowError:
        raise  # the module's own app declaration is wrong: that message says what
    except Exception as exc:
        raise WorkflowError(f"cannot import {module_name!r} for {ref!r}: {_innermost(exc)}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise WorkflowError(f"{ref!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _innermost(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" ({tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})" if tb is not None else ""
    return f"{type(exc).__name__}: {exc}{where}"


def resolve_handler(spec: RoleSpec, *, search: str = "") -> Handler:
    """The callable of code role ``spec`` (registered by an app, else imported), checked."""
    if not spec.handler:
        raise WorkflowError(f"role {spec.role!r} has no handler")
    fn = _registry.get(spec.handler)
    if fn is None:
        fn = import_object(spec.handler, search=search)
        check_handler(fn, f"handler {spec.handler!r} of role {spec.role!r}")
        _registry[spec.handler] = fn
    return fn


def resolve_handlers(wf: Workflow) -> dict[str, Handler]:
    """Every code role's handler of ``wf`` by role (one-line ``WorkflowError`` for the first bad one)."""
    return {r.role: resolve_handler(r, search=wf.base_dir) for r in wf.roles if r.handler}
