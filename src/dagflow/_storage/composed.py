"""A store made of parts: the host's own for some concerns, another store for the rest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._models import (
    ApprovalRequest,
    Checkpoint,
    InstanceChanges,
    WorkflowFilters,
    WorkflowInstance,
)
from .memory import MemoryStorage

if TYPE_CHECKING:
    from .._events import WorkflowEvent
    from .._protocols import (
        ApprovalStore,
        CheckpointStore,
        ControlStore,
        InstanceStore,
        LeaseStore,
        WorkflowStorage,
    )

__all__ = ["ComposedStorage"]


class ComposedStorage:
    """A :class:`~dagflow.WorkflowStorage` whose parts come from different places.

    Each part not given comes from ``default`` (a memory store unless you pass one), so a
    host can keep instances in its own table and take the rest as they are::

        store = dagflow.ComposedStorage(instances=MyInstanceTable())
        engine = dagflow.Engine(store=store)

    Leases fence commits only when the lease part and the instance part are one store;
    with parts from different places, run one engine per instance store. The SQL stores
    keep an instance's lease on its row, so their lease part goes with their instance
    part; the memory store's leases go with any instance part.

    Args:
        default: Where every part not given lives.
        instances: Instances, task states and events.
        checkpoints: Snapshots.
        leases: Who drives which instance.
        approvals: Approval gates.
        controls: Cancel/pause/resume requests.
    """

    def __init__(self, default: WorkflowStorage | None = None, *,
                 instances: InstanceStore | None = None,
                 checkpoints: CheckpointStore | None = None,
                 leases: LeaseStore | None = None,
                 approvals: ApprovalStore | None = None,
                 controls: ControlStore | None = None) -> None:
        self.default: WorkflowStorage = default if default is not None else MemoryStorage()
        self.instances: InstanceStore = instances if instances is not None else self.default
        self.checkpoints: CheckpointStore = (checkpoints if checkpoints is not None
                                             else self.default)
        self.leases: LeaseStore = leases if leases is not None else self.default
        self.approvals: ApprovalStore = approvals if approvals is not None else self.default
        self.controls: ControlStore = controls if controls is not None else self.default

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={type(getattr(self, name)).__name__}" for name in
                          ("instances", "checkpoints", "leases", "approvals", "controls"))
        return f"<ComposedStorage {parts}>"

    # instances
    async def store_workflow(self, instance: WorkflowInstance) -> None:
        """Save a new instance."""
        await self.instances.store_workflow(instance)

    async def load_workflow(self, instance_id: str) -> WorkflowInstance | None:
        """Load an instance, or ``None``."""
        return await self.instances.load_workflow(instance_id)

    async def update_workflow(self, instance: WorkflowInstance) -> None:
        """Save changes to an existing instance."""
        await self.instances.update_workflow(instance)

    async def list_workflows(self, filters: WorkflowFilters) -> list[WorkflowInstance]:
        """Instances matching ``filters``, newest first."""
        return await self.instances.list_workflows(filters)

    async def delete_workflow(self, instance_id: str) -> None:
        """Remove an instance and everything recorded about it, in every part."""
        instances: object = self.instances
        if self.checkpoints is not instances:
            for checkpoint in await self.checkpoints.list_checkpoints(instance_id):
                await self.checkpoints.delete_checkpoint(checkpoint.id)
        if self.controls is not instances:
            await self.controls.take_controls(instance_id)
        if self.leases is not instances:
            holder, _ = await self.leases.lease_of(instance_id)
            if holder is not None:
                await self.leases.release_lease(instance_id, holder)
        await self.instances.delete_workflow(instance_id)

    async def instance_ids(self, filters: WorkflowFilters) -> list[tuple[str, str | None]]:
        """``(id, parent_id)`` of matching instances, newest first."""
        return await self.instances.instance_ids(filters)

    async def commit(self, instance_id: str, changes: InstanceChanges) -> None:
        """Apply one small change atomically."""
        await self.instances.commit(instance_id, changes)

    async def commit_many(self, batch: Sequence[tuple[str, InstanceChanges]]) -> None:
        """Apply several instances' changes, all or nothing."""
        await self.instances.commit_many(batch)

    async def load_events(self, instance_id: str, after: int = 0,
                          limit: int | None = None) -> list[WorkflowEvent]:
        """The instance's events with ``seq > after``, in order."""
        return await self.instances.load_events(instance_id, after, limit)

    async def last_event_seq(self, instance_id: str) -> int:
        """The seq of the instance's newest event (0 before any)."""
        return await self.instances.last_event_seq(instance_id)

    # checkpoints
    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Keep a snapshot."""
        await self.checkpoints.save_checkpoint(checkpoint)

    async def load_checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        """A snapshot as stored, or ``None``."""
        return await self.checkpoints.load_checkpoint(checkpoint_id)

    async def list_checkpoints(self, instance_id: str) -> list[Checkpoint]:
        """An instance's snapshots, oldest first."""
        return await self.checkpoints.list_checkpoints(instance_id)

    async def delete_checkpoint(self, checkpoint_id: str) -> None:
        """Remove a snapshot."""
        await self.checkpoints.delete_checkpoint(checkpoint_id)

    # leases
    async def acquire_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        """Take or renew the right to drive an instance."""
        return await self.leases.acquire_lease(instance_id, owner, seconds)

    async def renew_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        """Extend ``owner``'s lease; False once another owner took it."""
        return await self.leases.renew_lease(instance_id, owner, seconds)

    async def release_lease(self, instance_id: str, owner: str) -> None:
        """Give the lease up."""
        await self.leases.release_lease(instance_id, owner)

    async def lease_of(self, instance_id: str) -> tuple[str | None, float]:
        """Who holds the lease, and until when (Unix time)."""
        return await self.leases.lease_of(instance_id)

    # approval gates
    async def save_approval(self, request: ApprovalRequest, state: str = "Pending") -> None:
        """Store a new gate."""
        await self.approvals.save_approval(request, state)

    async def load_approval(self, approval_id: str) -> ApprovalRequest | None:
        """A gate with its votes, or ``None``."""
        return await self.approvals.load_approval(approval_id)

    async def update_approval(
        self, approval_id: str,
        change: Callable[[ApprovalRequest], tuple[ApprovalRequest, str]],
    ) -> ApprovalRequest:
        """Apply ``change`` to a gate atomically."""
        return await self.approvals.update_approval(approval_id, change)

    async def list_approvals(self, *, state: str | None = "Pending",
                             instance_id: str | None = None) -> list[ApprovalRequest]:
        """Gates with this status, earliest deadline first."""
        return await self.approvals.list_approvals(state=state, instance_id=instance_id)

    # control requests
    async def request_control(self, instance_id: str, action: str, reason: str) -> None:
        """Ask the process running an instance to cancel, pause or resume it."""
        await self.controls.request_control(instance_id, action, reason)

    async def take_controls(self, instance_id: str) -> list[tuple[str, str]]:
        """The requests made for an instance, oldest first, removing them."""
        return await self.controls.take_controls(instance_id)

    async def pending_controls(self) -> set[str]:
        """The ids of the instances with requests waiting."""
        return await self.controls.pending_controls()

    async def close(self) -> None:
        """Close ``default`` and every part that can be closed, each once."""
        seen: set[int] = set()
        for part in (self.default, self.instances, self.checkpoints, self.leases,
                     self.approvals, self.controls):
            close: Any = getattr(part, "close", None)
            if id(part) not in seen and close is not None:
                seen.add(id(part))
                await close()
