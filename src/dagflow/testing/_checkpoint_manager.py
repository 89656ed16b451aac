"""``check_checkpoint_manager``: the contract of a :class:`~dagflow.CheckpointManager`, as
a kit.

Recovery trusts what a checkpoint says about which tasks are done, so a checkpoint that
changed after it was taken (a disk error, or someone editing the database) must never be
loaded. The kit builds the manager over a :class:`~dagflow.MemoryStorage` of its own, so
that it can alter stored checkpoints the way a bad disk or an intruder would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .._errors import CheckpointError
from .._models import (
    Checkpoint,
    ExecutionContext,
    TaskOutput,
    TaskState,
    TaskStatus,
    WorkflowInstance,
    WorkflowState,
)
from .._protocols import CheckpointManager
from .._storage import MemoryStorage
from ._common import checkpoint_ids, expect_raises, load_instance, made, named, same, short
from ._values import make_instance, new_id

__all__ = ["check_checkpoint_manager"]


async def check_checkpoint_manager(
    make: Callable[[MemoryStorage], Awaitable[CheckpointManager]]
    | Callable[[MemoryStorage], CheckpointManager],
) -> None:
    """Run the :class:`~dagflow.CheckpointManager` contract against a manager factory.

    The checks, in order: ``create_checkpoint`` returns a checkpoint of the instance (its
    id, state, task states and context), kept in the store, that ``load_checkpoint``
    returns equal; ``list_checkpoints`` gives an instance's checkpoints oldest first, and
    no other instance's; a checkpoint altered in the store (a task's status or output,
    the workflow state, a variable, its time, the instance it belongs to) makes
    ``load_checkpoint`` and ``restore_from_checkpoint`` raise
    :class:`~dagflow.CheckpointError`, as does an unknown id; ``restore_from_checkpoint``
    returns the instance with the checkpoint's state, task states and context, writes
    nothing, and refuses another instance's checkpoint; ``delete_checkpoint`` removes one
    checkpoint and only it. It stops at the first violation.

    Args:
        make: Given a store, returns a new manager (or an awaitable of one) that keeps
            its checkpoints there and reads instances from it
            (``lambda store: DefaultCheckpointManager(store)``). Each check gets a new
            :class:`~dagflow.MemoryStorage`; the kit writes instances into it, and
            alters the checkpoints the manager saved.

    Raises:
        AssertionError: The manager broke the contract; the message names the check and
            what happened (``"check_checkpoint_manager: a checkpoint altered in the
            store: load_checkpoint ... returned ..., expected CheckpointError"``).
    """
    checks: list[tuple[str, Callable[[_Setup], Awaitable[None]]]] = [
        ("create and load", _check_create),
        ("list_checkpoints", _check_list),
        ("a checkpoint altered in the store", _check_tampering),
        ("an unknown checkpoint", _check_unknown),
        ("restore_from_checkpoint", _check_restore),
        ("another instance's checkpoint", _check_other_instance),
        ("delete_checkpoint", _check_delete),
    ]
    for name, check in checks:
        with named("check_checkpoint_manager", name):
            store = MemoryStorage()
            manager: CheckpointManager = await made(make(store))
            await check(_Setup(store, manager))


@attrs.frozen
class _Setup:
    """One check's store and the manager over it."""

    store: MemoryStorage
    manager: CheckpointManager

    async def instance(self) -> WorkflowInstance:
        """A new instance with every field filled, kept in the store."""
        instance = make_instance()
        await self.store.store_workflow(instance)
        return instance

    async def create(self, instance: WorkflowInstance) -> Checkpoint:
        """``create_checkpoint``, which must return a Checkpoint."""
        checkpoint: Any = await self.manager.create_checkpoint(instance)
        assert isinstance(checkpoint, Checkpoint), \
            f"create_checkpoint returned {short(checkpoint)}, not a Checkpoint"
        return checkpoint


async def _check_create(s: _Setup) -> None:
    """A checkpoint holds the instance's state; it is stored, and loads back equal."""
    instance = await s.instance()
    checkpoint = await s.create(instance)
    got = (checkpoint.instance_id, checkpoint.workflow_state)
    assert got == (instance.id, instance.state), \
        f"create_checkpoint: (instance_id, workflow_state) is {got}, expected " \
        f"{(instance.id, instance.state)}"
    same("create_checkpoint: task_states", checkpoint.task_states, instance.task_states)
    same("create_checkpoint: execution_context.variables",
         checkpoint.execution_context.variables, instance.execution_context.variables)
    stored = await s.store.load_checkpoint(checkpoint.id)
    assert stored is not None, (f"create_checkpoint did not save {checkpoint.id} in the "
                                "store the manager was given")
    same("load_checkpoint", await s.manager.load_checkpoint(checkpoint.id), checkpoint)


async def _check_list(s: _Setup) -> None:
    """An instance's checkpoints, oldest first, and only its own."""
    instance, other = await s.instance(), await s.instance()
    made = []
    for n in range(3):
        made.append(await s.create(instance))
        await s.create(other)
        instance = attrs.evolve(instance, task_states={
            **instance.task_states, f"step{n}": TaskState(f"step{n}", TaskStatus.COMPLETED)})
    listed = await s.manager.list_checkpoints(instance.id)
    same("list_checkpoints (oldest first)", checkpoint_ids(listed), checkpoint_ids(made))
    assert await s.manager.list_checkpoints(new_id()) == [], \
        "list_checkpoints of an instance without checkpoints is not []"


def _alterations(checkpoint: Checkpoint) -> list[tuple[str, Checkpoint]]:
    """``checkpoint`` changed in one field each, as a bad disk or an intruder would."""
    name, state = next(iter(checkpoint.task_states.items()))
    context = checkpoint.execution_context
    later = checkpoint.timestamp + dt.timedelta(seconds=1)
    flipped = (TaskStatus.FAILED if state.state == TaskStatus.COMPLETED
               else TaskStatus.COMPLETED)
    return [
        (f"task {name!r} marked {flipped}", attrs.evolve(checkpoint, task_states={
            **checkpoint.task_states, name: attrs.evolve(state, state=flipped)})),
        (f"task {name!r} given another output", attrs.evolve(checkpoint, task_states={
            **checkpoint.task_states,
            name: attrs.evolve(state, output=TaskOutput(stdout="forged\n", exit_code=0))})),
        ("the workflow state changed", attrs.evolve(
            checkpoint, workflow_state=WorkflowState.COMPLETED
            if checkpoint.workflow_state != WorkflowState.COMPLETED
            else WorkflowState.RUNNING)),
        ("a variable changed", attrs.evolve(checkpoint, execution_context=ExecutionContext(
            {**context.variables, "env": "forged"}, context.outputs, context.environment))),
        ("its time changed", attrs.evolve(checkpoint, timestamp=later)),
        ("moved to another instance", attrs.evolve(checkpoint, instance_id=new_id())),
    ]


async def _check_tampering(s: _Setup) -> None:
    """Every alteration of a stored checkpoint is caught on load and on restore."""
    instance = await s.instance()
    checkpoint = await s.create(instance)
    stored = await s.store.load_checkpoint(checkpoint.id)
    assert stored is not None, f"create_checkpoint did not save {checkpoint.id} in the store"
    for what, altered in _alterations(stored):
        await s.store.save_checkpoint(altered)  # same id: replaces the stored one
        await expect_raises(CheckpointError, f"load_checkpoint of a checkpoint with {what}",
                            s.manager.load_checkpoint(checkpoint.id))
        await expect_raises(CheckpointError,
                            f"restore_from_checkpoint of a checkpoint with {what}",
                            s.manager.restore_from_checkpoint(instance.id, checkpoint.id))
    await s.store.save_checkpoint(stored)
    same("load_checkpoint once the checkpoint is as it was",
         await s.manager.load_checkpoint(checkpoint.id), checkpoint)


async def _check_unknown(s: _Setup) -> None:
    """An id no checkpoint has is a CheckpointError."""
    instance = await s.instance()
    unknown = f"cp_{new_id()}"
    await expect_raises(CheckpointError, "load_checkpoint of an unknown id",
                        s.manager.load_checkpoint(unknown))
    await expect_raises(CheckpointError, "restore_from_checkpoint of an unknown id",
                        s.manager.restore_from_checkpoint(instance.id, unknown))


async def _check_restore(s: _Setup) -> None:
    """Restoring gives the instance as it was at the checkpoint, and writes nothing."""
    instance = await s.instance()
    checkpoint = await s.create(instance)
    at = instance.created_at + dt.timedelta(minutes=1)
    moved_on = attrs.evolve(
        instance, state=WorkflowState.FAILED, error="later",
        task_states={**instance.task_states,
                     "deploy": TaskState("deploy", TaskStatus.FAILED, at, at, 1, None, "x")},
        execution_context=ExecutionContext({"env": "later"}))
    await s.store.update_workflow(moved_on)
    now = await load_instance(s.store, instance.id, "after update_workflow")
    restored: Any = await s.manager.restore_from_checkpoint(instance.id, checkpoint.id)
    assert isinstance(restored, WorkflowInstance), \
        f"restore_from_checkpoint returned {short(restored)}, not a WorkflowInstance"
    got = (restored.id, restored.workflow_id, restored.state)
    want = (instance.id, instance.workflow_id, checkpoint.workflow_state)
    assert got == want, f"restore_from_checkpoint: (id, workflow_id, state) is {got}, " \
                        f"expected {want}"
    same("restore_from_checkpoint: task_states", restored.task_states,
         checkpoint.task_states)
    same("restore_from_checkpoint: execution_context.variables",
         restored.execution_context.variables, checkpoint.execution_context.variables)
    same("the stored instance after restore_from_checkpoint (it must write nothing)",
         await load_instance(s.store, instance.id, "after restore"), now)


async def _check_other_instance(s: _Setup) -> None:
    """A checkpoint restores only the instance it was taken of."""
    instance, other = await s.instance(), await s.instance()
    checkpoint = await s.create(instance)
    await expect_raises(CheckpointError, "restore_from_checkpoint of another instance's "
                        "checkpoint", s.manager.restore_from_checkpoint(other.id, checkpoint.id))


async def _check_delete(s: _Setup) -> None:
    """delete_checkpoint removes one checkpoint, only it."""
    instance = await s.instance()
    kept, doomed = await s.create(instance), await s.create(instance)
    await s.manager.delete_checkpoint(doomed.id)
    await expect_raises(CheckpointError, "load_checkpoint of a deleted checkpoint",
                        s.manager.load_checkpoint(doomed.id))
    same("list_checkpoints after delete_checkpoint",
         checkpoint_ids(await s.manager.list_checkpoints(instance.id)), [kept.id])
    same("the other checkpoint after delete_checkpoint",
         await s.manager.load_checkpoint(kept.id), kept)
