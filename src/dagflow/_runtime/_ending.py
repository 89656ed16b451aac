"""What happens at the end of a run: rolling back completed tasks, and notifications."""

from __future__ import annotations

import logging
from typing import Any

import attrs

from .._errors import TaskExecutionFailed, WorkflowNotFound
from .._events import (
    NotificationFailed,
    NotificationSent,
    RollbackCompleted,
    RollbackFailed,
    RollbackStarted,
    RollbackTaskCompleted,
    RollbackTaskFailed,
    WorkflowEvent,
)
from .._models import Deploy, Scale, WorkflowState
from ._book import Book, Unit

__all__ = ["notify", "rollback"]

logger = logging.getLogger("dagflow")
S = WorkflowState


async def notify(book: Book, kind: str, event: WorkflowEvent | None = None) -> None:
    """Send the workflow's notifications of ``kind`` (email, webhook, the host's own),
    recording each result as an event; a failed notification never fails the run."""
    config = book.instance.definition.config.notification_config
    if config is None:
        return
    from .._approval.notify import deliver, notifications_for

    services = book.services
    instance = await services.instances.load_workflow(book.instance_id)
    if instance is None:
        raise WorkflowNotFound(instance_id=book.instance_id)
    notification = notifications_for(instance, config, kind=kind, event=event)  # type: ignore[arg-type]
    if notification is None:
        return

    def result(channel: str, target: str, error: str | None) -> None:
        if error is None:
            book.record(events=(book.event(NotificationSent, channel=channel,
                                           target=target),))
        else:
            book.record(events=(book.event(NotificationFailed, channel=channel,
                                           target=target, error=error),))

    if kind != "approval_required" and notification.recipients and services.smtp is None:
        result("email", ", ".join(notification.recipients),
               "no SMTP server configured (set DAGFLOW_SMTP_HOST, or EngineSettings(smtp=...))")
    # each delivery is real work (a fake clock must not jump during a request), except
    # while it waits on the clock to try again
    await deliver(services.notifiers, notification, on_result=result, timeout_seconds=60,
                  busy=services.clock.busy)
    await book.flushed()


async def rollback(book: Book) -> bool:
    """Undo completed tasks in reverse completion order; True when all were undone."""
    steps = [i for i in reversed(book.completion_order) if _undo_spec(book, i) is not None]
    ids = tuple(book.tasks[i].id for i in steps)
    book.record(events=(book.event(RollbackStarted, tasks=ids),))
    for i in steps:
        task = book.tasks[i]
        try:
            await _undo(book, i)
        except Exception as exc:
            error = book.redactor.text(
                exc.reason if isinstance(exc, TaskExecutionFailed) else f"{exc}")
            message = f"rollback of {task.id!r} failed: {error}"
            book.record(events=(book.event(RollbackTaskFailed, task_id=task.id,
                                           error=error),
                                book.event(RollbackFailed, error=message)),
                        fields={"error": message})
            await book.journal.drain()
            return False
        book.record(events=(book.event(RollbackTaskCompleted, task_id=task.id),))
    book.transition(S.ROLLED_BACK, "rolled back", (book.event(RollbackCompleted),))
    await book.journal.drain()
    return True


def _undo_spec(book: Book, i: int) -> Any:
    task = book.tasks[i]
    if task.rollback is not None:
        return task.rollback
    if isinstance(task.type, Deploy | Scale) and book.outputs[i] is not None:
        return task.type
    return None


async def _undo(book: Book, i: int) -> None:
    task = book.tasks[i]
    unit = Unit(f"{task.id}:rollback", task.id, task)
    services = book.services
    if task.rollback is not None:
        undo_task = attrs.evolve(task, type=task.rollback, rollback=None, timeout=None)
        unit.task = undo_task
        ctx = book.context(unit, 1, i)
        await services.executor.execute_task(undo_task, ctx)
        return
    from .._execute.cluster import undo_deploy, undo_scale

    ctx = book.context(unit, 1, i)
    output = book.outputs[i]
    data = output.data if output is not None else None
    with services.clock.busy():
        if isinstance(task.type, Deploy):
            await undo_deploy(ctx, data or {})
        else:
            await undo_scale(ctx, data or {})
