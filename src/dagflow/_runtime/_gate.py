"""Approval gates, run by the scheduler: open (or find again) the task's gate in the
engine's ApprovalSystem, announce it, and wait for enough grants, a veto or the deadline."""

from __future__ import annotations

from typing import Protocol

import anyio

from .._context import TaskContext
from .._errors import ApprovalTimeout, TaskExecutionFailed
from .._events import (
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequired,
    WorkflowEvent,
)
from .._models import Approval, TaskOutput, TaskState, TaskStatus
from .._protocols import ApprovalSystem
from ._book import Book, Unit

__all__ = ["GateHost", "wait_for_approval"]


class GateHost(Protocol):
    """What a gate needs of the scheduler that runs it."""

    gates: int  # gates open now; the run is WaitingApproval while only gates are left
    interrupted: str | None  # set when the run is stopped to be resumed later

    def update_activity(self) -> None:
        """Move the run between Running and WaitingApproval as gates open and close."""
        ...

    def notify_soon(self, kind: str, event: WorkflowEvent) -> None:
        """Send the workflow's notifications of ``kind`` in the background."""
        ...


async def wait_for_approval(book: Book, host: GateHost, unit: Unit, ctx: TaskContext,
                            spec: Approval) -> TaskOutput:
    """Open a gate and wait for a decision or its deadline.

    Output data: ``{"approved": True, "approval_id", "approvers", "comments"}``.

    Raises:
        TaskExecutionFailed: Rejected, or the deadline passed with ``on_timeout: reject``.
        ApprovalTimeout: The deadline passed (the run is then Cancelled).
    """
    services = book.services
    clock = services.clock
    if spec.auto_approve or services.settings.auto_approve:
        book.record(events=(
            book.event(ApprovalRequired, task_id=ctx.task_id, approvers=spec.approvers,
                       min_approvals=spec.min_approvals),
            book.event(ApprovalGranted, task_id=ctx.task_id, approver="system",
                       comment="auto_approve")))
        return TaskOutput(data={"approved": True, "approvers": ["system"],
                                "comments": ["auto_approve"]})
    approvals = services.approvals
    # the task's state while the gate is open, recorded before anyone can see the gate
    await book.journal.durable(book.record(state=TaskState(
        unit.key, TaskStatus.WAITING_APPROVAL, unit.started_at, None, ctx.attempt)))
    book.at_gate.add(unit.key)
    try:
        approval_id = await _open_gate(book, approvals, ctx, spec)
        request = await approvals.get_approval(approval_id)
    except BaseException:
        book.at_gate.discard(unit.key)
        raise
    required = book.event(
        ApprovalRequired, task_id=ctx.task_id, approvers=spec.approvers,
        approval_id=approval_id, expires_at=request.expires_at,
        min_approvals=spec.min_approvals)
    await book.journal.durable(book.record(events=(required,)))
    if book.instance.definition.config.notification_config:
        host.notify_soon("approval_required", required)
    host.gates += 1
    host.update_activity()
    seen = 0
    decided = False
    try:
        status = None
        while True:
            request = await approvals.get_approval(approval_id)
            for vote in request.votes[seen:]:
                cls = ApprovalGranted if vote.approved else ApprovalRejected
                extra = ({"comment": vote.comment} if vote.approved
                         else {"reason": vote.comment or ""})
                book.record(events=(book.event(cls, task_id=ctx.task_id,
                                               approver=vote.approver,
                                               approval_id=approval_id, **extra),))
            seen = len(request.votes)
            if status is not None:  # decided, and every vote read after the decision
                break
            status = await approvals.check_approval_status(approval_id)
            if status.state == "Pending":
                status = None
                remaining = (request.expires_at - clock.now()).total_seconds()
                await _wait_votes(book, approvals, approval_id, seen, remaining)
            # else decided: one more round reads the votes again, as the one that decided
            # it may have come in between the two reads (votes are only ever appended)
        decided = True
    finally:
        host.gates -= 1
        book.at_gate.discard(unit.key)
        if host.interrupted is None or decided:  # interrupted and undecided: stays open
            with anyio.CancelScope(shield=True):
                await approvals.cancel_approval(approval_id)  # closed, decision kept
        host.update_activity()
    votes = request.votes
    if status.state == "Approved":
        return TaskOutput(data={
            "approved": True, "approval_id": approval_id,
            "approvers": [v.approver for v in votes if v.approved],
            "comments": [v.comment for v in votes if v.approved and v.comment]})
    if status.state == "Rejected":
        raise TaskExecutionFailed(
            task_id=ctx.task_id, retryable=False, kind="rejected",
            reason=f"rejected by {status.approver}: {status.reason or 'no reason given'}",
            output=TaskOutput(data={"approved": False, "approval_id": approval_id}))
    book.record(events=(book.event(ApprovalExpired, task_id=ctx.task_id,
                                   approval_id=approval_id),))
    message = (f"approval {approval_id} for {ctx.task_id!r} reached its deadline "
               f"{request.expires_at.isoformat()} without a decision")
    if spec.on_timeout == "reject":
        raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False, kind="expired",
                                  reason=message)
    raise ApprovalTimeout(message, approval_id=approval_id)


async def _open_gate(book: Book, approvals: ApprovalSystem, ctx: TaskContext,
                     spec: Approval) -> str:
    """The id of the task's gate: the one it opened before an interrupt or a crash (same
    deadline, and a decision made meanwhile counts), else a new one."""
    for gate in reversed(await approvals.list_instance_approvals(book.instance_id)):
        if gate.task_id == ctx.task_id and gate.context.get("cancelled") != "true":
            return gate.approval_id
    return await approvals.request_approval(
        book.instance.workflow_id, ctx.task_id, spec.approvers, spec.timeout_seconds,
        instance_id=book.instance_id, min_approvals=spec.min_approvals,
        allow_self_approval=spec.allow_self_approval, requested_by=book.instance.created_by)


async def _wait_votes(book: Book, approvals: ApprovalSystem, approval_id: str, seen: int,
                      seconds: float) -> None:
    """Until a new vote arrives or ``seconds`` pass on the clock."""
    clock = book.services.clock
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def deadline() -> None:
                await clock.sleep(max(0.0, seconds))
                scope.cancel()

            tg.start_soon(deadline)
            await approvals.wait_for_change(approval_id, seen)
            tg.cancel_scope.cancel()
