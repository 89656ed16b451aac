"""The workflow model: frozen values for definitions, runtime state and their parts.

Field names follow the seed architecture (and so the file format) one for one. Numeric
ranges and id patterns live in each field's ``metadata`` so that the validator and the
generated JSON Schema read the same numbers.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs

__all__ = [
    "ID_PATTERN",
    "Approval",
    "ApprovalRequest",
    "ApprovalStatus",
    "ApprovalVote",
    "Checkpoint",
    "Command",
    "Conditional",
    "Deploy",
    "ExecutionContext",
    "FailureAction",
    "Http",
    "InstanceChanges",
    "JoinRule",
    "Loop",
    "NotificationConfig",
    "Plugin",
    "Query",
    "RetryPolicy",
    "Scale",
    "StateTransition",
    "Subworkflow",
    "TaskConfig",
    "TaskDefinition",
    "TaskOutput",
    "TaskState",
    "TaskStatus",
    "TaskType",
    "TimeoutAction",
    "WorkflowConfig",
    "WorkflowDefinition",
    "WorkflowFilters",
    "WorkflowInstance",
    "WorkflowState",
]

#: Ids of workflows, tasks and instances: ASCII letters, digits, ``-``, ``_`` and ``.``,
#: starting with a letter, digit or ``_`` (so never ``.``/``..`` and never an option).
ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"


#: Metadata of fields that are not part of the file format (no schema, no validation).
INTERNAL: Mapping[str, Any] = {"internal": True}


def _meta(**kw: Any) -> dict[str, Any]:
    """Field metadata read by the validator and the JSON Schema generator."""
    return kw


def _name_default(self: Any) -> str:
    return str(self.id)


class WorkflowState(enum.StrEnum):
    """Where a workflow instance is in its life (the seed's state machine)."""

    DRAFT = "Draft"
    VALIDATED = "Validated"
    PENDING = "Pending"
    RUNNING = "Running"
    WAITING_APPROVAL = "WaitingApproval"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    ROLLED_BACK = "RolledBack"
    ARCHIVED = "Archived"


class TaskStatus(enum.StrEnum):
    """Where one task of an instance is."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    WAITING_APPROVAL = "WaitingApproval"
    CANCELLED = "Cancelled"


class FailureAction(enum.StrEnum):
    """What happens when a task's last attempt fails."""

    FAIL = "Fail"
    CONTINUE = "Continue"
    RETRY = "Retry"
    ROLLBACK = "Rollback"


class JoinRule(enum.StrEnum):
    """When a task runs, given how its dependencies ended."""

    DEFAULT = "default"
    ALL_SUCCESS = "all_success"
    ONE_SUCCESS = "one_success"
    ALL_DONE = "all_done"


class TimeoutAction(enum.StrEnum):
    """What an Approval gate does at its deadline."""

    CANCEL = "cancel"
    REJECT = "reject"


# --------------------------------------------------------------------------- task types


@attrs.frozen
class TaskType:
    """Base of the task type variants; ``type_name`` is the ``type:`` tag in files.

    Host applications register their own attrs classes as custom types (they need not
    inherit from this class, but doing so keeps type checkers happy).
    """

    type_name: ClassVar[str] = ""


@attrs.frozen
class Command(TaskType):
    """Run a program with arguments (never through a shell unless you write ``sh -c``)."""

    type_name: ClassVar[str] = "Command"
    command: str = attrs.field(metadata=_meta(min_length=1))
    args: tuple[str, ...] = ()
    env: dict[str, str] = attrs.Factory(dict)
    working_dir: str | None = None


@attrs.frozen
class Http(TaskType):
    """Call an HTTP endpoint; a non-2xx status fails the task."""

    type_name: ClassVar[str] = "Http"
    HTTP_METHODS: ClassVar[tuple[str, ...]] = (
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
    )
    url: str = attrs.field(metadata=_meta(min_length=1))
    method: str = attrs.field(default="GET", metadata=_meta(enum=HTTP_METHODS))
    headers: dict[str, str] = attrs.Factory(dict)
    body: str | None = None


@attrs.frozen
class Query(TaskType):
    """Run a SQL query on a named connection; parameters are always bound."""

    type_name: ClassVar[str] = "Query"
    query_type: str = attrs.field(metadata=_meta(min_length=1))
    query: str = attrs.field(metadata=_meta(min_length=1))
    parameters: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class Deploy(TaskType):
    """Apply a Kubernetes manifest to a namespace."""

    type_name: ClassVar[str] = "Deploy"
    manifest: str = attrs.field(metadata=_meta(min_length=1))
    namespace: str = attrs.field(default="default", metadata=_meta(min_length=1))
    dry_run: bool = False


@attrs.frozen
class Scale(TaskType):
    """Set the replica count of a Kubernetes resource (``deployment/app``)."""

    type_name: ClassVar[str] = "Scale"
    resource: str = attrs.field(metadata=_meta(min_length=1))
    replicas: int = attrs.field(metadata=_meta(minimum=0, maximum=1_000_000))
    namespace: str = attrs.field(default="default", metadata=_meta(min_length=1))


@attrs.frozen
class Approval(TaskType):
    """Wait until enough of ``approvers`` grant (or one rejects, or the deadline passes)."""

    type_name: ClassVar[str] = "Approval"
    approvers: tuple[str, ...] = ()
    timeout_seconds: int = attrs.field(
        default=86_400, metadata=_meta(minimum=1, maximum=31_536_000)
    )
    auto_approve: bool = False
    min_approvals: int = attrs.field(default=1, metadata=_meta(minimum=1, maximum=1000))
    allow_self_approval: bool = False
    on_timeout: TimeoutAction = TimeoutAction.CANCEL


@attrs.frozen
class Conditional(TaskType):
    """Evaluate ``condition``; run the tasks of one branch and skip the other's."""

    type_name: ClassVar[str] = "Conditional"
    condition: str = attrs.field(metadata=_meta(min_length=1))
    true_branch: tuple[str, ...] = ()
    false_branch: tuple[str, ...] = ()


@attrs.frozen
class Loop(TaskType):
    """Run ``task_template`` once per item of ``items``."""

    type_name: ClassVar[str] = "Loop"
    items: str | tuple[Any, ...]
    task_template: TaskDefinition
    parallel: bool = False


@attrs.frozen
class Subworkflow(TaskType):
    """Run another workflow definition as one task; its inputs become its variables."""

    type_name: ClassVar[str] = "Subworkflow"
    workflow_id: str = attrs.field(metadata=_meta(pattern=ID_PATTERN))
    inputs: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class Plugin(TaskType):
    """Call a handler registered with the engine or found in the ``dagflow.plugins`` group."""

    type_name: ClassVar[str] = "Plugin"
    plugin_name: str = attrs.field(metadata=_meta(pattern=ID_PATTERN))
    config: Any = attrs.Factory(dict)


BUILTIN_TASK_TYPES: Mapping[str, type[Any]] = {
    cls.type_name: cls
    for cls in (Command, Http, Query, Deploy, Scale, Approval, Conditional, Loop,
                Subworkflow, Plugin)
}

# --------------------------------------------------------------------------- definitions


@attrs.frozen
class TaskConfig:
    """Per-task behaviour: failure action and output handling."""

    on_failure: FailureAction = FailureAction.FAIL
    collect_output: bool = True
    stream_output: bool = False
    checkpoint: bool = True


@attrs.frozen
class RetryPolicy:
    """How a failed attempt is retried: delay = min(initial * multiplier^(n-1), max).

    With ``jitter`` each delay is drawn at random between half that and all of it, so
    tasks that failed together do not all retry at the same moment.
    """

    max_attempts: int = attrs.field(default=3, metadata=_meta(minimum=1, maximum=1000))
    initial_delay_ms: int = attrs.field(
        default=1000, metadata=_meta(minimum=0, maximum=86_400_000)
    )
    max_delay_ms: int = attrs.field(
        default=30_000, metadata=_meta(minimum=0, maximum=86_400_000)
    )
    backoff_multiplier: float = attrs.field(default=2.0, metadata=_meta(minimum=1, maximum=100))
    retryable_errors: tuple[str, ...] = ()
    jitter: bool = False


@attrs.frozen
class NotificationConfig:
    """Who hears about the end of a run: emails and a webhook."""

    on_completion: tuple[str, ...] = ()
    on_failure: tuple[str, ...] = ()
    webhook_url: str | None = None


@attrs.frozen
class WorkflowConfig:
    """Workflow-wide settings."""

    max_parallel_tasks: int = attrs.field(default=10, metadata=_meta(minimum=1, maximum=100_000))
    timeout_seconds: int | None = attrs.field(
        default=3600, metadata=_meta(minimum=1, maximum=31_536_000)
    )
    checkpoint_interval_seconds: int = attrs.field(
        default=60, metadata=_meta(minimum=1, maximum=86_400)
    )
    enable_rollback: bool = True
    notification_config: NotificationConfig | None = None


DEFAULT_TASK_CONFIG = TaskConfig()
DEFAULT_WORKFLOW_CONFIG = WorkflowConfig()


@attrs.frozen
class TaskDefinition:
    """One task of a workflow: what to run, after what, and how to handle failure.

    ``type`` holds the task type variant (``Command(...)``, ``Http(...)``...); ``rollback``
    an optional task type that undoes this task; ``join`` when it runs given how its
    dependencies ended.
    """

    id: str = attrs.field(metadata=_meta(pattern=ID_PATTERN))
    type: TaskType
    name: str = attrs.field(default=attrs.Factory(_name_default, takes_self=True))
    depends_on: tuple[str, ...] = ()
    config: TaskConfig = DEFAULT_TASK_CONFIG
    retry_policy: RetryPolicy | None = None
    timeout: dt.timedelta | None = attrs.field(
        default=None, metadata=_meta(exclusive_minimum=0, maximum=31_536_000)
    )
    condition: str | None = None
    rollback: TaskType | None = None
    join: JoinRule = JoinRule.DEFAULT


@attrs.frozen
class WorkflowDefinition:
    """A whole workflow file: its tasks, variables and settings."""

    id: str = attrs.field(metadata=_meta(pattern=ID_PATTERN))
    tasks: tuple[TaskDefinition, ...] = attrs.field(metadata=_meta(min_items=1))
    name: str = attrs.field(default=attrs.Factory(_name_default, takes_self=True))
    description: str = ""
    version: str = ""
    variables: dict[str, Any] = attrs.Factory(dict)
    config: WorkflowConfig = DEFAULT_WORKFLOW_CONFIG
    metadata: dict[str, str] = attrs.Factory(dict)
    #: The file it was loaded from (absolute path), else ``None``: Command tasks run in
    #: its directory and Subworkflows are looked up there. Not part of the value: it is
    #: left out of equality and serialisation, and a file cannot set it.
    source_path: str | None = attrs.field(default=None, eq=False, repr=False, kw_only=True,
                                          metadata=INTERNAL)
    # facts derived from the value, computed once (its hash, its graph); never compared
    _derived: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def task(self, task_id: str) -> TaskDefinition:
        """Return the task with this id.

        Raises:
            KeyError: No task has this id.
        """
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)


