"""What the engine does for durability: recovering instances whose process died,
retrying failed ones under the same id, rolling back, rewinding to a checkpoint,
archiving, and never loading a row that fails its checksum. A part of :class:`Engine`."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

import attrs

from ._dag import DefaultDagBuilder
from ._errors import (
    CheckpointError,
    InvalidStateTransition,
    Problem,
    ValidationError,
    WorkflowError,
)
from ._models import (
    TaskStatus,
    WorkflowFilters,
    WorkflowInstance,
    WorkflowState,
)
from ._run import Run

if TYPE_CHECKING:
    from ._protocols import WorkflowStorage
    from ._run import Run

__all__ = ["Durability"]

logger = logging.getLogger("dagflow")
S = WorkflowState


class Durability:
    """The durability operations of :class:`~dagflow.Engine` (a mixin: it uses the
    engine's store, clock, checkpoints and runs)."""

    store: WorkflowStorage
    clock: Any
    checkpoints: Any
    state_machine: Any
    _runs: dict[str, Run]
    _tg: Any

    if TYPE_CHECKING:  # provided by Engine
        async def _load(self, instance_id: str) -> WorkflowInstance: ...
        async def _prepare(self, instance: WorkflowInstance,
                           chain: tuple[str, ...] = ()) -> Run: ...
        async def _drive(self, run: Run, *, first_start: bool) -> None: ...
        async def _drive_started(self, run: Run, first_start: bool, *,
                                 task_status: Any = ...) -> None: ...
        async def _claim(self, instance_id: str) -> None: ...
        def _live(self, instance_id: str) -> Run | None: ...

    async def rollback(self, instance_id: str) -> WorkflowInstance:
        """Undo a Failed or Cancelled instance's completed tasks, newest first.

        Raises:
            InvalidStateTransition: The instance is not Failed or Cancelled.
            WorkflowError: ``config.enable_rollback`` is false.
        """
        instance = await self._load(instance_id)
        if instance.state not in (S.FAILED, S.CANCELLED):
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.ROLLED_BACK), instance_id=instance_id)
        if not instance.definition.config.enable_rollback:
            raise WorkflowError(f"rollback is disabled for {instance.workflow_id!r} "
                                "(config.enable_rollback: false)")
        run = await self._prepare(instance)
        self._runs[instance_id] = run
        try:
            await run.rollback()
        finally:
            del self._runs[instance_id]
            run.changed()
        return await self._load(instance_id)

    # ------------------------------------------------------------------ durability

    async def _load_trusted(self, instance_id: str) -> WorkflowInstance:
        """The stored instance, never trusting a row that fails its checksum: such a row
        is replaced by the task's state in the newest checkpoint that passes its own.

        Raises:
            WorkflowNotFound: No instance has this id.
            CheckpointError: A row is corrupt and no good checkpoint can stand in for it.
        """
        try:
            return await self._load(instance_id)
        except CheckpointError as exc:
            partial = exc.partial
            bad = exc.problems or (str(exc),)
            logger.error("instance %s: %s", instance_id, "; ".join(bad))
            if partial is None:
                raise
        good = None
        for listed in reversed(await self.checkpoints.list_checkpoints(instance_id)):
            try:
                good = await self.checkpoints.load_checkpoint(listed.id)
                break
            except CheckpointError as exc:
                logger.error("instance %s: %s", instance_id, exc)
        if good is None:
            raise CheckpointError(
                f"instance {instance_id} has corrupt rows ({'; '.join(bad)}) and no good "
                "checkpoint to recover them from: not resuming it", problems=bad)
        # rows that failed are absent from `partial`; take them from the checkpoint
        states = dict(good.task_states)
        states.update(partial.task_states)
        header_bad = any("header" in problem for problem in bad)
        restored: WorkflowInstance = attrs.evolve(
            partial, task_states=states,
            state=good.workflow_state if header_bad else partial.state)
        await self.store.update_workflow(restored)  # rewrites the rows, checksums and all
        return restored

    async def recover(self) -> list[str]:
        """Resume, in the background, every instance that was running when its process
        died (state Running or WaitingApproval, no live lease). Completed tasks are never
        run again; tasks that were running run again, their attempts counted.

        Returns:
            The ids of the instances resumed.

        Raises:
            RuntimeError: The engine is not entered (``async with``).
        """
        if self._tg is None:
            raise RuntimeError("recover needs a running engine: 'async with Engine(...)'")
        resumed = []
        for state in (S.RUNNING, S.WAITING_APPROVAL, S.PENDING):
            for instance_id, parent_id in await self.store.instance_ids(
                    WorkflowFilters(state=state)):
                if parent_id or instance_id in self._runs:
                    continue  # children are driven by their parents
                holder, until = await self.store.lease_of(instance_id)
                if holder is not None and until > time.time():
                    continue  # alive elsewhere
                if state == S.PENDING and holder is None:
                    continue  # created but never started: not ours to start
                try:
                    # a Pending one was started, but its process died before the start
                    # was recorded
                    run = await self._prepare(await self._load_trusted(instance_id))
                    await self._tg.start(self._drive_started, run, state == S.PENDING)
                except WorkflowError as exc:
                    logger.error("instance %s not recovered: %s", instance_id, exc)
                    continue
                resumed.append(instance_id)
        return resumed

    async def retry(self, instance_id: str, *, from_task: str | None = None
                    ) -> WorkflowInstance:
        """Run a Failed or Cancelled instance again under the same id, with the definition
        it started with: failed, cancelled and never-run tasks run again (or ``from_task``
        and everything downstream of it); completed outputs are reused, and inside a Loop
        only the iterations that did not complete run again.

        Raises:
            InvalidStateTransition: It is not Failed or Cancelled.
            ValidationError: ``from_task`` names no task.
        """
        instance = await self._load_trusted(instance_id)
        if instance.state not in (S.FAILED, S.CANCELLED):
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.RUNNING), instance_id=instance_id)
        dag = DefaultDagBuilder().build_dag(instance.definition)
        again: set[str] = set()
        if from_task is not None:
            if from_task not in dag.index:
                raise ValidationError([Problem(f"no task {from_task!r} in {instance.workflow_id}"
                                               f" (tasks: {', '.join(dag.ids[:10])}...)")])
            again = {from_task} | _downstream(dag, from_task)
        # everything that did not complete runs again (a task skipped because a
        # dependency failed never ran); inside a Loop, iterations are kept one by one
        keep = {key: state for key, state in instance.task_states.items()
                if state.state == TaskStatus.COMPLETED
                and key.split("[", 1)[0] not in again}
        reason = "retry" + (f" from {from_task}" if from_task else "")
        restarted = await self._restart(instance, keep, reason)
        run = await self._prepare(restarted)
        await self._drive(run, first_start=False)
        return await self._load(instance_id)

    async def _restart(self, instance: WorkflowInstance, states: dict[str, Any],
                       reason: str) -> WorkflowInstance:
        """Store ``instance`` Running again with only ``states`` kept, ready to drive."""
        from ._models import StateTransition

        check = self.state_machine.is_valid_transition
        if not check(instance.state, S.RUNNING):
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.RUNNING), instance_id=instance.id)
        restarted = attrs.evolve(
            instance, state=S.RUNNING, task_states=states, error=None, completed_at=None,
            state_history=(*instance.state_history, StateTransition(
                instance.state, S.RUNNING, self.clock.now(), reason)))
        await self._claim(instance.id)
        await self.store.update_workflow(restarted)
        return restarted

    async def archive(self, *, older_than: dt.timedelta) -> list[str]:
        """Move Completed instances that ended more than ``older_than`` ago to Archived,
        deleting their checkpoints.

        Returns:
            The ids archived.
        """
        from ._models import InstanceChanges, StateTransition

        cutoff = self.clock.now() - older_than
        archived = []
        completed = await self.store.list_workflows(WorkflowFilters(state=S.COMPLETED))
        for instance in completed:
            if instance.completed_at is None or instance.completed_at > cutoff:
                continue
            now = self.clock.now()
            await self.store.commit(instance.id, InstanceChanges(
                {"state": S.ARCHIVED},
                transitions=(StateTransition(S.COMPLETED, S.ARCHIVED, now,
                                             f"archived: completed before {cutoff:%Y-%m-%d}"),)))
            for checkpoint in await self.checkpoints.list_checkpoints(instance.id):
                await self.checkpoints.delete_checkpoint(checkpoint.id)
            archived.append(instance.id)
        return archived

    async def checkpoint(self, instance_id: str) -> Any:
        """Write a checkpoint of the instance now (on demand) and return it."""
        run = self._live(instance_id)
        if run is not None:
            await run.snapshot()
            checkpoints = await self.checkpoints.list_checkpoints(instance_id)
            return checkpoints[-1]
        return await self.checkpoints.create_checkpoint(await self._load_trusted(instance_id))

    async def restore(self, instance_id: str, checkpoint_id: str) -> WorkflowInstance:
        """Rewind an instance that is not running to an earlier checkpoint and run it on
        from there (tasks finished after the checkpoint run again).

        Raises:
            CheckpointError: The checkpoint is missing, corrupt or of another instance.
            InvalidStateTransition: The instance is Completed or Archived, or running.
        """
        instance = await self._load(instance_id)
        if instance_id in self._runs or instance.state in (S.COMPLETED, S.ARCHIVED,
                                                           S.ROLLED_BACK):
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.RUNNING), instance_id=instance_id)
        checkpoint = await self.checkpoints.load_checkpoint(checkpoint_id)
        if checkpoint.instance_id != instance_id:
            raise CheckpointError(f"checkpoint {checkpoint_id} is not of {instance_id}",
                                  checkpoint_id=checkpoint_id)
        # from the state it is in now, with the task states it had at the checkpoint
        restarted = await self._restart(instance, dict(checkpoint.task_states),
                                        f"restored to checkpoint {checkpoint_id}")
        run = await self._prepare(restarted)
        await self._drive(run, first_start=False)
        return await self._load(instance_id)


def _downstream(dag: Any, task_id: str) -> set[str]:
    """Every task that depends, directly or not, on ``task_id``."""
    seen: set[int] = set()
    stack = list(dag.children[dag.index[task_id]])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(dag.children[node])
    return {dag.ids[i] for i in seen}
