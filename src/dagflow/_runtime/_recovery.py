"""What an engine does for durability after the fact: recovering instances whose process
died, running failed ones again under the same id, rewinding to a checkpoint, rolling
back on demand and archiving. Functions of a :class:`Runner`; ``Engine`` documents them."""

from __future__ import annotations

import datetime as dt
import logging
import time

import attrs

from .._dag import WorkflowDag
from .._errors import (
    InvalidStateTransition,
    Problem,
    ValidationError,
    WorkflowError,
)
from .._models import (
    Checkpoint,
    InstanceChanges,
    TaskState,
    TaskStatus,
    WorkflowFilters,
    WorkflowInstance,
    WorkflowState,
)
from ._ending import rollback
from ._runner import Runner

__all__ = ["archive", "checkpoint", "recover", "restore", "retry", "rollback_instance"]

logger = logging.getLogger("dagflow")
S = WorkflowState


async def rollback_instance(runner: Runner, instance_id: str) -> WorkflowInstance:
    """Undo a Failed or Cancelled instance's completed tasks (:meth:`Engine.rollback`)."""
    instance = await runner.load(instance_id)
    if instance.state not in (S.FAILED, S.CANCELLED):
        raise InvalidStateTransition(from_state=str(instance.state),
                                     to_state=str(S.ROLLED_BACK), instance_id=instance_id)
    if not instance.definition.config.enable_rollback:
        raise WorkflowError(f"rollback is disabled for {instance.workflow_id!r} "
                            "(config.enable_rollback: false)")
    run = await runner.prepare(instance)
    runner.runs[instance_id] = run
    try:
        await rollback(run.book)
    finally:
        del runner.runs[instance_id]
        run.book.changed()
    return await runner.load(instance_id)


async def recover(runner: Runner) -> list[str]:
    """Resume, in the background, every instance whose process died (:meth:`Engine.recover`)."""
    if runner.tg is None:
        raise RuntimeError("recover needs a running engine: 'async with Engine(...)'")
    services = runner.services
    resumed = []
    for state in (S.RUNNING, S.WAITING_APPROVAL, S.PENDING):
        for instance_id, parent_id in await services.instances.instance_ids(
                WorkflowFilters(state=state)):
            if parent_id or instance_id in runner.runs:
                continue  # children are driven by their parents
            holder, until = await services.leases.lease_of(instance_id)
            if holder is not None and until > time.time():
                continue  # alive elsewhere
            if state == S.PENDING and holder is None:
                continue  # created but never started: not ours to start
            try:
                # a Pending one was started, but its process died before the start
                # was recorded
                run = await runner.prepare(await runner.load_trusted(instance_id))
                await runner.start(run, state == S.PENDING)
            except WorkflowError as exc:
                logger.error("instance %s not recovered: %s", instance_id, exc)
                continue
            resumed.append(instance_id)
    return resumed


async def retry(runner: Runner, instance_id: str, from_task: str | None) -> WorkflowInstance:
    """Run a Failed or Cancelled instance again under the same id (:meth:`Engine.retry`)."""
    instance = await runner.load_trusted(instance_id)
    if instance.state not in (S.FAILED, S.CANCELLED):
        raise InvalidStateTransition(from_state=str(instance.state),
                                     to_state=str(S.RUNNING), instance_id=instance_id)
    dag = runner.services.dag_builder.build_dag(instance.definition)
    again: set[str] = set()
    if from_task is not None:
        if from_task not in dag.index:
            raise ValidationError([Problem(f"no task {from_task!r} in {instance.workflow_id}"
                                           f" (tasks: {', '.join(dag.ids[:10])}...)")])
        again = {from_task} | _downstream(dag, from_task)
    # everything that did not complete runs again (a task skipped because a dependency
    # failed never ran); inside a Loop, iterations are kept one by one
    keep = {key: state for key, state in instance.task_states.items()
            if state.state == TaskStatus.COMPLETED and key.split("[", 1)[0] not in again}
    reason = "retry" + (f" from {from_task}" if from_task else "")
    restarted = await _restart(runner, instance, keep, reason)
    run = await runner.prepare(restarted)
    await runner.drive(run, first_start=False, claimed=True)
    return await runner.load(instance_id)


async def _restart(runner: Runner, instance: WorkflowInstance, states: dict[str, TaskState],
                   reason: str) -> WorkflowInstance:
    """Store ``instance`` Running again with only ``states`` kept, ready to drive."""
    services = runner.services
    record = services.state_machine.transition(instance.id, instance.state, S.RUNNING, reason)
    restarted = attrs.evolve(
        instance, state=S.RUNNING, task_states=states, error=None, completed_at=None,
        state_history=(*instance.state_history, record))
    await runner.claim(instance.id)
    await services.instances.update_workflow(restarted)
    return restarted


async def restore(runner: Runner, instance_id: str, checkpoint_id: str) -> WorkflowInstance:
    """Rewind an instance to an earlier checkpoint and run it on (:meth:`Engine.restore`)."""
    instance = await runner.load(instance_id)
    if instance_id in runner.runs or instance.state in (S.COMPLETED, S.ARCHIVED,
                                                        S.ROLLED_BACK):
        raise InvalidStateTransition(from_state=str(instance.state),
                                     to_state=str(S.RUNNING), instance_id=instance_id)
    then = await runner.services.checkpoints.restore_from_checkpoint(instance_id,
                                                                     checkpoint_id)
    # from the state it is in now, with the task states it had at the checkpoint
    restarted = await _restart(runner, instance, dict(then.task_states),
                               f"restored to checkpoint {checkpoint_id}")
    run = await runner.prepare(restarted)
    await runner.drive(run, first_start=False, claimed=True)
    return await runner.load(instance_id)


async def archive(runner: Runner, older_than: dt.timedelta) -> list[str]:
    """Move old Completed instances to Archived (:meth:`Engine.archive`)."""
    services = runner.services
    cutoff = services.clock.now() - older_than
    archived = []
    completed = await services.instances.list_workflows(WorkflowFilters(state=S.COMPLETED))
    for instance in completed:
        if instance.completed_at is None or instance.completed_at > cutoff:
            continue
        record = services.state_machine.transition(
            instance.id, S.COMPLETED, S.ARCHIVED,
            f"archived: completed before {cutoff:%Y-%m-%d}")
        await services.instances.commit(instance.id, InstanceChanges(
            {"state": S.ARCHIVED}, transitions=(record,)))
        for saved in await services.checkpoints.list_checkpoints(instance.id):
            await services.checkpoints.delete_checkpoint(saved.id)
        archived.append(instance.id)
    return archived


async def checkpoint(runner: Runner, instance_id: str) -> Checkpoint:
    """Write a checkpoint of the instance now (:meth:`Engine.checkpoint`)."""
    checkpoints = runner.services.checkpoints
    run = runner.runs.get(instance_id)
    if run is not None:
        taken = await run.book.snapshot(strict=True)
        assert taken is not None  # strict: a failure raises
        return taken
    return await checkpoints.create_checkpoint(await runner.load_trusted(instance_id))


def _downstream(dag: WorkflowDag, task_id: str) -> set[str]:
    """Every task that depends, directly or not, on ``task_id``."""
    seen: set[int] = set()
    stack = list(dag.children[dag.index[task_id]])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(dag.children[node])
    return {dag.ids[i] for i in seen}

