"""Threads: conversations that span runs. A thread's turns as stored, and what a message does while a
turn runs.

A run submitted with ``thread=ID`` is a turn of that thread; the thread runs one turn at a time. A
message that arrives while a turn runs follows a :data:`ThreadPolicy`: ``reject`` it, ``enqueue`` it
(it starts when the running turn ends; the default), ``interrupt`` the running turn (it is
cancelled, keeps its turn as ``cancelled``, and the new one starts), or ``rollback`` (as interrupt,
and the cancelled turn leaves no trace in the thread's history).
"""

from __future__ import annotations

import re
from typing import Literal, get_args

import msgspec

from .codec import ProtocolError
from .fields import KEY_SAFE_PATTERN
from .limits import MAX_ID_LENGTH

__all__ = ["DEFAULT_THREAD_POLICY", "THREAD_POLICIES", "ThreadPolicy", "Turn", "check_thread", "render_history",
           "scoped_thread", "unscoped_thread"]

ThreadPolicy = Literal["reject", "enqueue", "interrupt", "rollback"]
"""What a message to a busy thread does (see the module)."""

THREAD_POLICIES: tuple[ThreadPolicy, ...] = get_args(ThreadPolicy)
DEFAULT_THREAD_POLICY: ThreadPolicy = "enqueue"


_THREAD_ID = re.compile(KEY_SAFE_PATTERN)


def check_thread(thread_id: str, policy: str | None = None) -> None:
    """``ProtocolError`` unless ``thread_id`` is a valid thread id (key-safe, like a run id) and
    ``policy`` (when given) one of :data:`THREAD_POLICIES`."""
    if not (0 < len(thread_id) <= MAX_ID_LENGTH and _THREAD_ID.match(thread_id)):
        raise ProtocolError(f"thread id {thread_id[:80]!r} must be 1 to {MAX_ID_LENGTH} letters, digits, '_', '.' "
                            "or '-', starting with a letter or digit")
    if policy is not None and policy not in THREAD_POLICIES:
        raise ProtocolError(f"thread policy {policy!r} is not one of {', '.join(THREAD_POLICIES)}")


def scoped_thread(tenant: str, thread_id: str) -> str:
    """The stored id of ``tenant``'s thread ``thread_id``: a tenant's threads are its own (another
    tenant's same id is another thread, never this one); without a tenant, the id itself."""
    return f"{tenant}:{thread_id}" if tenant else thread_id


def unscoped_thread(tenant: str, stored: str) -> str | None:
    """The id ``tenant`` knows the stored thread ``stored`` by; None when it is not ``tenant``'s
    (without a tenant: every thread, by its stored id)."""
    if not tenant:
        return stored
    prefix = f"{tenant}:"
    return stored[len(prefix):] if stored.startswith(prefix) else None


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """One finished turn of a thread: the run, the task it was given, and how it ended.

    Written by ``broker/lua/library.lua`` (``thread_advance``) when the run ends: ``result`` is the
    run's result (empty unless ``status`` is ``done``), ``error`` why it failed or was cancelled.
    """

    run_id: str
    task: str = ""
    result: str = ""
    status: str = ""
    error: str = ""
    at: float = 0.0


def render_history(turns: list[Turn]) -> str:
    """The ``{history}`` of a prompt template: one ``User:`` and one ``Assistant:`` line per finished
    turn (a turn that did not finish shows its status instead of a reply), oldest first."""
    lines: list[str] = []
    for t in turns:
        lines.append(f"User: {t.task}")
        lines.append(f"Assistant: {t.result}" if t.status == "done" else f"Assistant: ({t.status})")
    return "\n".join(lines)
