"""The run-time side of the task types that steer a run — Loop, Subworkflow, Approval —
and of what happens at its end: rollback and notifications. Functions of a :class:`Run`;
the run exposes the first three to their handlers as ``ctx.runtime``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ._context import TaskContext
from ._errors import (
    ApprovalTimeout,
    TaskExecutionFailed,
)
from ._events import (
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequired,
    NotificationFailed,
    NotificationSent,
    RollbackCompleted,
    RollbackFailed,
    RollbackStarted,
    RollbackTaskCompleted,
    RollbackTaskFailed,
    TaskCompleted,
    TaskFailed,
    WorkflowEvent,
)
from ._expr import Ref
from ._models import (
    Approval,
    Deploy,
    Loop,
    Scale,
    Subworkflow,
    TaskOutput,
    TaskState,
    TaskStatus,
    WorkflowState,
)

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["notify", "rollback", "run_loop", "run_subworkflow", "wait_for_approval"]

logger = logging.getLogger("dagflow")
S = WorkflowState
T = TaskStatus


async def run_loop(run: Run, ctx: TaskContext, spec: Loop) -> list[Any]:
    """Run the template per item; a failed iteration fails the Loop (after the others)."""
    from ._run import Unit  # imported here: _run imports this module

    items = _loop_items(run, ctx, spec)
    index = run.dag.index.get(ctx.task_id)
    results: list[Any] = [None] * len(items)
    failures: list[str] = []
    limiter = anyio.CapacityLimiter(
        run.instance.definition.config.max_parallel_tasks if spec.parallel else 1)

    async def iteration(k: int, item: Any) -> None:
        key = f"{ctx.task_id}[{k}]"
        saved = run.iterations.get(key)
        if saved is not None and saved.state == T.COMPLETED:  # finished before: reuse
            results[k] = _iteration_data(saved.output)
            return
        if failures and not spec.parallel:
            return
        async with limiter:
            unit = Unit(key, ctx.task_id, spec.task_template,
                         saved.attempts if saved is not None else 0, k, item)
            outcome = await run._run_unit(unit, index)
        state = TaskState(key, outcome.status, unit.started_at, run.engine.clock.now(),
                          unit.attempts, outcome.output, outcome.error)
        run.iterations[key] = state
        if outcome.status == T.COMPLETED:
            results[k] = _iteration_data(outcome.output)
            run.record(state=state, events=(run.event(
                TaskCompleted, task_id=key, output=outcome.output or TaskOutput(),
                attempt=unit.attempts),))
        else:
            failures.append(f"item {k}: {outcome.error}")
            run.record(state=state, events=(run.event(
                TaskFailed, task_id=key, error=outcome.error or "failed",
                attempt=unit.attempts, output=outcome.output),))

    async with anyio.create_task_group() as tg:
        for k, item in enumerate(items):
            if spec.parallel:
                tg.start_soon(iteration, k, item)
            else:
                await iteration(k, item)
    if failures:
        raise TaskExecutionFailed(
            task_id=ctx.task_id, kind="loop", retryable=False,
            reason=f"{len(failures)} of {len(items)} iterations failed: "
                   + "; ".join(failures[:3]) + (" ..." if len(failures) > 3 else ""),
            output=TaskOutput(data=results))
    return results

def _loop_items(run: Run, ctx: TaskContext, spec: Loop) -> list[Any]:
    items: Any = spec.items
    if isinstance(items, str):
        text = items.strip()
        index = run.dag.index.get(ctx.task_id)
        if text.startswith("${"):
            from ._expr import parse_template

            (ref,) = parse_template(text)
            assert isinstance(ref, Ref)
            items = run._resolver(index, None)(ref)
        else:
            variables = run.instance.execution_context.variables
            if text not in variables:
                raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False,
                                          kind="reference",
                                          reason=f"items: no variable named {text!r}")
            items = variables[text]
    if isinstance(items, str):  # a JSON list as text (e.g. a task's stdout)
        import json

        try:
            items = json.loads(items)
        except ValueError:
            items = [line for line in items.splitlines() if line.strip()]
    if not isinstance(items, list | tuple):
        raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False, kind="reference",
                                  reason=f"items must be a list, got {type(items).__name__}")
    return list(items)

async def run_subworkflow(run: Run, ctx: TaskContext, spec: Subworkflow) -> dict[str, Any]:
    """Run the named workflow as a child instance and wait for it."""
    chain = (*run.parent_chain, run.instance.workflow_id)
    if spec.workflow_id in chain:
        loop = " -> ".join([*chain[chain.index(spec.workflow_id):], spec.workflow_id])
        raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False, kind="recursion",
                                  reason=f"subworkflow recursion: {loop}")
    child = await run.engine._run_child(run, ctx, spec, chain)
    data = {
        "instance_id": child.id,
        "state": str(child.state),
        "tasks": {k: {"status": str(s.state),
                      "exit_code": s.output.exit_code if s.output else None,
                      "stdout": s.output.stdout if s.output else None,
                      "data": s.output.data if s.output else None}
                  for k, s in child.task_states.items()},
    }
    if child.state != S.COMPLETED:
        raise TaskExecutionFailed(
            task_id=ctx.task_id, retryable=False, kind="subworkflow",
            reason=f"subworkflow {spec.workflow_id!r} ({child.id}) ended "
                   f"{child.state}: {child.error or 'no error recorded'}",
            output=TaskOutput(data=data))
    return data

async def wait_for_approval(run: Run, ctx: TaskContext, spec: Approval) -> dict[str, Any]:
    """Open a gate, announce it, and wait for enough grants, a veto or the deadline."""
    engine, clock = run.engine, run.engine.clock
    unit = run.gate_units.pop((ctx.task_id, ctx.loop_index), None)
    if spec.auto_approve or engine.settings.auto_approve:
        run.record(events=(
            run.event(ApprovalRequired, task_id=ctx.task_id, approvers=spec.approvers,
                       min_approvals=spec.min_approvals),
            run.event(ApprovalGranted, task_id=ctx.task_id, approver="system",
                       comment="auto_approve")))
        return {"approved": True, "approvers": ["system"], "comments": ["auto_approve"]}
    approvals = engine.approvals
    if unit is not None:  # the task's state while the gate is open, before anyone sees it
        await run.journal.durable(run.record(state=TaskState(
            unit.key, TaskStatus.WAITING_APPROVAL, unit.started_at, None, ctx.attempt)))
        run.at_gate.add(unit.key)
    try:
        approval_id = await _open_gate(run, ctx, spec)
        request = await approvals.get_approval(approval_id)
    except BaseException:
        if unit is not None:
            run.at_gate.discard(unit.key)
        raise
    required = run.event(
        ApprovalRequired, task_id=ctx.task_id, approvers=spec.approvers,
        approval_id=approval_id, expires_at=request.expires_at,
        min_approvals=spec.min_approvals)
    await run.journal.durable(run.record(events=(required,)))
    if run._tg is not None and run.instance.definition.config.notification_config:
        run._tg.start_soon(_notify_in_background, run, "approval_required", required)
    run.gates += 1
    run._update_activity()
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
                run.record(events=(run.event(cls, task_id=ctx.task_id,
                                               approver=vote.approver,
                                               approval_id=approval_id, **extra),))
            seen = len(request.votes)
            if status is not None:  # decided, and every vote read after the decision
                break
            status = await approvals.check_approval_status(approval_id)
            if status.state == "Pending":
                status = None
                remaining = (request.expires_at - clock.now()).total_seconds()
                await _wait_votes(run, approvals, approval_id, seen, remaining)
            # else decided: one more round reads the votes again, as the one that decided
            # it may have come in between the two reads (votes are only ever appended)
        decided = True
    finally:
        run.gates -= 1
        if unit is not None:
            run.at_gate.discard(unit.key)
        if run.interrupted is None or decided:  # interrupted and undecided: stays open
            with anyio.CancelScope(shield=True):
                await approvals.cancel_approval(approval_id)  # closed, decision kept
        run._update_activity()
    votes = request.votes
    if status.state == "Approved":
        return {"approved": True, "approval_id": approval_id,
                "approvers": [v.approver for v in votes if v.approved],
                "comments": [v.comment for v in votes if v.approved and v.comment]}
    if status.state == "Rejected":
        raise TaskExecutionFailed(
            task_id=ctx.task_id, retryable=False, kind="rejected",
            reason=f"rejected by {status.approver}: {status.reason or 'no reason given'}",
            output=TaskOutput(data={"approved": False, "approval_id": approval_id}))
    run.record(events=(run.event(ApprovalExpired, task_id=ctx.task_id,
                                   approval_id=approval_id),))
    message = (f"approval {approval_id} for {ctx.task_id!r} reached its deadline "
               f"{request.expires_at.isoformat()} without a decision")
    if spec.on_timeout == "reject":
        raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False, kind="expired",
                                  reason=message)
    raise ApprovalTimeout(message, approval_id=approval_id)


async def _open_gate(run: Run, ctx: TaskContext, spec: Approval) -> str:
    """The id of the task's gate: the one it opened before an interrupt or a crash (same
    deadline, and a decision made meanwhile counts), else a new one."""
    approvals = run.engine.approvals
    for gate in reversed(await approvals.list_instance_approvals(run.instance_id)):
        if gate.task_id == ctx.task_id and gate.context.get("cancelled") != "true":
            return gate.approval_id
    return await approvals.request_approval(
        run.instance.workflow_id, ctx.task_id, spec.approvers, spec.timeout_seconds,
        instance_id=run.instance_id, min_approvals=spec.min_approvals,
        allow_self_approval=spec.allow_self_approval, requested_by=run.instance.created_by)


async def _wait_votes(run: Run, approvals: Any, approval_id: str, seen: int,
                      seconds: float) -> None:
    """Until a new vote arrives or ``seconds`` pass on the clock."""
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def deadline() -> None:
                await run.engine.clock.sleep(max(0.0, seconds))
                scope.cancel()

            tg.start_soon(deadline)
            await approvals.wait_for_change(approval_id, seen)
            tg.cancel_scope.cancel()


async def _notify_in_background(run: Run, kind: str, event: WorkflowEvent) -> None:
    run._notifying += 1
    try:
        await notify(run, kind, event)
    finally:
        run._notifying -= 1
        run._notified.set()
        run._notified = anyio.Event()

async def notify(run: Run, kind: str, event: WorkflowEvent | None = None) -> None:
    """Send the workflow's notifications of ``kind`` (email, webhook, the host's own),
    recording each result as an event; a failed notification never fails the run."""
    config = run.instance.definition.config.notification_config
    if config is None:
        return
    from ._approval.notify import deliver, notifications_for

    instance = await run.engine._load(run.instance_id)
    notification = notifications_for(instance, config, kind=kind, event=event)  # type: ignore[arg-type]
    if notification is None:
        return

    def result(channel: str, target: str, error: str | None) -> None:
        if error is None:
            run.record(events=(run.event(NotificationSent, channel=channel,
                                           target=target),))
        else:
            run.record(events=(run.event(NotificationFailed, channel=channel,
                                           target=target, error=error),))

    if kind != "approval_required" and notification.recipients and \
            run.engine.smtp is None:
        result("email", ", ".join(notification.recipients),
               "no SMTP server configured (set DAGFLOW_SMTP_HOST, or Engine(smtp=...))")
    with run.engine.clock.busy():  # real work: a fake clock must not jump meanwhile
        await deliver(run.engine.notifiers, notification, on_result=result,
                      timeout_seconds=60)
    await run._flushed()

async def rollback(run: Run) -> bool:
    """Undo completed tasks in reverse completion order; True when all were undone."""
    steps = [i for i in reversed(run.completion_order) if _undo_spec(run, i) is not None]
    ids = tuple(run.tasks[i].id for i in steps)
    run.record(events=(run.event(RollbackStarted, tasks=ids),))
    for i in steps:
        task = run.tasks[i]
        try:
            await _undo(run, i)
        except Exception as exc:
            error = run.redactor.text(
                exc.reason if isinstance(exc, TaskExecutionFailed) else f"{exc}")
            message = f"rollback of {task.id!r} failed: {error}"
            run.record(events=(run.event(RollbackTaskFailed, task_id=task.id,
                                           error=error),
                                run.event(RollbackFailed, error=message)),
                        fields={"error": message})
            await run.journal.drain()
            return False
        run.record(events=(run.event(RollbackTaskCompleted, task_id=task.id),))
    run.transition(S.ROLLED_BACK, "rolled back", (run.event(RollbackCompleted),))
    await run.journal.drain()
    return True

def _undo_spec(run: Run, i: int) -> Any:
    task = run.tasks[i]
    if task.rollback is not None:
        return task.rollback
    if isinstance(task.type, Deploy | Scale) and run.outputs[i] is not None:
        return task.type
    return None


async def _undo(run: Run, i: int) -> None:
    from ._run import Unit  # imported here: _run imports this module

    task = run.tasks[i]
    unit = Unit(f"{task.id}:rollback", task.id, task)
    if task.rollback is not None:
        undo_task = attrs.evolve(task, type=task.rollback, rollback=None, timeout=None)
        unit.task = undo_task
        ctx = run.context(unit, 1, i)
        await run.engine.executor.execute_task(undo_task, ctx)
        return
    from ._execute.cluster import undo_deploy, undo_scale

    ctx = run.context(unit, 1, i)
    data = run.outputs[i].data if run.outputs[i] is not None else None  # type: ignore[union-attr]
    with run.engine.clock.busy():
        if isinstance(task.type, Deploy):
            await undo_deploy(ctx, data or {})
        else:
            await undo_scale(ctx, data or {})


def _iteration_data(output: TaskOutput | None) -> Any:
    if output is None:
        return None
    return {"stdout": output.stdout, "stderr": output.stderr, "exit_code": output.exit_code,
            "data": output.data}
