"""The book of one running instance: every task's state by index, the events and state
changes it records through its journal, and what a task attempt gets to see (its
context and the values of ``${...}`` references)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs

from .._context import Redactor, TaskContext
from .._dag import WorkflowDag
from .._events import CheckpointCreated, TaskOutputLine, WorkflowEvent
from .._expr import Condition, ExprError, Ref, parse_condition
from .._interp import interpolate_spec, spec_has_refs, walk_path
from .._models import (
    Checkpoint,
    Conditional,
    FailureAction,
    StateTransition,
    TaskDefinition,
    TaskOutput,
    TaskState,
    TaskStatus,
    WorkflowInstance,
    WorkflowState,
)
from ._committer import Committer
from ._journal import Journal
from ._services import Services

__all__ = ["RESOLVED", "Book", "Unit", "idempotency_key"]

logger = logging.getLogger("dagflow")

S = WorkflowState
T = TaskStatus
RESOLVED = frozenset({T.COMPLETED, T.FAILED, T.SKIPPED, T.CANCELLED})


def idempotency_key(instance_id: str, task_id: str, loop_index: int | None = None) -> str:
    """The key a task sends on every attempt, also after recovery."""
    raw = f"{instance_id}/{task_id}" + (f"/{loop_index}" if loop_index is not None else "")
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@attrs.define(eq=False, repr=False)
class Unit:
    """What runs with retries: a task, or one iteration of a Loop's template."""

    key: str  # the task_states key: "deploy", or "loop[3]" for an iteration
    task_id: str  # the task it belongs to (the Loop for an iteration)
    task: TaskDefinition  # the definition that runs (the template for an iteration)
    attempts: int = 0
    loop_index: int | None = None
    item: Any = None
    started_at: Any = None


