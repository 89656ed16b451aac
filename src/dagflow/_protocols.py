"""Every seam of dagflow, as a :class:`typing.Protocol`.

These are the seed architecture's traits in Python form. Defaults do not inherit from
them (mypy checks conformance), and ``Engine(...)`` accepts any object that fits; every
method declared here is one the engine calls, for what its name says. Parsing, graph
building and refereeing state changes do no I/O, so their methods are synchronous;
everything that may touch a network, a disk or a clock is ``async``.

Storage is split by concern (instances, checkpoints, leases, approval gates, control
requests): the built-in stores implement all of them, and a host may implement one and
take the defaults for the rest (:class:`~dagflow.ComposedStorage`).

What a task handler sees (``TaskHandler``, ``ClusterClient``, ``TaskContext``) lives in
``_context``, and the clock in ``_clock``; they are re-exported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._clock import Clock
from ._context import ClusterClient, TaskContext, TaskHandler
from ._models import (
    ApprovalRequest,
    ApprovalStatus,
    Checkpoint,
    InstanceChanges,
    StateTransition,
    TaskDefinition,
    TaskOutput,
    WorkflowDefinition,
    WorkflowFilters,
    WorkflowInstance,
    WorkflowState,
)

if TYPE_CHECKING:
    from ._dag import WorkflowDag
    from ._events import WorkflowEvent

__all__ = [
    "ApprovalStore",
    "ApprovalSystem",
    "CheckpointManager",
    "CheckpointStore",
    "Clock",
    "ClusterClient",
    "ControlStore",
    "DagBuilder",
    "InstanceStore",
    "LeaseStore",
    "SecretProvider",
    "StateMachine",
    "TaskExecutor",
    "TaskHandler",
    "WorkflowEngine",
    "WorkflowParser",
    "WorkflowStorage",
]


@runtime_checkable
class WorkflowParser(Protocol):
    """Turns workflow text into validated definitions.

    The engine parses with it (``engine.load``, ``engine.loads``) and validates with it
    every definition a run is created from that it did not parse itself.
    """

    def parse_yaml(self, text: str | bytes, *, filename: str | None = None) -> WorkflowDefinition:
        """Parse and validate YAML; raise ParseError/ValidationError listing every problem."""
        ...

    def parse_json(self, text: str | bytes, *, filename: str | None = None) -> WorkflowDefinition:
        """Parse and validate JSON; raise ParseError/ValidationError listing every problem."""
        ...

    def validate(self, workflow: WorkflowDefinition) -> None:
        """Raise ValidationError if ``workflow`` (perhaps built in Python) is wrong."""
        ...


@runtime_checkable
class DagBuilder(Protocol):
    """Builds the dependency graph a run is scheduled by."""

    def build_dag(self, workflow: WorkflowDefinition) -> WorkflowDag:
        """Build the graph; raise CycleDetected (with ``.path``) on a cycle."""
        ...

    def optimize_parallelism(self, dag: WorkflowDag) -> WorkflowDag:
        """The graph the run is scheduled by (the engine passes every built graph through
        it once, before the run starts)."""
        ...


@runtime_checkable
class TaskExecutor(Protocol):
    """Runs single attempts of leaf tasks (Command, Http, Query, Deploy, Scale, Plugin and
    custom types). Loop, Conditional, Subworkflow and Approval are the engine's own flow
    control and never reach it; the engine owns scheduling, retries and cancellation
    (cancelling the attempt's scope).

    A failed attempt raises :class:`~dagflow.TaskExecutionFailed` (carrying what it
    produced); anything else it raises is a failure too.
    """

    async def execute_task(self, task: TaskDefinition, context: TaskContext) -> TaskOutput:
        """Run one attempt of ``task`` (``context.spec`` is its interpolated type)."""
        ...


@runtime_checkable
class CheckpointManager(Protocol):
    """Takes, verifies and restores recovery points."""

    async def create_checkpoint(self, instance: WorkflowInstance) -> Checkpoint:
        """Record a checkpoint of ``instance`` and return it."""
        ...

    async def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """Load one checkpoint, verifying its checksum (CheckpointError if corrupt)."""
        ...

    async def list_checkpoints(self, instance_id: str) -> list[Checkpoint]:
        """Every checkpoint of an instance, oldest first."""
        ...

    async def restore_from_checkpoint(
        self, instance_id: str, checkpoint_id: str
    ) -> WorkflowInstance:
        """The instance as it was at ``checkpoint_id`` (CheckpointError if the checkpoint
        is missing, corrupt or of another instance); nothing is written."""
        ...

    async def delete_checkpoint(self, checkpoint_id: str) -> None:
        """Remove one checkpoint."""
        ...


@runtime_checkable
class ApprovalSystem(Protocol):
    """Approval gates: requests, decisions and their status.

    The seed's five methods, plus what the engine needs to wait for decisions without
    polling and to close gates whose task was cancelled. Decisions follow the contract's
    rules (listed approvers only, one vote each, a rejection vetoes, no self-approval
    unless allowed, nothing after the deadline); ``dagflow._approval._rules`` has them as
    pure functions.
    """

    async def request_approval(
        self, workflow_id: str, task_id: str, approvers: Sequence[str], timeout_seconds: int,
        *, instance_id: str = "", min_approvals: int = 1, allow_self_approval: bool = False,
        requested_by: str = "",
    ) -> str:
        """Open a gate; return its unguessable approval id."""
        ...

    async def grant_approval(
        self, approval_id: str, approver: str, comment: str | None = None
    ) -> None:
        """Record a grant by ``approver`` (ApprovalError if not allowed)."""
        ...

    async def reject_approval(self, approval_id: str, approver: str, reason: str) -> None:
        """Record a rejection by ``approver`` (ApprovalError if not allowed)."""
        ...

    async def check_approval_status(self, approval_id: str) -> ApprovalStatus:
        """Pending, Approved, Rejected or Expired."""
        ...

    async def list_pending_approvals(self, approver: str | None = None) -> list[ApprovalRequest]:
        """Pending gates ``approver`` may decide (all of them for ``None``)."""
        ...

    async def get_approval(self, approval_id: str) -> ApprovalRequest:
        """The gate with its votes (ApprovalError if unknown)."""
        ...

    async def wait_for_change(self, approval_id: str, seen_votes: int) -> None:
        """Return once the gate has more than ``seen_votes`` votes, or was cancelled."""
        ...

    async def cancel_approval(self, approval_id: str) -> None:
        """Close a gate: its task was cancelled, or has consumed its decision. A closed gate
        takes no more votes and keeps its decision."""
        ...

    async def list_instance_approvals(self, instance_id: str) -> list[ApprovalRequest]:
        """Every gate an instance opened, open or closed, oldest first."""
        ...


@runtime_checkable
class StateMachine(Protocol):
    """Referee of workflow state changes.

    The engine asks :meth:`transition` about every change of an instance's state before
    it records it, and records what it returns in the instance's ``state_history`` (the
    one history there is: it survives restarts with the instance). :meth:`transition` is
    synchronous so that nothing else in the run happens between the decision and the
    change.
    """

    def is_valid_transition(self, from_state: WorkflowState, to_state: WorkflowState) -> bool:
        """Whether the change is allowed (asked before work that would need it starts:
        retry, restore, resume)."""
        ...

    def transition(
        self,
        instance_id: str,
        from_state: WorkflowState,
        to_state: WorkflowState,
        reason: str | None = None,
    ) -> StateTransition:
        """The record of the change, timestamped; raise InvalidStateTransition to refuse
        it (the instance then stays as it is)."""
        ...


# --------------------------------------------------------------------------- storage


@runtime_checkable
class InstanceStore(Protocol):
    """Instances, their task states and their events: what a run's journal commits, one
    atomic change at a time. Must be safe to call from concurrent tasks."""

    async def store_workflow(self, instance: WorkflowInstance) -> None:
        """Save a new instance."""
        ...

    async def load_workflow(self, instance_id: str) -> WorkflowInstance | None:
        """Load an instance, or ``None`` if there is none with this id."""
        ...

    async def update_workflow(self, instance: WorkflowInstance) -> None:
        """Save changes to an existing instance."""
        ...

    async def list_workflows(self, filters: WorkflowFilters) -> list[WorkflowInstance]:
        """Instances matching ``filters``, newest first."""
        ...

    async def delete_workflow(self, instance_id: str) -> None:
        """Remove an instance and everything recorded about it."""
        ...

    async def instance_ids(self, filters: WorkflowFilters) -> list[tuple[str, str | None]]:
        """``(id, parent_id)`` of matching instances, newest first, without loading them."""
        ...

    async def commit(self, instance_id: str, changes: InstanceChanges) -> None:
        """Apply one small change atomically (task states, events, a transition).

        Raises:
            WorkflowNotFound: No stored instance has this id.
            StorageError: The change could not be made durable; nothing of it is applied.
        """
        ...

    async def commit_many(self, batch: Sequence[tuple[str, InstanceChanges]]) -> None:
        """Apply the changes of several instances at once, all or nothing (the engine's
        group commit for all of its runs).

        Raises:
            WorkflowNotFound: One of the instances does not exist; nothing is applied.
            StorageError: As for :meth:`commit`; nothing is applied.
        """
        ...

    async def load_events(self, instance_id: str, after: int = 0,
                          limit: int | None = None) -> list[WorkflowEvent]:
        """The instance's events with ``seq > after``, in order (at most ``limit``)."""
        ...

    async def last_event_seq(self, instance_id: str) -> int:
        """The seq of the instance's newest event (0 before any)."""
        ...


