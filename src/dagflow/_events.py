"""What happened during a run: the seed's ``WorkflowEvent`` variants and the contract's
additions, each a frozen value with its per-instance sequence number.

Every event has ``seq`` (1, 2, 3, ... per instance, no gaps), ``instance_id`` and
``timestamp``. As JSON (through the one converter) an event is a flat object tagged with
its class name: ``{"type": "TaskStarted", "seq": 3, "instance_id": "...", ...}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ._models import TaskOutput

__all__ = [
    "EVENT_TYPES",
    "ApprovalExpired",
    "ApprovalGranted",
    "ApprovalRejected",
    "ApprovalRequired",
    "CheckpointCreated",
    "NotificationFailed",
    "NotificationSent",
    "RollbackCompleted",
    "RollbackFailed",
    "RollbackStarted",
    "RollbackTaskCompleted",
    "RollbackTaskFailed",
    "TaskCancelled",
    "TaskCompleted",
    "TaskFailed",
    "TaskOutputLine",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "WorkflowCancelled",
    "WorkflowCompleted",
    "WorkflowEvent",
    "WorkflowFailed",
    "WorkflowPaused",
    "WorkflowResumed",
    "WorkflowStarted",
    "WorkflowWaitingApproval",
]


@attrs.frozen(kw_only=True)
class WorkflowEvent:
    """Base of every event.

    Attributes:
        seq: Position in the instance's history, from 1, without gaps.
        instance_id: The workflow instance it belongs to.
        timestamp: When it happened (UTC, from the engine's clock).
    """

    type_name: ClassVar[str] = ""
    #: Whether ``dagflow run`` and webhooks treat it as notable (not per-line output).
    notable: ClassVar[bool] = True

    seq: int
    instance_id: str
    timestamp: dt.datetime


# --------------------------------------------------------------------------- workflow


@attrs.frozen(kw_only=True)
class WorkflowStarted(WorkflowEvent):
    """The instance started running (or started again after a resume or retry)."""

    type_name: ClassVar[str] = "WorkflowStarted"
    workflow_id: str = ""


@attrs.frozen(kw_only=True)
class WorkflowCompleted(WorkflowEvent):
    """Every task finished and the instance is Completed."""

    type_name: ClassVar[str] = "WorkflowCompleted"


@attrs.frozen(kw_only=True)
class WorkflowFailed(WorkflowEvent):
    """A task failed under ``on_failure: Fail`` (or ``Rollback``); the instance is Failed."""

    type_name: ClassVar[str] = "WorkflowFailed"
    error: str = ""


@attrs.frozen(kw_only=True)
class WorkflowCancelled(WorkflowEvent):
    """The instance was cancelled: by a user, its timeout, or an approval deadline."""

    type_name: ClassVar[str] = "WorkflowCancelled"
    reason: str = ""


@attrs.frozen(kw_only=True)
class WorkflowPaused(WorkflowEvent):
    """Nothing new starts until the instance is resumed."""

    type_name: ClassVar[str] = "WorkflowPaused"


@attrs.frozen(kw_only=True)
class WorkflowResumed(WorkflowEvent):
    """A paused or recovered instance continues."""

    type_name: ClassVar[str] = "WorkflowResumed"


@attrs.frozen(kw_only=True)
class WorkflowWaitingApproval(WorkflowEvent):
    """Only approval gates are pending: the instance waits for people."""

    type_name: ClassVar[str] = "WorkflowWaitingApproval"


# --------------------------------------------------------------------------- tasks


@attrs.frozen(kw_only=True)
class TaskStarted(WorkflowEvent):
    """An attempt of a task started."""

    type_name: ClassVar[str] = "TaskStarted"
    task_id: str
    attempt: int = 1


@attrs.frozen(kw_only=True)
class TaskCompleted(WorkflowEvent):
    """A task finished successfully; ``output`` is what it produced (secrets redacted)."""

    type_name: ClassVar[str] = "TaskCompleted"
    task_id: str
    output: TaskOutput = attrs.Factory(TaskOutput)
    attempt: int = 1


@attrs.frozen(kw_only=True)
class TaskFailed(WorkflowEvent):
    """A task's last attempt failed (``will_retry`` is false) or an attempt failed."""

    type_name: ClassVar[str] = "TaskFailed"
    task_id: str
    error: str
    attempt: int = 1
    output: TaskOutput | None = None


@attrs.frozen(kw_only=True)
class TaskRetrying(WorkflowEvent):
    """An attempt failed and the task will run again after ``delay_seconds``."""

    type_name: ClassVar[str] = "TaskRetrying"
    task_id: str
    attempt: int
    delay_seconds: float
    error: str


@attrs.frozen(kw_only=True)
class TaskSkipped(WorkflowEvent):
    """A task will not run: its condition is false, its branch was not taken, or its
    ``join`` rule does not hold."""

    type_name: ClassVar[str] = "TaskSkipped"
    task_id: str
    reason: str


@attrs.frozen(kw_only=True)
class TaskCancelled(WorkflowEvent):
    """A running or waiting task was stopped because the workflow failed or was cancelled."""

    type_name: ClassVar[str] = "TaskCancelled"
    task_id: str
    reason: str = ""


@attrs.frozen(kw_only=True)
class TaskOutputLine(WorkflowEvent):
    """One line a task wrote (``stream_output: true``), secrets redacted."""

    type_name: ClassVar[str] = "TaskOutputLine"
    notable: ClassVar[bool] = False
    task_id: str
    stream: str
    line: str


# --------------------------------------------------------------------------- approvals


@attrs.frozen(kw_only=True)
class ApprovalRequired(WorkflowEvent):
    """An approval gate opened; ``approval_id`` is what approvers quote."""

    type_name: ClassVar[str] = "ApprovalRequired"
    task_id: str
    approvers: tuple[str, ...] = ()
    approval_id: str = ""
    expires_at: dt.datetime | None = None
    min_approvals: int = 1


@attrs.frozen(kw_only=True)
class ApprovalGranted(WorkflowEvent):
    """An approver granted (the gate opens once ``min_approvals`` have)."""

    type_name: ClassVar[str] = "ApprovalGranted"
    task_id: str
    approver: str
    approval_id: str = ""
    comment: str | None = None


@attrs.frozen(kw_only=True)
class ApprovalRejected(WorkflowEvent):
    """An approver rejected: the gate fails."""

    type_name: ClassVar[str] = "ApprovalRejected"
    task_id: str
    approver: str
    reason: str = ""
    approval_id: str = ""


@attrs.frozen(kw_only=True)
class ApprovalExpired(WorkflowEvent):
    """The gate reached its deadline without enough approvals."""

    type_name: ClassVar[str] = "ApprovalExpired"
    task_id: str
    approval_id: str = ""


# --------------------------------------------------------------------------- durability


@attrs.frozen(kw_only=True)
class CheckpointCreated(WorkflowEvent):
    """A recovery point was written."""

    type_name: ClassVar[str] = "CheckpointCreated"
    checkpoint_id: str


@attrs.frozen(kw_only=True)
class RollbackStarted(WorkflowEvent):
    """Undoing the completed tasks, in reverse completion order."""

    type_name: ClassVar[str] = "RollbackStarted"
    tasks: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class RollbackTaskCompleted(WorkflowEvent):
    """One task was undone."""

    type_name: ClassVar[str] = "RollbackTaskCompleted"
    task_id: str


@attrs.frozen(kw_only=True)
class RollbackTaskFailed(WorkflowEvent):
    """Undoing one task failed; the instance stays Failed."""

    type_name: ClassVar[str] = "RollbackTaskFailed"
    task_id: str
    error: str


@attrs.frozen(kw_only=True)
class RollbackCompleted(WorkflowEvent):
    """Every undo step succeeded; the instance is RolledBack."""

    type_name: ClassVar[str] = "RollbackCompleted"


@attrs.frozen(kw_only=True)
class RollbackFailed(WorkflowEvent):
    """An undo step failed; the instance stays Failed and ``error`` says which."""

    type_name: ClassVar[str] = "RollbackFailed"
    error: str


# --------------------------------------------------------------------------- notifications


@attrs.frozen(kw_only=True)
class NotificationSent(WorkflowEvent):
    """An email or webhook notification was delivered."""

    type_name: ClassVar[str] = "NotificationSent"
    channel: str
    target: str


@attrs.frozen(kw_only=True)
class NotificationFailed(WorkflowEvent):
    """A notification could not be delivered; the workflow is not affected."""

    type_name: ClassVar[str] = "NotificationFailed"
    channel: str
    target: str
    error: str


EVENT_TYPES: Mapping[str, type[WorkflowEvent]] = {
    cls.type_name: cls
    for cls in (
        WorkflowStarted, WorkflowCompleted, WorkflowFailed, WorkflowCancelled, WorkflowPaused,
        WorkflowResumed, WorkflowWaitingApproval, TaskStarted, TaskCompleted, TaskFailed,
        TaskRetrying, TaskSkipped, TaskCancelled, TaskOutputLine, ApprovalRequired,
        ApprovalGranted, ApprovalRejected, ApprovalExpired, CheckpointCreated, RollbackStarted,
        RollbackTaskCompleted, RollbackTaskFailed, RollbackCompleted, RollbackFailed,
        NotificationSent, NotificationFailed,
    )
}


_ENCODERS: dict[type[Any], list[tuple[str, int]]] = {}
_PLAIN, _TIME, _OTHER = 0, 1, 2


def event_to_dict(converter: Any, event: WorkflowEvent, *,
                  without: str | None = None) -> dict[str, Any]:
    """The event as JSON-ready data: ``{"type": "TaskStarted", ...fields}`` (all fields
    but the one named ``without``, which the caller adds itself).

    Scalars and timestamps are written directly (a store writes every event, so this is
    hot); anything else goes through ``converter``.
    """
    cls = type(event)
    plan = _ENCODERS.get(cls)
    if plan is None:
        plan = _ENCODERS[cls] = [
            (f.name, _TIME if "datetime" in str(f.type)
             else _PLAIN if str(f.type) in ("str", "int", "float", "bool", "str | None",
                                            "int | None", "float | None") else _OTHER)
            for f in attrs.fields(cls)]
    out: dict[str, Any] = {"type": event.type_name}
    for name, kind in plan:
        if name == without:
            continue
        value = getattr(event, name)
        if kind == _PLAIN or value is None:
            out[name] = value
        elif kind == _TIME:
            out[name] = value.isoformat()
        else:
            out[name] = converter.unstructure(value)
    return out


def event_from_dict(converter: Any, data: Mapping[str, Any]) -> WorkflowEvent:
    """The inverse of :func:`event_to_dict`.

    Raises:
        KeyError: The ``type`` names no event class.
    """
    cls = EVENT_TYPES[data["type"]]
    rest = {k: v for k, v in data.items() if k != "type"}
    event: WorkflowEvent = converter.structure(rest, cls)
    return event
