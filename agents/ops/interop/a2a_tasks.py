"""Baton runs as A2A tasks: a run's record and event log in the ``a2a-sdk``'s protobuf types.

An A2A task is a baton run (task id = run id). Its state follows the run record's status
(queued: submitted, running: working, review: input-required, done: completed, failed: failed,
cancelled: canceled). Each hop is an artifact ``hop-<n>-<role>``: the hop's tokens stream into it
(``append``) while the role generates, and its ``hop_finished`` replaces them with the hop's
output. The run's result is the artifact ``result``. A ``review_requested`` event is an
input-required status whose message shows the output under review and how to answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from a2a.types import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from ....broker import RunRecord
from ....protocol import (
    TERMINAL_STATUSES,
    Cancelled,
    Done,
    Event,
    Failed,
    HopFinished,
    HopStarted,
    ReviewDecided,
    ReviewRequested,
    RunStatus,
    Tokens,
    ToolCalled,
    ToolReturned,
)

__all__ = ["CONTEXT_KEY", "MESSAGE_KEY", "REVIEW_HELP", "STOPPED", "A2AEvent", "a2a_events", "message",
           "snapshot", "state_of"]

A2AEvent = Task | TaskStatusUpdateEvent | TaskArtifactUpdateEvent | Message

CONTEXT_KEY = "a2a_context"
"""The run metadata entry holding the A2A context id the task belongs to."""

MESSAGE_KEY = "a2a_message"
"""The run metadata entry holding the id of the message that started the task."""

REVIEW_HELP = ("Reply on this task to decide: 'approve', 'approve: <edited output>', 'reject' or "
               "'reject: <reason>' (or a data part {\"decision\": ..., \"output\": ..., \"reason\": ...}).")

_STATES = {RunStatus.QUEUED: TaskState.TASK_STATE_SUBMITTED, RunStatus.RUNNING: TaskState.TASK_STATE_WORKING,
           RunStatus.REVIEW: TaskState.TASK_STATE_INPUT_REQUIRED, RunStatus.DONE: TaskState.TASK_STATE_COMPLETED,
           RunStatus.FAILED: TaskState.TASK_STATE_FAILED, RunStatus.CANCELLED: TaskState.TASK_STATE_CANCELED}

_PAUSED = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})
"""The A2A states of a task that waits for a person (a stream of it stops there)."""

STOPPED = frozenset({_STATES[s] for s in TERMINAL_STATUSES} | {TaskState.TASK_STATE_REJECTED} | _PAUSED)
"""The A2A states at which a task's stream stops: a run's terminal statuses (``protocol.TERMINAL_STATUSES``),
a refused task, and waiting for a person."""


def state_of(record: RunRecord) -> TaskState.ValueType:
    """The A2A state of a run record."""
    return _STATES.get(record.status, TaskState.TASK_STATE_SUBMITTED)


def message(run_id: str, context_id: str, text: str, *, role: Role.ValueType = Role.ROLE_AGENT,
            message_id: str = "", data: Mapping[str, Any] | None = None) -> Message:
    """An A2A message of the task with one text part (and ``data`` as metadata)."""
    message_id = message_id or f"{run_id}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
    msg = Message(message_id=message_id, context_id=context_id, task_id=run_id, role=role, parts=[Part(text=text)])
    if data:
        msg.metadata.update(dict(data))
    return msg


def _stamp(at: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(at * 1e9))
    return ts


def _status(run_id: str, context_id: str, state: TaskState.ValueType, at: float, text: str = "",
            **data: Any) -> TaskStatus:
    status = TaskStatus(state=state, timestamp=_stamp(at))
    if text:
        status.message.CopyFrom(message(run_id, context_id, text, message_id=f"{run_id}-status-{at:.6f}", data=data))
    return status


def _artifact(artifact_id: str, name: str, text: str, **meta: Any) -> Artifact:
    art = Artifact(artifact_id=artifact_id, name=name, parts=[Part(text=text)])
    if meta:
        art.metadata.update(meta)
    return art


def _hop_artifact_id(hop: int, role: str) -> str:
    return f"hop-{hop}-{role}"


def _review_text(output: str) -> str:
    return f"A person must review this output before the run goes on:\n\n{output}\n\n{REVIEW_HELP}"


def a2a_events(run_id: str, context_id: str, event: Event) -> list[A2AEvent]:
    """What one baton event of the run is in A2A: status and artifact updates (maybe none)."""
    status = TaskStatusUpdateEvent
    working = TaskState.TASK_STATE_WORKING

    def update(state: TaskState.ValueType, text: str = "", **data: Any) -> TaskStatusUpdateEvent:
        return status(task_id=run_id, context_id=context_id,
                      status=_status(run_id, context_id, state, event.at, text, **data))

    def artifact(art: Artifact, *, append: bool, last: bool) -> TaskArtifactUpdateEvent:
        return TaskArtifactUpdateEvent(task_id=run_id, context_id=context_id, artifact=art, append=append,
                                       last_chunk=last)

    hop_id = _hop_artifact_id(event.hop, event.role)
    match event:
        case HopStarted():
            return [update(working, f"{event.role} ({event.agent}) started hop {event.hop}", role=event.role,
                           hop=event.hop)]
        case Tokens():
            return [artifact(_artifact(hop_id, event.role, event.text), append=event.index > 0, last=False)]
        case HopFinished():
            return [artifact(_artifact(hop_id, event.role, event.output, tokens=event.tokens), append=False,
                             last=True)]
        case ToolCalled():
            return [update(working, f"{event.role} called {event.tool}", tool=event.tool,
                           args=json.dumps(event.args))]
        case ToolReturned():
            return [update(working, f"{event.tool} answered {event.role}", tool=event.tool, error=event.error)]
        case ReviewRequested():
            return [update(TaskState.TASK_STATE_INPUT_REQUIRED, _review_text(event.output),
                           review_id=event.review_id, role=event.role, output=event.output)]
        case ReviewDecided():
            return [update(working, f"review {event.decision}d", decision=event.decision)]
        case Done():
            return [artifact(_artifact("result", "result", event.output), append=False, last=True),
                    update(TaskState.TASK_STATE_COMPLETED, event.output)]
        case Failed():
            return [update(TaskState.TASK_STATE_FAILED, event.reason or "the run failed")]
        case Cancelled():
            return [update(TaskState.TASK_STATE_CANCELED, event.reason or "cancelled")]
    return []


def context_of(run_id: str, record: RunRecord) -> str:
    """The A2A context id of a run (the run id when it was not started over A2A)."""
    return record.metadata.get(CONTEXT_KEY) or run_id


def snapshot(run_id: str, record: RunRecord, events: Sequence[tuple[str, Event]], *,
             history_length: int | None = None) -> Task:
    """The task as it stands: its state from the record, its artifacts and history from the log."""
    context_id = context_of(run_id, record)
    state = state_of(record)
    at = record.updated_at or record.created_at
    artifacts: dict[str, Artifact] = {}
    history = [message(run_id, context_id, record.task, role=Role.ROLE_USER,
                       message_id=record.metadata.get(MESSAGE_KEY) or f"{run_id}-task")]
    text = ""
    extra: dict[str, Any] = {}
    for _, event in events:
        if isinstance(event, Tokens):
            hop_id = _hop_artifact_id(event.hop, event.role)
            seen = artifacts.get(hop_id)
            artifacts[hop_id] = _artifact(hop_id, event.role, (seen.parts[0].text if seen else "") + event.text)
        elif isinstance(event, HopFinished):
            hop_id = _hop_artifact_id(event.hop, event.role)
            artifacts[hop_id] = _artifact(hop_id, event.role, event.output, tokens=event.tokens)
        elif isinstance(event, ReviewRequested):
            text, extra = _review_text(event.output), {"review_id": event.review_id, "output": event.output}
            history.append(message(run_id, context_id, text, message_id=f"{run_id}-review-{event.review_id}",
                                   data=extra))
        elif isinstance(event, ReviewDecided):
            history.append(message(run_id, context_id, f"{event.decision}: {event.output or event.reason}".strip(),
                                   role=Role.ROLE_USER, message_id=f"{run_id}-decision-{event.review_id}"))
    if state == TaskState.TASK_STATE_COMPLETED:
        result = record.result
        artifacts["result"] = _artifact("result", "result", result)
        history.append(message(run_id, context_id, result, message_id=f"{run_id}-result"))
        text = result
    elif state in (TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED):
        text = record.error or record.status
    elif state != TaskState.TASK_STATE_INPUT_REQUIRED:
        text = ""
    task = Task(id=run_id, context_id=context_id, status=_status(run_id, context_id, state, at, text, **extra),
                artifacts=list(artifacts.values()))
    if history_length is None or history_length > 0:
        task.history.extend(history[-history_length:] if history_length else history)
    meta = Struct()
    meta.update({"workflow": record.workflow, "status": str(record.status)})
    task.metadata.CopyFrom(meta)
    return task