@runtime_checkable
class CheckpointStore(Protocol):
    """Where the default CheckpointManager keeps snapshots."""

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Keep a snapshot (a store may prune the oldest of an instance)."""
        ...

    async def load_checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        """A snapshot as stored, or ``None`` (the CheckpointManager verifies it)."""
        ...

    async def list_checkpoints(self, instance_id: str) -> list[Checkpoint]:
        """An instance's snapshots, oldest first."""
        ...

    async def delete_checkpoint(self, checkpoint_id: str) -> None:
        """Remove a snapshot."""
        ...


@runtime_checkable
class LeaseStore(Protocol):
    """Who may drive an instance: one process at a time.

    When the same store is also the :class:`InstanceStore`, taking a lease fences the
    instance: commits of an owner whose lease was taken over fail.
    """

    async def acquire_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        """Take or renew the right to drive an instance for ``seconds``; False when another
        owner holds an unexpired lease."""
        ...

    async def renew_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        """Extend the lease ``owner`` took through this store; False once another owner
        has taken it since, even if it was released again (the run must then stop)."""
        ...

    async def release_lease(self, instance_id: str, owner: str) -> None:
        """Give the lease up (only if ``owner`` holds it)."""
        ...

    async def lease_of(self, instance_id: str) -> tuple[str | None, float]:
        """Who holds the lease, and until when (Unix time)."""
        ...