@attrs.define(eq=False, repr=False)
class Book:
    """The state of one instance while this process runs it, and its journal.

    Tasks are numbered in definition order; their state lives in per-index lists so that
    a task finishing costs O(its dependents), never O(all tasks).
    """

    services: Services
    instance: WorkflowInstance
    dag: WorkflowDag
    secrets: dict[str, str]
    state: WorkflowState
    seq: int
    on_store_error: Callable[[BaseException], None]
    parent_chain: tuple[str, ...] = ()
    committer: Committer | None = None

    # per task, by index
    status: list[TaskStatus] = attrs.Factory(list)
    attempts: list[int] = attrs.Factory(list)
    started_at: list[Any] = attrs.Factory(list)
    outputs: list[TaskOutput | None] = attrs.Factory(list)
    errors: list[str | None] = attrs.Factory(list)
    continued: list[bool] = attrs.Factory(list)
    branch: dict[int, bool] = attrs.Factory(dict)
    conditions: dict[int, Condition] = attrs.Factory(dict)
    iterations: dict[str, TaskState] = attrs.Factory(dict)
    completion_order: list[int] = attrs.Factory(list)
    # keys of the units waiting at an open approval gate (task state WaitingApproval)
    at_gate: set[str] = attrs.Factory(set)
    redactor: Redactor = attrs.Factory(Redactor)
    journal: Journal = attrs.field(init=False)
    # per task, computed on first use: whether its spec has references, its key
    _has_refs: dict[str, bool] = attrs.Factory(dict)
    _spec_refs: list[bool] = attrs.Factory(list)
    _keys: dict[tuple[int, int | None], str] = attrs.Factory(dict)
    _changed: anyio.Event = attrs.Factory(anyio.Event)
    _snapshot_seq: int = -1

    def __repr__(self) -> str:
        return f"<Book {self.instance.id} {self.state} seq={self.seq}>"

    def __attrs_post_init__(self) -> None:
        self.journal = Journal(self.services.instances, self.instance.id, self.services.clock,
                               self.changed, self.on_store_error, self.committer)
        definition = self.instance.definition
        tasks = definition.tasks
        n = len(tasks)
        # which task specs hold ${...}: a fact of the definition, kept on it for every run
        spec_refs: list[bool] | None = definition._derived.get("spec_refs")
        if spec_refs is None:
            spec_refs = definition._derived["spec_refs"] = [spec_has_refs(t.type)
                                                            for t in tasks]
        self._spec_refs = spec_refs
        self.status = [T.PENDING] * n
        self.attempts = [0] * n
        self.started_at = [None] * n
        self.outputs = [None] * n
        self.errors = [None] * n
        self.continued = [False] * n
        for value in self.secrets.values():
            self.redactor.add(value)
        for i, task in enumerate(tasks):
            if task.condition is not None:
                self.conditions[i] = parse_condition(task.condition)
        index = self.dag.index
        for key, saved in self.instance.task_states.items():
            found = index.get(key)
            if found is None:
                self.iterations[key] = saved
                continue
            i = found
            # a task in flight at a crash runs again (at least once), its attempts kept
            self.status[i] = saved.state if saved.state in RESOLVED else T.PENDING
            self.attempts[i] = saved.attempts
            self.started_at[i] = saved.started_at
            self.outputs[i] = saved.output
            self.errors[i] = saved.error
            if saved.state == T.COMPLETED and isinstance(tasks[i].type, Conditional):
                self.choose_branch(i, saved.output)
            if saved.state == T.FAILED and tasks[i].config.on_failure == FailureAction.CONTINUE:
                self.continued[i] = True
        order = {key: s.completed_at for key, s in self.instance.task_states.items()
                 if s.state == T.COMPLETED and s.completed_at is not None}
        self.completion_order = sorted((index[k] for k in order if k in index),
                                       key=lambda i: order[tasks[i].id])

    # ------------------------------------------------------------------ basics

    @property
    def instance_id(self) -> str:
        return self.instance.id

    @property
    def tasks(self) -> tuple[TaskDefinition, ...]:
        return self.instance.definition.tasks

    def choose_branch(self, i: int, output: TaskOutput | None) -> None:
        """Remember which branch Conditional task ``i`` took."""
        data = output.data if output else None
        self.branch[i] = bool(data.get("result")) if isinstance(data, dict) else False

    def changed(self) -> None:
        """Wake event followers: something was committed."""
        self._changed.set()
        self._changed = anyio.Event()

    def next_change(self) -> Callable[[], Awaitable[None]]:
        """What returns at the first commit (or the end of the run) after this call,
        however late it is awaited."""
        return self._changed.wait

    # ------------------------------------------------------------------ recording

    def event(self, cls: type[WorkflowEvent], at: dt.datetime | None = None,
              **fields: Any) -> WorkflowEvent:
        """A new event with the next ``seq``, timestamped ``at`` (default: now)."""
        self.seq += 1
        return cls(seq=self.seq, instance_id=self.instance.id,
                   timestamp=at if at is not None else self.services.clock.now(), **fields)

    def record(self, *, state: TaskState | None = None, events: tuple[WorkflowEvent, ...] = (),
               fields: Mapping[str, Any] | None = None,
               transitions: tuple[StateTransition, ...] = ()) -> anyio.Event:
        """Queue one change for the store; the event is set when it is durable."""
        return self.journal.add(state, events, fields, transitions)

    def transition(self, to: WorkflowState, reason: str | None = None,
                   events: tuple[WorkflowEvent, ...] = (),
                   fields: Mapping[str, Any] | None = None) -> anyio.Event:
        """Change the workflow's state and record it, once the state machine agrees.

        Raises:
            InvalidStateTransition: The state machine refuses the change (nothing changes).
        """
        record = self.services.state_machine.transition(self.instance.id, self.state, to,
                                                        reason)
        self.state = to
        return self.record(events=events, fields={"state": to, **(fields or {})},
                           transitions=(record,))

    async def flushed(self) -> None:
        """Until everything recorded so far is durable."""
        await self.journal.flushed()

    def current(self) -> WorkflowInstance:
        """The instance as this run knows it now (what a snapshot holds)."""
        states: dict[str, TaskState] = dict(self.iterations)
        tasks = self.tasks
        for i, status in enumerate(self.status):
            if status == T.PENDING and not self.attempts[i]:
                continue
            if status == T.RUNNING and tasks[i].id in self.at_gate:
                status = T.WAITING_APPROVAL
            states[tasks[i].id] = TaskState(tasks[i].id, status, self.started_at[i], None,
                                            self.attempts[i], self.outputs[i], self.errors[i])
        context = self.instance.execution_context
        outputs = {k: s.output for k, s in states.items() if s.output is not None}
        return attrs.evolve(self.instance, state=self.state, task_states=states,
                            execution_context=attrs.evolve(context, outputs=outputs))

    @property
    def changed_since_snapshot(self) -> bool:
        """Whether anything was recorded since the last snapshot."""
        return self.seq != self._snapshot_seq

    async def snapshot(self, *, strict: bool = False) -> Checkpoint | None:
        """Write a checkpoint of what is durable now, say so in an event, and return it.

        A failure is logged (the rows are still there) and gives ``None``; ``strict``
        raises it instead (a checkpoint someone asked for).
        """
        if self.journal.error is not None and not strict:
            return None
        await self.flushed()
        try:
            with self.services.clock.busy():
                checkpoint = await self.services.checkpoints.create_checkpoint(self.current())
        except Exception as exc:
            if strict:
                raise
            logger.error("instance %s: checkpoint failed: %s", self.instance.id, exc)
            return None
        self.record(events=(self.event(CheckpointCreated, checkpoint_id=checkpoint.id),))
        self._snapshot_seq = self.seq
        await self.flushed()
        return checkpoint

    # ------------------------------------------------------------------ what a task sees

    def context(self, unit: Unit, attempt: int, index: int | None) -> TaskContext:
        """The TaskContext of one attempt, with the spec's references replaced.

        Raises:
            ExprError: A reference cannot be resolved.
        """
        task = unit.task
        spec = task.type
        refs: bool | None
        if index is not None and unit.key == unit.task_id:  # a task itself (most of them)
            refs = self._spec_refs[index]
        else:  # a Loop's iterations share its template; a rollback step has its own spec
            kind = f"{unit.task_id}[]" if unit.loop_index is not None else unit.key
            refs = self._has_refs.get(kind)
            if refs is None:
                refs = self._has_refs[kind] = spec_has_refs(spec)
        if refs:
            spec = interpolate_spec(spec, self.resolver(index, unit))
        on_line = self._line_sink(unit.key) if task.config.stream_output else None
        services = self.services
        where = (index if index is not None else -1, unit.loop_index)
        key = self._keys.get(where)
        if key is None:
            key = self._keys[where] = idempotency_key(self.instance.id, unit.task_id,
                                                      unit.loop_index)
        return TaskContext(
            task_id=unit.task_id, spec=spec, instance_id=self.instance.id,
            workflow_id=self.instance.workflow_id, task=task, attempt=attempt,
            variables=self.instance.execution_context.variables,
            workdir=self.instance.workdir or ".", environ=services.environ,
            loop_index=unit.loop_index, item=unit.item, idempotency_key=key,
            clock=services.clock, redactor=self.redactor, on_line=on_line,
            resources=services.resources,
        )

    def _line_sink(self, key: str) -> Callable[[str, str], Any]:
        async def on_line(stream: str, line: str) -> None:
            self.record(events=(self.event(TaskOutputLine, task_id=key, stream=stream,
                                           line=self.redactor.text(line)),))
        return on_line

    def resolver(self, index: int | None, unit: Unit | None) -> Callable[[Ref], Any]:
        """What ``${...}`` references mean for task ``index`` (and loop ``unit``)."""
        variables = self.instance.execution_context.variables
        environment = self.instance.execution_context.environment
        dag = self.dag

        def resolve(ref: Ref) -> Any:
            kind, parts = ref.kind, ref.parts
            if kind == "var":
                head = parts[0]
                if head in variables:
                    return walk_path(variables[head], parts[1:], ref.text)
                if len(parts) == 1 and head in environment:
                    return environment[head]
                raise ExprError(f"'${{{ref.text}}}' is not a variable of this workflow")
            if kind == "tasks":
                target, field, path = ref.task_target(dag.index.__contains__)
                return self._task_field(dag.index[target], field, path, ref.text)
            if kind == "env":
                if parts[0] in environment:
                    return environment[parts[0]]
                raise ExprError(f"'${{{ref.text}}}': environment variable not set")
            if kind == "secrets":
                if parts[0] in self.secrets:
                    return self.secrets[parts[0]]
                raise ExprError(f"'${{{ref.text}}}': no such secret")
            if kind == "workflow":
                field = parts[0]
                return {"id": self.instance.workflow_id, "instance_id": self.instance.id,
                        "name": self.instance.definition.name}[field]
            if kind == "item":
                if unit is None or unit.loop_index is None:
                    raise ExprError(f"'${{{ref.text}}}' is only available inside a Loop")
                return walk_path(unit.item, parts, ref.text)
            if kind == "item_index":
                if unit is None or unit.loop_index is None:
                    raise ExprError(f"'${{{ref.text}}}' is only available inside a Loop")
                return unit.loop_index
            raise ExprError(f"unknown reference '${{{ref.text}}}'")

        return resolve

    def _task_field(self, i: int, field: str, path: tuple[str, ...], text: str) -> Any:
        output = self.outputs[i]
        if field == "status":
            return str(self.status[i])
        if field == "error":
            return self.errors[i]
        if field == "attempts":
            return self.attempts[i]
        if output is None:
            return None
        if field == "data":
            return walk_path(output.data, path, text) if path else output.data
        value: Any = getattr(output, field)
        if isinstance(value, str) and field in ("stdout", "stderr"):
            # like the shell's $(...): "echo v" gives "v", not "v\n"
            return value.rstrip("\r\n")
        return value