# --------------------------------------------------------------------------- runtime


@attrs.frozen
class TaskOutput:
    """What a task produced: captured streams, exit code, structured data and metrics."""

    stdout: str | None = None
    stderr: str | None = None
    exit_code: int | None = None
    data: Any = None
    metrics: dict[str, float] = attrs.Factory(dict)


@attrs.frozen
class TaskState:
    """The state of one task of an instance."""

    task_id: str
    state: TaskStatus = TaskStatus.PENDING
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    attempts: int = 0
    output: TaskOutput | None = None
    error: str | None = None


@attrs.frozen
class ExecutionContext:
    """What tasks can reference: resolved variables, finished outputs, environment."""

    variables: dict[str, Any] = attrs.Factory(dict)
    outputs: dict[str, TaskOutput] = attrs.Factory(dict)
    environment: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class StateTransition:
    """One recorded change of a workflow's state, with when and why."""

    from_state: WorkflowState
    to_state: WorkflowState
    timestamp: dt.datetime
    reason: str | None = None


@attrs.frozen
class Checkpoint:
    """A recovery point: the workflow state, task states and context at a moment."""

    id: str
    timestamp: dt.datetime
    workflow_state: WorkflowState
    task_states: dict[str, TaskState] = attrs.Factory(dict)
    execution_context: ExecutionContext = attrs.Factory(ExecutionContext)
    instance_id: str = ""
    checksum: str = ""


