"""The runs of one engine: which instances this process drives, claiming each with a
lease, preparing and driving it (in the background or awaited), the child runs of
Subworkflow tasks, and waiting for runs to end."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs

from .._context import TaskContext
from .._errors import (
    CheckpointError,
    InvalidStateTransition,
    StorageError,
    TaskExecutionFailed,
    WorkflowError,
    WorkflowNotFound,
)
from .._gc import building
from .._interp import definition_refs
from .._models import Subworkflow, TaskStatus, WorkflowInstance, WorkflowState
from .._state import TERMINAL_STATES
from ._book import Book
from ._committer import Committer
from ._create import Catalog, create_instance
from ._run import Run
from ._services import Services

__all__ = ["Runner"]

logger = logging.getLogger("dagflow")
S = WorkflowState


@attrs.define(eq=False, repr=False)
class Runner:
    """Drives instances for one engine; ``tg`` is the engine's task group (``None``
    outside ``async with Engine()``)."""

    services: Services
    catalog: Catalog
    runs: dict[str, Run] = attrs.Factory(dict)
    done: dict[str, anyio.Event] = attrs.Factory(dict)
    tg: Any = None
    committer: Committer = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.committer = Committer(self.services.instances, self.services.clock)

    def enter(self, tg: Any) -> None:
        """The engine was entered: run its shared tasks (the group commit of every run,
        the look for control requests) in ``tg``, where background runs live too."""
        self.tg = tg
        tg.start_soon(self.committer.run)
        tg.start_soon(self.watch_controls)

    def __repr__(self) -> str:
        return f"<Runner running={len(self.runs)}>"

    # ------------------------------------------------------------------ reading

    async def load(self, instance_id: str) -> WorkflowInstance:
        """The stored instance.

        Raises:
            WorkflowNotFound: No instance has this id.
        """
        instance = await self.services.instances.load_workflow(instance_id)
        if instance is None:
            raise WorkflowNotFound(instance_id=instance_id)
        return instance

    async def load_trusted(self, instance_id: str) -> WorkflowInstance:
        """The stored instance, never trusting a row that fails its checksum: such a row
        is replaced by the task's state in the newest checkpoint that passes its own.

        Raises:
            WorkflowNotFound: No instance has this id.
            CheckpointError: A row is corrupt and no good checkpoint can stand in for it.
        """
        try:
            return await self.load(instance_id)
        except CheckpointError as exc:
            partial = exc.partial
            bad = exc.problems or (str(exc),)
            logger.error("instance %s: %s", instance_id, "; ".join(bad))
            if partial is None:
                raise
        checkpoints = self.services.checkpoints
        good = None
        for listed in reversed(await checkpoints.list_checkpoints(instance_id)):
            try:
                good = await checkpoints.load_checkpoint(listed.id)
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
        # rewrites the rows, checksums and all
        await self.services.instances.update_workflow(restored)
        return restored

    def waiter(self, instance_id: str) -> Callable[[], Awaitable[None]] | None:
        """Returns at the running instance's next commit; ``None`` if it does not run here."""
        run = self.runs.get(instance_id)
        return run.book.next_change() if run is not None else None

    async def running_elsewhere(self, instance_id: str) -> bool:
        """Whether another process holds a live lease on the instance."""
        holder, until = await self.services.leases.lease_of(instance_id)
        return holder is not None and holder != self.services.owner and until > time.time()

    # ------------------------------------------------------------------ driving

    async def claim(self, instance_id: str) -> None:
        """Take the instance's lease, or explain who has it.

        Raises:
            WorkflowError: Another live process is running it.
        """
        services = self.services
        with services.clock.busy():
            if await services.leases.acquire_lease(instance_id, services.owner,
                                                   services.settings.lease_seconds):
                return
            holder, until = await services.leases.lease_of(instance_id)
        left = max(0.0, until - time.time())
        raise WorkflowError(
            f"instance {instance_id} is being run by {holder} (its lease runs for another "
            f"{left:.0f}s): it cannot be resumed twice; if that process died, try again "
            "once the lease has expired")

    async def prepare(self, instance: WorkflowInstance, chain: tuple[str, ...] = ()) -> Run:
        """The run of ``instance``: its secrets read, its graph built."""
        services = self.services
        secrets: dict[str, str] = {}
        for ref in definition_refs(instance.definition):
            if ref.kind == "secrets" and ref.parts[0] not in secrets:
                value = await services.secrets.get_secret(ref.parts[0])
                if value is not None:
                    secrets[ref.parts[0]] = value
        seq = (await services.instances.last_event_seq(instance.id)
               if instance.state != S.PENDING else 0)
        builder = services.dag_builder
        with building(len(instance.definition.tasks)):
            dag = builder.optimize_parallelism(builder.build_dag(instance.definition))
            run: Run

            def store_failed(exc: BaseException) -> None:
                run.storage_failed(exc)

            book = Book(services, instance, dag, secrets, instance.state, seq, store_failed,
                        chain, self.committer)
            run = Run(book, self, watch_controls=self.tg is None)
            return run

    async def start(self, run: Run, first_start: bool, *, claimed: bool = False) -> None:
        """Drive ``run`` in the engine's task group; return once it is registered.

        Raises:
            RuntimeError: The engine is not entered.
        """
        if self.tg is None:
            raise RuntimeError("background runs need 'async with Engine(...)'")
        await self.tg.start(self._drive_started, run, first_start, claimed)

    async def _drive_started(self, run: Run, first_start: bool, claimed: bool, *,
                             task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        # registered before the caller goes on, so that its wait() waits for this run
        self.done.setdefault(run.instance_id, anyio.Event())
        task_status.started()
        try:
            await self.drive(run, first_start=first_start, claimed=claimed)
        except WorkflowError as exc:
            # nobody awaits a background run: say why it stopped, and keep the engine and
            # the other runs going (the instance stays as last recorded, recoverable)
            text = str(exc)
            logger.error("%s", text if run.instance_id in text
                         else f"instance {run.instance_id} stopped: {text}")
        except Exception:
            logger.exception("instance %s stopped by an unexpected error; it stays as last "
                             "recorded and recover() continues it", run.instance_id)
        finally:
            done = self.done.pop(run.instance_id, None)
            if done is not None:  # the run never got going (its lease was taken)
                done.set()

    async def drive(self, run: Run, *, first_start: bool, claimed: bool = False) -> None:
        """Claim the instance (unless the caller just did) and run it to its end (or
        until it is paused or stopped).

        Raises:
            InvalidStateTransition: It already runs in this process.
            WorkflowError: Another process holds its lease.
            StorageError: The store refused a write; the instance stays as last recorded.
        """
        instance_id = run.instance_id
        if instance_id in self.runs:
            raise InvalidStateTransition(from_state=str(run.state), to_state=str(S.RUNNING),
                                         instance_id=instance_id)
        if not claimed:
            await self.claim(instance_id)
        self.runs[instance_id] = run
        done = self.done.setdefault(instance_id, anyio.Event())
        journal = run.book.journal
        try:
            await run.execute(first_start=first_start)
            if journal.error is not None:
                # nothing after the failed write was recorded: say so, don't report a state
                raise StorageError(f"instance {instance_id} stopped: the store refused a "
                                   f"write ({journal.error}); it stays as last recorded "
                                   "and can be recovered") from journal.error
        finally:
            del self.runs[instance_id]
            self.done.pop(instance_id, None)
            done.set()
            run.book.changed()
            services = self.services
            with anyio.CancelScope(shield=True), services.clock.busy():
                try:
                    await services.leases.release_lease(instance_id, services.owner)
                except Exception as exc:  # it expires by itself
                    logger.warning("instance %s: cannot release the lease: %s",
                                   instance_id, exc)

    async def run_child(self, parent: Book, ctx: TaskContext, spec: Subworkflow,
                        chain: tuple[str, ...]) -> WorkflowInstance:
        """Run (or resume, or reuse) the child instance of a Subworkflow task attempt."""
        base = parent.instance.workdir or os.getcwd()
        definition = self.catalog.find_workflow(spec.workflow_id, base)
        if definition is None:
            raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False, kind="not_found",
                                      reason=f"no workflow {spec.workflow_id!r}")
        child_id = _child_id(parent.instance_id, ctx.task_id, ctx.loop_index, ctx.attempt)
        previous = _child_id(parent.instance_id, ctx.task_id, ctx.loop_index,
                             ctx.attempt - 1)
        # a child that was running when its parent crashed is adopted, not started again
        for candidate in ((previous, child_id) if ctx.attempt > 1 else (child_id,)):
            existing = await self.services.instances.load_workflow(candidate)
            if existing is None:
                continue
            if existing.state in TERMINAL_STATES:
                if candidate == child_id:
                    return existing
                continue
            run = await self.prepare(existing, chain)
            await self.drive(run, first_start=False)
            return await self.load(candidate)
        child_base = os.path.dirname(definition.source_path or "") or base
        instance = await create_instance(
            self.services, self.catalog, definition, parent.instance.created_by,
            dict(spec.inputs), workdir=child_base, instance_id=child_id,
            parent_id=parent.instance_id)
        run = await self.prepare(instance, chain)
        await self.drive(run, first_start=True)
        return await self.load(child_id)

    async def cancel_child(self, parent: Book, ctx: TaskContext, reason: str) -> None:
        """Cancel the child instance of a Subworkflow attempt whose parent stopped it (it
        runs no more: the parent's cancellation ended its run), unless it finished."""
        child = await self.services.instances.load_workflow(
            _child_id(parent.instance_id, ctx.task_id, ctx.loop_index, ctx.attempt))
        if child is not None and child.state not in TERMINAL_STATES:
            await self._cancel_tree(child, reason)

    async def _cancel_tree(self, instance: WorkflowInstance, reason: str) -> None:
        """Cancel a stopped instance, then the children its Subworkflow tasks were running
        (their runs ended with its own), and theirs."""
        await self.cancel_stopped(instance, reason)
        for task in instance.definition.tasks:
            state = instance.task_states.get(task.id)
            if not (isinstance(task.type, Subworkflow) and state is not None
                    and state.state == TaskStatus.RUNNING):
                continue
            child = await self.services.instances.load_workflow(
                _child_id(instance.id, task.id, None, state.attempts))
            if child is not None and child.state not in TERMINAL_STATES:
                await self._cancel_tree(child, reason)

    async def cancel_stopped(self, instance: WorkflowInstance, reason: str) -> None:
        """Cancel an instance that runs nowhere: its unfinished tasks are cancelled (and
        ``all_done`` ones run), and it ends Cancelled."""
        run = await self.prepare(instance)
        run.stopping, run.failure = "cancelled", reason
        await self.drive(run, first_start=False)

    async def watch_controls(self) -> None:
        """Carry out the cancel/pause/resume requests other processes leave for the runs
        of this engine: one look at the store for all of them, not one per run."""
        services = self.services
        while True:
            await anyio.sleep(services.settings.control_poll_seconds)  # real time, like I/O
            if not self.runs:
                continue
            try:
                with services.clock.busy():
                    pending = await services.controls.pending_controls()
                    asked = {instance_id: await services.controls.take_controls(instance_id)
                             for instance_id in pending if instance_id in self.runs}
            except Exception as exc:
                logger.warning("cannot read control requests: %s", exc)
                continue
            for instance_id, requests in asked.items():
                run = self.runs.get(instance_id)
                if run is not None:
                    run.apply_controls(requests)

    async def wait(self, instance_id: str, *, poll_seconds: float = 0.2) -> WorkflowInstance:
        """Until the instance stops running here (or, run elsewhere, reaches a final
        state); return it."""
        done = self.done.get(instance_id)
        if done is not None:
            await done.wait()
            return await self.load(instance_id)
        while True:
            instance = await self.load(instance_id)
            if instance.state in TERMINAL_STATES or (
                    instance_id not in self.runs and instance.state in (S.PENDING, S.PAUSED)):
                return instance
            await anyio.sleep(poll_seconds)


def _child_id(parent_id: str, task_id: str, loop_index: int | None, attempt: int) -> str:
    """The child instance of a Subworkflow attempt: ``PARENT.TASK[.INDEX][.aN]``."""
    stem = f"{parent_id}.{task_id}" + ("" if loop_index is None else f".{loop_index}")
    return stem if attempt <= 1 else f"{stem}.a{attempt}"
