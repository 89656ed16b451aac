"""``memory://``: instances in dicts, for tests and short runs. Lost when the process ends."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import attrs

from .._errors import ApprovalError, WorkflowNotFound
from .._events import WorkflowEvent
from .._models import (
    ApprovalRequest,
    Checkpoint,
    ExecutionContext,
    InstanceChanges,
    StateTransition,
    TaskState,
    WorkflowFilters,
    WorkflowInstance,
)

__all__ = ["MemoryStorage"]


@attrs.define(eq=False)
class _Record:
    """One instance, kept in parts so that a change costs O(size of the change)."""

    instance: WorkflowInstance  # header fields; its task_states/history are stale
    task_states: dict[str, TaskState]
    events: list[WorkflowEvent]
    transitions: list[StateTransition]

    def build(self) -> WorkflowInstance:
        context = self.instance.execution_context
        outputs = {k: s.output for k, s in self.task_states.items() if s.output is not None}
        return attrs.evolve(
            self.instance,
            task_states=dict(self.task_states),
            state_history=tuple(self.transitions),
            execution_context=ExecutionContext(context.variables, outputs, context.environment),
        )


@attrs.define(eq=False)
class MemoryStorage:
    """The :class:`~dagflow.WorkflowStorage` for ``memory://``.

    Nothing is durable; everything else behaves like the durable stores, so tests written
    against it hold for them too. Safe to share between tasks of one event loop.
    """

    _records: dict[str, _Record] = attrs.Factory(dict)
    _checkpoints: dict[str, Checkpoint] = attrs.Factory(dict)
    _leases: dict[str, tuple[str, float]] = attrs.Factory(dict)
    _tokens: dict[str, int] = attrs.Factory(dict)  # instance -> lease generation
    _held: dict[tuple[str, str], int] = attrs.Factory(dict)  # (instance, owner) -> token
    _controls: dict[str, list[tuple[str, str]]] = attrs.Factory(dict)
    _approvals: dict[str, tuple[ApprovalRequest, str]] = attrs.Factory(dict)
    keep_checkpoints: int = 10

    def __repr__(self) -> str:
        return f"<MemoryStorage instances={len(self._records)}>"

    async def store_workflow(self, instance: WorkflowInstance) -> None:
        """Save a new instance (or replace one with the same id)."""
        self._records[instance.id] = _Record(
            instance, dict(instance.task_states), [], list(instance.state_history))

    async def load_workflow(self, instance_id: str) -> WorkflowInstance | None:
        """The instance as last committed, or ``None``."""
        record = self._records.get(instance_id)
        return record.build() if record is not None else None

    async def update_workflow(self, instance: WorkflowInstance) -> None:
        """Replace the stored instance's fields, task states and history; events stay.

        Raises:
            WorkflowNotFound: No instance has this id.
        """
        record = self._get(instance.id)
        record.instance = instance
        record.task_states = dict(instance.task_states)
        record.transitions = list(instance.state_history)

    async def list_workflows(self, filters: WorkflowFilters) -> list[WorkflowInstance]:
        """Matching instances, newest first."""
        out: list[WorkflowInstance] = []
        if filters.limit is not None and filters.limit <= 0:
            return out
        newest_first = sorted(self._records.values(), reverse=True,
                              key=lambda r: (r.instance.created_at, r.instance.id))
        for record in newest_first:
            head = record.instance
            if filters.state is not None and head.state != filters.state:
                continue
            if filters.user_id is not None and head.created_by != filters.user_id:
                continue
            if filters.workflow_id is not None and head.workflow_id != filters.workflow_id:
                continue
            if filters.created_after is not None and head.created_at <= filters.created_after:
                continue
            out.append(record.build())
            if filters.limit is not None and len(out) >= filters.limit:
                break
        return out

    async def instance_ids(self, filters: WorkflowFilters) -> list[tuple[str, str | None]]:
        """``(id, parent_id)`` of matching instances, newest first."""
        return [(i.id, i.parent_id) for i in await self.list_workflows(filters)]

    async def last_event_seq(self, instance_id: str) -> int:
        """The seq of the instance's newest event (0 before any)."""
        events = self._get(instance_id).events
        return events[-1].seq if events else 0

    async def delete_workflow(self, instance_id: str) -> None:
        """Forget an instance and everything about it (no error if there is none)."""
        self._records.pop(instance_id, None)
        self._leases.pop(instance_id, None)
        self._tokens.pop(instance_id, None)
        for key in [k for k in self._held if k[0] == instance_id]:
            del self._held[key]
        self._controls.pop(instance_id, None)
        for approval_id, (request, _) in list(self._approvals.items()):
            if request.instance_id == instance_id:
                del self._approvals[approval_id]
        for checkpoint in [c for c in self._checkpoints.values()
                           if c.instance_id == instance_id]:
            del self._checkpoints[checkpoint.id]

    async def commit(self, instance_id: str, changes: InstanceChanges) -> None:
        """Apply one change.

        Raises:
            WorkflowNotFound: No instance has this id.
        """
        record = self._get(instance_id)
        if changes.fields:
            record.instance = attrs.evolve(record.instance, **changes.fields)
        for state in changes.task_states:
            record.task_states[state.task_id] = state
        if changes.events:
            events = record.events
            if events and changes.events[0].seq < events[-1].seq:
                events.extend(changes.events)  # committed out of order: keep seq order
                events.sort(key=lambda e: e.seq)
            else:
                events.extend(changes.events)
        if changes.transitions:
            record.transitions.extend(changes.transitions)

    async def commit_many(self, batch: Sequence[tuple[str, InstanceChanges]]) -> None:
        """Apply several instances' changes, all or nothing.

        Raises:
            WorkflowNotFound: One of the instances does not exist (nothing is applied).
        """
        for instance_id, _ in batch:
            self._get(instance_id)  # every one exists before anything changes
        for instance_id, changes in batch:
            await self.commit(instance_id, changes)

    async def load_events(self, instance_id: str, after: int = 0,
                          limit: int | None = None) -> list[WorkflowEvent]:
        """Events with ``seq > after``.

        Raises:
            WorkflowNotFound: No instance has this id.
        """
        events = self._get(instance_id).events
        # seq n sits at index n - 1 unless history was imported with gaps; check once
        start = after if 0 <= after <= len(events) and (
            after == 0 or events[after - 1].seq == after) else _first_after(events, after)
        end = len(events) if limit is None else start + limit
        return events[start:end]

    async def close(self) -> None:
        """Nothing to release."""

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Keep a snapshot (the newest ``keep_checkpoints`` per instance)."""
        self._checkpoints[checkpoint.id] = checkpoint
        mine = [c for c in self._checkpoints.values()
                if c.instance_id == checkpoint.instance_id]
        for stale in mine[:-self.keep_checkpoints]:
            del self._checkpoints[stale.id]

    async def load_checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        """A snapshot, or ``None``."""
        return self._checkpoints.get(checkpoint_id)

    async def list_checkpoints(self, instance_id: str) -> list[Checkpoint]:
        """An instance's snapshots, oldest first."""
        return [c for c in self._checkpoints.values() if c.instance_id == instance_id]

    async def delete_checkpoint(self, checkpoint_id: str) -> None:
        """Forget a snapshot."""
        self._checkpoints.pop(checkpoint_id, None)

    async def acquire_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        """Take or renew the right to drive an instance (False if someone else has it, or
        took it since ``owner`` last held it). A lease names an instance id: the instance
        itself may live in another store (``ComposedStorage``)."""
        now = time.time()
        holder = self._leases.get(instance_id)
        if holder is not None and holder[0] != owner and holder[1] > now:
            return False
        if holder is None or holder[0] != owner:  # a new holder: a new generation
            self._tokens[instance_id] = self._tokens.get(instance_id, 0) + 1
        self._held[(instance_id, owner)] = self._tokens[instance_id]
        self._leases[instance_id] = (owner, now + seconds)
        return True

    async def renew_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        """Extend ``owner``'s lease; False once another owner has taken it since."""
        holder = self._leases.get(instance_id)
        held = self._held.get((instance_id, owner))
        if holder is None or holder[0] != owner or held != self._tokens.get(instance_id):
            return False
        self._leases[instance_id] = (owner, time.time() + seconds)
        return True

    async def release_lease(self, instance_id: str, owner: str) -> None:
        """Give up the lease if ``owner`` holds it."""
        holder = self._leases.get(instance_id)
        if holder is not None and holder[0] == owner:
            del self._leases[instance_id]
        self._held.pop((instance_id, owner), None)

    async def save_approval(self, request: ApprovalRequest, state: str = "Pending") -> None:
        """Store a new approval gate."""
        self._approvals[request.approval_id] = (request, state)

    async def load_approval(self, approval_id: str) -> ApprovalRequest | None:
        """A gate with its votes, or ``None``."""
        found = self._approvals.get(approval_id)
        return found[0] if found is not None else None

    async def update_approval(
        self, approval_id: str,
        change: Callable[[ApprovalRequest], tuple[ApprovalRequest, str]],
    ) -> ApprovalRequest:
        """Change a gate atomically (see the SQL stores).

        Raises:
            ApprovalError: No gate has this id (or what ``change`` raised).
        """
        found = self._approvals.get(approval_id)
        if found is None:
            raise ApprovalError(f"no approval has id {approval_id!r}",
                                approval_id=approval_id)
        updated, state = change(found[0])
        self._approvals[approval_id] = (updated, state)
        return updated

    async def list_approvals(self, *, state: str | None = "Pending",
                             instance_id: str | None = None) -> list[ApprovalRequest]:
        """Gates in ``state`` (None: all), oldest deadline first."""
        found = [r for r, st in self._approvals.values()
                 if (state is None or st == state)
                 and (instance_id is None or r.instance_id == instance_id)]
        return sorted(found, key=lambda r: (r.expires_at, r.approval_id))

    async def request_control(self, instance_id: str, action: str, reason: str) -> None:
        """Ask the engine running an instance to ``cancel``, ``pause`` or ``resume`` it."""
        self._controls.setdefault(instance_id, []).append((action, reason))

    async def take_controls(self, instance_id: str) -> list[tuple[str, str]]:
        """The requests made for an instance, oldest first, removing them."""
        return self._controls.pop(instance_id, [])

    async def pending_controls(self) -> set[str]:
        """The ids of the instances with requests waiting."""
        return {instance_id for instance_id, asked in self._controls.items() if asked}

    async def lease_of(self, instance_id: str) -> tuple[str | None, float]:
        """Who holds the lease and until when (Unix time)."""
        return self._leases.get(instance_id, (None, 0.0))

    def _get(self, instance_id: str) -> _Record:
        try:
            return self._records[instance_id]
        except KeyError:
            raise WorkflowNotFound(instance_id=instance_id) from None


def _first_after(events: list[WorkflowEvent], after: int) -> int:
    for i, event in enumerate(events):
        if event.seq > after:
            return i
    return len(events)
