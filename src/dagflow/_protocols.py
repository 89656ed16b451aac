"""Every seam of dagflow, as a :class:`typing.Protocol`.

These are the seed architecture's traits in Python form. Defaults do not inherit from
them (mypy checks conformance), and ``Engine(...)`` accepts any object that fits. Parsing
and graph building do no I/O, so their methods are synchronous; everything that may touch
a network, a disk or a clock is ``async``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._models import (
    ApprovalRequest,
    ApprovalStatus,
    Checkpoint,
    InstanceChanges,
    RetryPolicy,
    StateTransition,
    TaskDefinition,
    TaskOutput,
    WorkflowDefinition,
    WorkflowFilters,
    WorkflowInstance,
    WorkflowState,
)

if TYPE_CHECKING:
    from ._context import TaskContext
    from ._dag import WorkflowDag
    from ._events import WorkflowEvent

__all__ = [
    "ApprovalSystem",
    "CheckpointManager",
    "Clock",
    "ClusterClient",
    "DagBuilder",
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
    """Turns workflow text into validated definitions."""

    def parse_yaml(self, text: str | bytes, *, filename: str | None = None) -> WorkflowDefinition:
        """Parse and validate YAML; raise ParseError/ValidationError listing every problem."""
        ...

    def parse_json(self, text: str | bytes, *, filename: str | None = None) -> WorkflowDefinition:
        """Parse and validate JSON; raise ParseError/ValidationError listing every problem."""
        ...

    def validate(self, workflow: WorkflowDefinition) -> None:
        """Raise ValidationError if ``workflow`` (perhaps built in Python) is wrong."""
        ...

    def normalize(self, workflow: WorkflowDefinition) -> WorkflowDefinition:
        """Return the canonical form of ``workflow``."""
        ...


@runtime_checkable
class DagBuilder(Protocol):
    """Builds the dependency graph of a definition."""

    def build_dag(self, workflow: WorkflowDefinition) -> WorkflowDag:
        """Build the graph; raise CycleDetected (with ``.path``) on a cycle."""
        ...

    def detect_cycles(self, dag: WorkflowDag) -> None:
        """Raise CycleDetected if ``dag`` has a cycle."""
        ...

    def topological_sort(self, dag: WorkflowDag) -> list[list[str]]:
        """Task ids in batches that could run together, level by level."""
        ...

    def optimize_parallelism(self, dag: WorkflowDag) -> WorkflowDag:
        """Return a graph arranged for parallel execution."""
        ...


@runtime_checkable
class TaskExecutor(Protocol):
    """Runs single task attempts; the engine owns scheduling, state and retries' bookkeeping.

    A failed attempt raises :class:`~dagflow.TaskExecutionFailed` (carrying what it
    produced); anything else it raises is a failure too.
    """

    async def execute_task(self, task: TaskDefinition, context: TaskContext) -> TaskOutput:
        """Run one attempt of ``task`` (``context.spec`` is its interpolated type)."""
        ...

    async def execute_parallel(
        self, tasks: Sequence[TaskDefinition], contexts: Sequence[TaskContext]
    ) -> list[TaskOutput | BaseException]:
        """Run one attempt of each task concurrently; results in the same order."""
        ...

    async def retry_task(
        self,
        task: TaskDefinition,
        context: TaskContext,
        retry_policy: RetryPolicy,
        attempt: int,
    ) -> TaskOutput:
        """Run ``task`` as attempt number ``attempt`` under ``retry_policy``."""
        ...

    async def cancel_task(self, task_id: str) -> None:
        """Stop a running task promptly (kill its process group, abort its request).

        ``task_id`` may be qualified as ``INSTANCE_ID/TASK_ID``.
        """
        ...


@runtime_checkable
class TaskHandler(Protocol):
    """Runs one task type. Register with ``Engine(handlers={"Name": handler})``.

    Return a :class:`~dagflow.TaskOutput`, a mapping (it becomes the output's ``data``)
    or ``None``; raise :class:`~dagflow.TaskExecutionFailed` (or anything) to fail the
    attempt. A handler with ``busy = False`` only waits on the engine's clock or on
    people (approvals); every other handler counts as doing real work, during which a
    test's FakeClock does not jump ahead.
    """

    async def __call__(self, ctx: TaskContext) -> TaskOutput | Mapping[str, Any] | None:
        """Run one attempt."""
        ...


@runtime_checkable
class ClusterClient(Protocol):
    """What Deploy and Scale tasks do to a cluster (default: the kubectl command).

    Values arrive validated (Kubernetes names) and are passed as single ``--flag=value``
    arguments, never as options of their own.
    """

    async def apply(self, manifest: str, namespace: str, *, dry_run: bool,
                    cwd: str) -> dict[str, Any]:
        """Apply ``manifest``; return what undoing it needs (JSON-ready). An ``"output"``
        key, if present, is what the tool printed: it becomes the task's stdout and is
        not kept in the undo record."""
        ...

    async def undo_apply(self, manifest: str, namespace: str, record: Mapping[str, Any], *,
                         cwd: str) -> None:
        """Undo an :meth:`apply` given the record it returned."""
        ...

    async def get_replicas(self, resource: str, namespace: str) -> int | None:
        """The resource's current replica count (``None`` if it does not exist)."""
        ...

    async def scale(self, resource: str, namespace: str, replicas: int) -> None:
        """Set the replica count."""
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
        """The instance as it was at ``checkpoint_id``."""
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
    """Referee of workflow state changes, with their history."""

    async def transition(
        self,
        instance_id: str,
        from_state: WorkflowState,
        to_state: WorkflowState,
        reason: str | None = None,
    ) -> StateTransition:
        """Change state (InvalidStateTransition if not allowed) and record it."""
        ...

    def is_valid_transition(self, from_state: WorkflowState, to_state: WorkflowState) -> bool:
        """Whether the change is allowed."""
        ...

    async def get_state(self, instance_id: str) -> WorkflowState:
        """The current state."""
        ...

    async def get_state_history(self, instance_id: str) -> list[StateTransition]:
        """Every recorded transition, oldest first."""
        ...


@runtime_checkable
class WorkflowStorage(Protocol):
    """Where workflow instances live. Must be safe to call from concurrent tasks."""

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

    async def last_event_seq(self, instance_id: str) -> int:
        """The seq of the instance's newest event (0 before any)."""
        ...

    async def commit(self, instance_id: str, changes: InstanceChanges) -> None:
        """Apply one small change atomically (a task state, events, a transition).

        Raises:
            WorkflowNotFound: No stored instance has this id.
            StorageError: The change could not be made durable; nothing of it is applied.
        """
        ...

    async def load_events(self, instance_id: str, after: int = 0,
                          limit: int | None = None) -> list[WorkflowEvent]:
        """The instance's events with ``seq > after``, in order (at most ``limit``)."""
        ...

    async def close(self) -> None:
        """Release connections and files; the store is not used afterwards."""
        ...

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

    async def acquire_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        """Take or renew the right to drive an instance for ``seconds``; False when another
        owner holds an unexpired lease. Later commits of this store for the instance must
        fail if someone else takes the lease (fencing)."""
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

    async def request_control(self, instance_id: str, action: str, reason: str) -> None:
        """Ask the process running an instance to ``cancel``, ``pause`` or ``resume`` it."""
        ...

    async def take_controls(self, instance_id: str) -> list[tuple[str, str]]:
        """The requests made for an instance, oldest first, removing them."""
        ...

    # approval gates, for the default ApprovalSystem (StoreApprovalSystem)

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


@runtime_checkable
class Clock(Protocol):
    """Every wait goes through the engine's clock, so tests can skip time."""

    def now(self) -> dt.datetime:
        """The current time (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...

    def busy(self) -> AbstractContextManager[None]:
        """Mark real work (a subprocess, a request, a store write) in progress.

        A fake clock does not jump ahead while any work is busy, except work that is
        itself sleeping on the clock. The system clock ignores it.
        """
        ...