@runtime_checkable
class ApprovalStore(Protocol):
    """Approval gates, for the default ApprovalSystem."""

    async def save_approval(self, request: ApprovalRequest, state: str = "Pending") -> None:
        """Store a new gate; ``state`` is its status for :meth:`list_approvals`."""
        ...

    async def load_approval(self, approval_id: str) -> ApprovalRequest | None:
        """A gate with its votes, or ``None``."""
        ...

    async def update_approval(
        self, approval_id: str,
        change: Callable[[ApprovalRequest], tuple[ApprovalRequest, str]],
    ) -> ApprovalRequest:
        """Apply ``change`` (the gate -> the new gate and its status) atomically, so that
        votes from several processes never overwrite each other; return the new gate.
        Raise :class:`~dagflow.ApprovalError` when no gate has this id, and let what
        ``change`` raises through, changing nothing."""
        ...

    async def list_approvals(self, *, state: str | None = "Pending",
                             instance_id: str | None = None) -> list[ApprovalRequest]:
        """Gates with this status (``None``: all), of this instance if given, earliest
        deadline first."""
        ...


@runtime_checkable
class ControlStore(Protocol):
    """Requests to the process that runs an instance (cancel, pause, resume)."""

    async def request_control(self, instance_id: str, action: str, reason: str) -> None:
        """Ask the process running an instance to ``cancel``, ``pause`` or ``resume`` it."""
        ...

    async def take_controls(self, instance_id: str) -> list[tuple[str, str]]:
        """The requests made for an instance, oldest first, removing them."""
        ...

    async def pending_controls(self) -> set[str]:
        """The ids of the instances with requests waiting (one cheap look for all the
        runs of an engine, which then takes those of its own)."""
        ...


@runtime_checkable
class WorkflowStorage(InstanceStore, CheckpointStore, LeaseStore, ApprovalStore,
                      ControlStore, Protocol):
    """A whole store: every part, and :meth:`close`. The built-in stores (memory, SQLite,
    PostgreSQL) are one each."""

    async def close(self) -> None:
        """Release connections and files; the store is not used afterwards."""
        ...


# --------------------------------------------------------------------------- the rest


@runtime_checkable
class WorkflowEngine(Protocol):
    """Creates, runs and controls workflow instances."""

    async def create_workflow(
        self, definition: WorkflowDefinition, user_id: str, variables: dict[str, Any] | None = None
    ) -> WorkflowInstance:
        """Validate ``definition`` and create a Pending instance of it."""
        ...

    async def start_workflow(self, instance_id: str) -> None:
        """Start running a Pending instance."""
        ...

    async def pause_workflow(self, instance_id: str) -> None:
        """Let running tasks finish and start nothing new."""
        ...

    async def resume_workflow(self, instance_id: str) -> None:
        """Continue a Paused instance."""
        ...

    async def cancel_workflow(self, instance_id: str) -> None:
        """Stop a running instance promptly."""
        ...

    async def get_status(self, instance_id: str) -> WorkflowInstance:
        """The instance as it is now (WorkflowNotFound if there is none)."""
        ...

    async def list_workflows(self, filters: WorkflowFilters) -> list[WorkflowInstance]:
        """Instances matching ``filters``."""
        ...

    def stream_events(self, instance_id: str, *, after: int = 0) -> AsyncIterator[Any]:
        """Events after sequence number ``after``: history first, then live."""
        ...


@runtime_checkable
class SecretProvider(Protocol):
    """Where ``${secrets.NAME}`` values come from (default: environment variables)."""

    async def get_secret(self, name: str) -> str | None:
        """The secret's value, or ``None`` if there is none."""
        ...