@attrs.frozen
class WorkflowInstance:
    """One run of a workflow definition."""

    id: str
    workflow_id: str
    definition: WorkflowDefinition
    state: WorkflowState
    created_at: dt.datetime
    created_by: str = ""
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    execution_context: ExecutionContext = attrs.Factory(ExecutionContext)
    task_states: dict[str, TaskState] = attrs.Factory(dict)
    checkpoints: tuple[Checkpoint, ...] = ()
    error: str | None = None
    state_history: tuple[StateTransition, ...] = ()
    workdir: str = ""
    definition_hash: str = ""
    parent_id: str | None = None

    @property
    def outputs(self) -> dict[str, TaskOutput]:
        """Each finished task's output, by task id."""
        return {k: s.output for k, s in self.task_states.items() if s.output is not None}


@attrs.frozen
class InstanceChanges:
    """One small, atomic change to a stored instance: what a task state change, a state
    transition or an event writes. Durable stores apply it as one transaction.

    Attributes:
        fields: Top-level :class:`WorkflowInstance` fields to set (``state``,
            ``started_at``, ``completed_at``, ``error``).
        task_states: Task states to insert or replace, by ``task_id``.
        events: Events to append (their ``seq`` continue the instance's history).
        transitions: State transitions to append to the history.
    """

    fields: Mapping[str, Any] = attrs.Factory(dict)
    task_states: tuple[TaskState, ...] = ()
    events: tuple[Any, ...] = ()
    transitions: tuple[StateTransition, ...] = ()


@attrs.frozen
class WorkflowFilters:
    """Which instances ``list_workflows`` returns."""

    user_id: str | None = None
    state: WorkflowState | None = None
    created_after: dt.datetime | None = None
    workflow_id: str | None = None
    limit: int | None = None


@attrs.frozen
class ApprovalVote:
    """One approver's decision on a gate."""

    approver: str
    approved: bool
    at: dt.datetime
    comment: str | None = None


@attrs.frozen
class ApprovalRequest:
    """A pending (or decided) approval gate."""

    approval_id: str
    workflow_id: str
    task_id: str
    requested_at: dt.datetime
    expires_at: dt.datetime
    approvers: tuple[str, ...] = ()
    context: dict[str, str] = attrs.Factory(dict)
    instance_id: str = ""
    min_approvals: int = 1
    votes: tuple[ApprovalVote, ...] = ()


@attrs.frozen
class ApprovalStatus:
    """The seed's ``ApprovalStatus``: Pending, Approved, Rejected or Expired."""

    state: Literal["Pending", "Approved", "Rejected", "Expired"]
    approver: str | None = None
    reason: str | None = None
    at: dt.datetime | None = None
