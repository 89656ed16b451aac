"""The default CheckpointManager: checksummed snapshots of an instance.

A snapshot holds the workflow state, every task state and the execution context. Its
checksum is SHA-256 over its canonical JSON, or HMAC-SHA256 with a key kept outside the
store; a snapshot whose checksum does not match is never loaded.

Snapshots are taken every ``checkpoint_interval_seconds``, before Deploy and Scale tasks,
when a run pauses or ends, and on demand; in between, every task state change is written
as a small checksummed row of its own, so a snapshot's cost never has to be paid per
task.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from ._checksum import Checksums
from ._errors import CheckpointError
from ._models import Checkpoint, TaskState, WorkflowInstance
from ._protocols import CheckpointStore
from ._serde import make_converter

__all__ = ["CheckpointBackend", "DefaultCheckpointManager", "apply_checkpoint"]


class CheckpointBackend(CheckpointStore, Protocol):
    """What the default CheckpointManager needs of a store: its checkpoint part, and
    reading an instance back (to restore it). Every dagflow store has both."""

    async def load_workflow(self, instance_id: str) -> WorkflowInstance | None:
        """Load an instance, or ``None`` if there is none with this id."""
        ...


@attrs.define(eq=False)
class DefaultCheckpointManager:
    """The default :class:`~dagflow.CheckpointManager`, over a store.

    Subclass it to change one method and pass it as ``Engine(checkpoints=...)``.

    Args:
        store: Where snapshots are kept (any dagflow store).
        key: HMAC key for checksums (default: SHA-256 without a key).
        now: Where timestamps come from (the engine's clock).
    """

    store: CheckpointBackend
    key: bytes | None = attrs.field(default=None, kw_only=True)
    now: Callable[[], dt.datetime] | None = attrs.field(default=None, kw_only=True)
    _checksum: Checksums = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._checksum = Checksums(self.key)

    def __repr__(self) -> str:
        return f"<DefaultCheckpointManager store={type(self.store).__name__}>"

    def _digest(self, checkpoint: Checkpoint) -> str:
        return self._checksum(*self._parts(checkpoint))

    def snapshot(self, instance: WorkflowInstance) -> Checkpoint:
        """A checksummed snapshot of ``instance`` (not stored)."""
        when = self.now() if self.now is not None else dt.datetime.now(dt.UTC)
        checkpoint = Checkpoint(
            id=f"cp_{uuid.uuid4().hex}", timestamp=when, workflow_state=instance.state,
            task_states=dict(instance.task_states),
            execution_context=instance.execution_context, instance_id=instance.id)
        return attrs.evolve(checkpoint, checksum=self._digest(checkpoint))

    async def create_checkpoint(self, instance: WorkflowInstance) -> Checkpoint:
        """Snapshot ``instance`` and store it."""
        checkpoint = self.snapshot(instance)
        await self.store.save_checkpoint(checkpoint)
        return checkpoint

    def verify(self, checkpoint: Checkpoint) -> Checkpoint:
        """``checkpoint`` if its checksum matches.

        Raises:
            CheckpointError: It is corrupt or was tampered with.
        """
        if not self._checksum.matches(checkpoint.checksum, *self._parts(checkpoint)):
            raise CheckpointError(
                f"checkpoint {checkpoint.id} of instance {checkpoint.instance_id} does not "
                "match its checksum (corrupt or tampered with): not loading it",
                checkpoint_id=checkpoint.id)
        return checkpoint

    def _parts(self, checkpoint: Checkpoint) -> tuple[Any, ...]:
        data = make_converter().unstructure(attrs.evolve(checkpoint, checksum=""))
        return ("checkpoint", json.dumps(data, sort_keys=True, default=str))

    async def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """One snapshot, verified.

        Raises:
            CheckpointError: There is none with this id, or it fails its checksum.
        """
        checkpoint = await self.store.load_checkpoint(checkpoint_id)
        if checkpoint is None:
            raise CheckpointError(f"no checkpoint has id {checkpoint_id!r}",
                                  checkpoint_id=checkpoint_id)
        return self.verify(checkpoint)

    async def list_checkpoints(self, instance_id: str) -> list[Checkpoint]:
        """Every stored snapshot of an instance, oldest first (not verified: load one to
        verify it)."""
        return list(await self.store.list_checkpoints(instance_id))

    async def latest_good(self, instance_id: str) -> tuple[Checkpoint | None, list[str]]:
        """The newest snapshot that passes its checksum, and what was wrong with newer
        ones."""
        problems: list[str] = []
        for checkpoint in reversed(await self.list_checkpoints(instance_id)):
            try:
                return self.verify(checkpoint), problems
            except CheckpointError as exc:
                problems.append(str(exc))
        return None, problems

    async def restore_from_checkpoint(self, instance_id: str, checkpoint_id: str
                                      ) -> WorkflowInstance:
        """The instance as it was at the snapshot (nothing is written).

        Raises:
            CheckpointError: The snapshot is missing, corrupt, or of another instance.
        """
        checkpoint = await self.load_checkpoint(checkpoint_id)
        if checkpoint.instance_id != instance_id:
            raise CheckpointError(f"checkpoint {checkpoint_id} belongs to instance "
                                  f"{checkpoint.instance_id}, not {instance_id}",
                                  checkpoint_id=checkpoint_id)
        instance = await self.store.load_workflow(instance_id)
        if instance is None:
            raise CheckpointError(f"instance {instance_id} is gone",
                                  checkpoint_id=checkpoint_id)
        return apply_checkpoint(instance, checkpoint)

    async def delete_checkpoint(self, checkpoint_id: str) -> None:
        """Remove one snapshot."""
        await self.store.delete_checkpoint(checkpoint_id)


def apply_checkpoint(instance: WorkflowInstance, checkpoint: Checkpoint) -> WorkflowInstance:
    """``instance`` with the state, task states and context of ``checkpoint``."""
    states: dict[str, TaskState] = dict(checkpoint.task_states)
    return attrs.evolve(instance, state=checkpoint.workflow_state, task_states=states,
                        execution_context=checkpoint.execution_context)
