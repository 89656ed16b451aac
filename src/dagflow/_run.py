"""One running instance: the dynamic scheduler, retries, timeouts, joins, failure actions,
pause/cancel, and the journal that makes every change durable before it counts.

Tasks are numbered in definition order; state lives in per-index lists so that a task
finishing costs O(its dependents), never O(all tasks). A task starts the moment its last
dependency is resolved, within ``max_parallel_tasks``; among ready tasks the one with the
longest remaining path to the end of the workflow goes first.

Durability order (G4): a task's Running record is committed before its handler runs, and
its outcome before anything that depends on it starts — the journal commits in order, and
a dependent waits for its own Running record, which comes later.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from . import _run_flow
from ._context import Redactor, TaskContext
from ._errors import (
    ApprovalTimeout,
    InvalidStateTransition,
    StorageError,
    TaskExecutionFailed,
)
from ._events import (
    CheckpointCreated,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskOutputLine,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowWaitingApproval,
)
from ._execute._retry import backoff_seconds, effective_policy, is_retryable
from ._expr import Condition, ExprError, Ref, parse_condition
from ._interp import interpolate_spec, spec_has_refs, walk_path
from ._journal import Journal
from ._models import (
    Approval,
    Conditional,
    Deploy,
    FailureAction,
    InstanceChanges,
    JoinRule,
    Loop,
    Scale,
    StateTransition,
    Subworkflow,
    TaskDefinition,
    TaskOutput,
    TaskState,
    TaskStatus,
    WorkflowInstance,
    WorkflowState,
)

if TYPE_CHECKING:
    from ._dag import WorkflowDag
    from ._engine import Engine

__all__ = ["Outcome", "Run", "Unit", "idempotency_key"]

logger = logging.getLogger("dagflow")

S = WorkflowState
T = TaskStatus
RESOLVED = frozenset({T.COMPLETED, T.FAILED, T.SKIPPED, T.CANCELLED})


def idempotency_key(instance_id: str, task_id: str, loop_index: int | None = None) -> str:
    """The key a task sends on every attempt, also after recovery."""
    import hashlib

    raw = f"{instance_id}/{task_id}" + (f"/{loop_index}" if loop_index is not None else "")
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@attrs.frozen
class Outcome:
    """How one task (all its attempts) ended."""

    status: TaskStatus
    output: TaskOutput | None = None
    error: str | None = None
    kind: str = ""
    timed_out_approval: bool = False


class _TimedOut(Exception):
    """A task's own timeout fired (raised inside the attempt, turned into a failure)."""


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
class Run:
    """The scheduler and state of one instance while this process runs it."""

    engine: Engine
    instance: WorkflowInstance
    dag: WorkflowDag
    secrets: dict[str, str]
    state: WorkflowState
    seq: int
    parent_chain: tuple[str, ...] = ()

    # per task, by index
    status: list[TaskStatus] = attrs.Factory(list)
    attempts: list[int] = attrs.Factory(list)
    started_at: list[Any] = attrs.Factory(list)
    outputs: list[TaskOutput | None] = attrs.Factory(list)
    errors: list[str | None] = attrs.Factory(list)
    continued: list[bool] = attrs.Factory(list)
    waiting: list[int] = attrs.Factory(list)
    priority: list[float] = attrs.Factory(list)
    branch: dict[int, bool] = attrs.Factory(dict)
    conditions: dict[int, Condition] = attrs.Factory(dict)
    iterations: dict[str, TaskState] = attrs.Factory(dict)

    ready: list[tuple[float, int]] = attrs.Factory(list)
    _to_decide: list[int] = attrs.Factory(list)
    running: dict[int, anyio.CancelScope] = attrs.Factory(dict)
    gates: int = 0
    # Approval tasks by (task id, loop index) between their context and their gate, and
    # the keys of those waiting at an open gate (task state WaitingApproval)
    gate_units: dict[tuple[str, int | None], Unit] = attrs.Factory(dict)
    at_gate: set[str] = attrs.Factory(set)
    unresolved: int = 0
    completion_order: list[int] = attrs.Factory(list)
    stopping: str | None = None  # "failed" | "rollback" | "cancelled"
    failure: str | None = None
    paused: bool = False
    interrupted: str | None = None  # why running tasks were stopped to be resumed later
    redactor: Redactor = attrs.Factory(Redactor)
    journal: Journal = attrs.field(init=False)
    finished: anyio.Event = attrs.Factory(anyio.Event)
    _changed: anyio.Event = attrs.Factory(anyio.Event)
    _tg: Any = None
    _snapshot_seq: int = -1
    _notifying: int = 0
    _notified: anyio.Event = attrs.Factory(anyio.Event)

    def __attrs_post_init__(self) -> None:
        self.journal = Journal(self)
        tasks = self.instance.definition.tasks
        n = len(tasks)
        self.status = [T.PENDING] * n
        self.attempts = [0] * n
        self.started_at = [None] * n
        self.outputs = [None] * n
        self.errors = [None] * n
        self.continued = [False] * n
        self.priority = [-r for r in self.dag.remaining_path()]
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
                data = saved.output.data if saved.output else None
                self.branch[i] = bool(data.get("result")) if isinstance(data, dict) else False
            if saved.state == T.FAILED and tasks[i].config.on_failure == FailureAction.CONTINUE:
                self.continued[i] = True
        order = {key: s.completed_at for key, s in self.instance.task_states.items()
                 if s.state == T.COMPLETED and s.completed_at is not None}
        self.completion_order = sorted((index[k] for k in order if k in index),
                                       key=lambda i: order[tasks[i].id])

    # ------------------------------------------------------------------ plumbing

    @property
    def instance_id(self) -> str:
        return self.instance.id

    @property
    def tasks(self) -> tuple[TaskDefinition, ...]:
        return self.instance.definition.tasks

    def changed(self) -> None:
        """Wake event followers: something was committed."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_changed(self) -> None:
        """Until the next commit (or the end of the run)."""
        await self._changed.wait()

    def event(self, cls: type[WorkflowEvent], **fields: Any) -> WorkflowEvent:
        """A new event with the next ``seq``."""
        self.seq += 1
        return cls(seq=self.seq, instance_id=self.instance_id,
                   timestamp=self.engine.clock.now(), **fields)

    def record(self, *, state: TaskState | None = None, events: tuple[WorkflowEvent, ...] = (),
               fields: Mapping[str, Any] | None = None,
               transitions: tuple[StateTransition, ...] = ()) -> anyio.Event:
        """Queue one change for the store; the event is set when it is durable."""
        return self.journal.add(InstanceChanges(
            fields or {}, (state,) if state is not None else (), events, transitions))

    def transition(self, to: WorkflowState, reason: str | None = None,
                   events: tuple[WorkflowEvent, ...] = (),
                   fields: Mapping[str, Any] | None = None) -> anyio.Event:
        """Change the workflow's state (checked by the state machine) and record it."""
        frm = self.state
        if not self.engine.state_machine.is_valid_transition(frm, to):
            raise InvalidStateTransition(from_state=str(frm), to_state=str(to),
                                         instance_id=self.instance_id)
        self.state = to
        record = StateTransition(frm, to, self.engine.clock.now(), reason)
        return self.record(events=events, fields={"state": to, **(fields or {})},
                           transitions=(record,))

    def storage_failed(self, exc: BaseException) -> None:
        """The store refuses our writes: stop everything; nothing more can be recorded."""
        self.failure = f"store error: {exc}"
        self.stopping = self.stopping or "failed"
        for scope in self.running.values():
            scope.cancel()
        self.finished.set()

    # ------------------------------------------------------------------ the run

    async def execute(self, *, first_start: bool) -> None:
        """Run until every task is resolved, then finish the instance (and roll back)."""
        now = self.engine.clock.now()
        started = self.event(WorkflowStarted if first_start else WorkflowResumed,
                             **({"workflow_id": self.instance.workflow_id}
                                if first_start else {}))
        fields = {"started_at": now} if first_start else {}
        if self.state == S.RUNNING:  # recovered after a crash: it never stopped running
            self.record(events=(started,), fields=fields)
        else:
            self.transition(S.RUNNING, "started" if first_start else "resumed", (started,),
                            fields)
        timeout = self.instance.definition.config.timeout_seconds
        began = self.instance.started_at or now
        interval = (self.engine.settings.checkpoint_interval_seconds
                    or self.instance.definition.config.checkpoint_interval_seconds)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self.journal.flusher)
                tg.start_soon(self._keep_lease)
                tg.start_soon(self._watch_controls)
                if timeout:
                    # measured from the first start: a recovered run keeps its deadline
                    left = float(timeout) - (now - began).total_seconds()
                    tg.start_soon(self._watch_timeout, float(timeout), max(0.0, left))
                if interval:
                    tg.start_soon(self._checkpoint_timer, float(interval))
                self._begin()
                await self.finished.wait()
                while self._notifying:  # let gate notifications in flight arrive
                    await self._notified.wait()
                tg.cancel_scope.cancel()
        finally:
            self._tg = None
        if self.journal.error is None:
            await self._finish_instance()
            if self.state == S.PAUSED:  # a recovery point to resume from
                await self.snapshot()
        self.changed()

    async def _keep_lease(self) -> None:
        """Renew this process's lease on the instance; losing it stops the run (G9)."""
        engine = self.engine
        seconds = engine.settings.lease_seconds
        while True:
            await anyio.sleep(seconds / 3)  # real time: leases expire in real time
            try:
                with engine.clock.busy():
                    kept = await engine.store.renew_lease(self.instance_id, engine.owner,
                                                          seconds)
            except Exception as exc:
                logger.warning("instance %s: cannot renew the lease: %s", self.instance_id,
                               exc)
                continue  # it may still be ours; commits are fenced either way
            if not kept:
                self.storage_failed(StorageError("another process took over this instance "
                                                 "(its lease expired)"))
                return

    async def _watch_controls(self) -> None:
        """Carry out cancel/pause/resume requests other processes left in the store."""
        engine = self.engine
        while True:
            await anyio.sleep(engine.settings.control_poll_seconds)  # real time, like I/O
            try:
                with engine.clock.busy():
                    requests = await engine.store.take_controls(self.instance_id)
            except Exception as exc:
                logger.warning("instance %s: cannot read control requests: %s",
                               self.instance_id, exc)
                continue
            for action, reason in requests:
                try:
                    if action == "cancel":
                        self.stop("cancelled", reason)
                    elif action == "pause":
                        self.pause()
                    elif action == "resume":
                        self.resume()
                except InvalidStateTransition as exc:
                    logger.warning("instance %s: %s request ignored: %s", self.instance_id,
                                   action, exc)

    async def _checkpoint_timer(self, interval: float) -> None:
        """A snapshot ``interval`` after the first change since the last one: an idle run
        (waiting for people) neither writes snapshots nor keeps a fake clock busy."""
        while True:
            if self.seq == self._snapshot_seq:
                await self.wait_changed()
                continue
            await self.engine.clock.sleep(interval)
            await self.snapshot()

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

    async def snapshot(self) -> None:
        """Write a checkpoint of what is durable now, and say so in an event."""
        if self.journal.error is not None:
            return
        await self._flushed()
        try:
            with self.engine.clock.busy():
                checkpoint = await self.engine.checkpoints.create_checkpoint(self.current())
        except Exception as exc:  # a failed snapshot is logged; the rows are still there
            logger.error("instance %s: checkpoint failed: %s", self.instance_id, exc)
            return
        self.record(events=(self.event(CheckpointCreated, checkpoint_id=checkpoint.id),))
        self._snapshot_seq = self.seq
        await self._flushed()

    async def _flushed(self) -> None:
        """Until everything recorded so far is durable (the flusher may have stopped)."""
        if self._tg is None:
            await self.journal.drain()
        else:
            await self.journal.durable(self.record())

    def _begin(self) -> None:
        n = len(self.tasks)
        parents = self.dag.parents
        status = self.status
        self.unresolved = sum(1 for s in status if s not in RESOLVED)
        self.waiting = [sum(1 for p in parents[i] if status[p] not in RESOLVED)
                        for i in range(n)]
        self._to_decide = [i for i in reversed(range(n))
                           if status[i] == T.PENDING and not self.waiting[i]]
        self._settle()

    async def _watch_timeout(self, seconds: float, left: float) -> None:
        await self.engine.clock.sleep(left)
        self.stop("cancelled", f"workflow timed out after {seconds:g}s (config.timeout_seconds)")

    # ------------------------------------------------------------------ deciding

    def _decide(self, i: int) -> None:
        """All of task ``i``'s dependencies are resolved: run it, skip it or cancel it."""
        task = self.tasks[i]
        if self.stopping is not None and task.join != JoinRule.ALL_DONE:
            self._resolve(i, T.CANCELLED, f"workflow {self._stopping_word()}")
            return
        reason = self._skip_reason(i, task)
        if reason is None and i in self.conditions:
            try:
                if not self.conditions[i].evaluate(self._resolver(i, None)):
                    reason = f"condition is false: {task.condition}"
            except ExprError as exc:
                self._fail_now(i, f"cannot evaluate condition {task.condition!r}: "
                                  f"{exc.message}")
                return
        if reason is not None:
            self._resolve(i, T.SKIPPED, reason)
            return
        heapq.heappush(self.ready, (self.priority[i], i))

    def _skip_reason(self, i: int, task: TaskDefinition) -> str | None:
        parents = self.dag.parents[i]
        if not parents:
            return None
        status, ids = self.status, self.dag.ids
        for p in parents:  # a Conditional's branch not taken
            if p in self.branch:
                spec = self.tasks[p].type
                assert isinstance(spec, Conditional)
                taken = spec.true_branch if self.branch[p] else spec.false_branch
                other = spec.false_branch if self.branch[p] else spec.true_branch
                if task.id in other and task.id not in taken:
                    return f"branch not taken: {ids[p]!r} chose " + (
                        "true_branch" if self.branch[p] else "false_branch")
        join = task.join
        if join == JoinRule.ALL_DONE:
            return None
        if join == JoinRule.ALL_SUCCESS:
            bad = [ids[p] for p in parents if status[p] != T.COMPLETED]
            return (f"join all_success: {', '.join(map(repr, bad))} did not complete"
                    if bad else None)
        if join == JoinRule.ONE_SUCCESS:
            ok = any(status[p] == T.COMPLETED for p in parents)
            return None if ok else "join one_success: no dependency completed"
        failed = [ids[p] for p in parents if status[p] in (T.FAILED, T.CANCELLED)
                  and not self.continued[p]]
        if failed:
            return f"dependency {', '.join(map(repr, failed))} failed"
        if all(status[p] == T.SKIPPED for p in parents):
            return "every dependency was skipped"
        return None

    def _resolve(self, i: int, status: TaskStatus, reason: str) -> None:
        """Skip or cancel a task that never started; its dependents are decided next."""
        if self.status[i] != T.PENDING:
            return
        self.status[i] = status
        self.errors[i] = reason if status == T.CANCELLED else None
        self.unresolved -= 1
        task_id = self.tasks[i].id
        cls = TaskSkipped if status == T.SKIPPED else TaskCancelled
        self.record(state=TaskState(task_id, status, attempts=self.attempts[i],
                                    completed_at=self.engine.clock.now(),
                                    error=self.errors[i]),
                    events=(self.event(cls, task_id=task_id, reason=reason),))
        self._release(i)

    def _release(self, i: int) -> None:
        """Task ``i`` is resolved: count it off its dependents; the ready ones are decided
        by :meth:`_settle` (a worklist, so a long chain of skips cannot recurse deeply)."""
        waiting, status, todo = self.waiting, self.status, self._to_decide
        for c in self.dag.children[i]:
            waiting[c] -= 1
            if not waiting[c] and status[c] == T.PENDING:
                todo.append(c)

    def _settle(self) -> None:
        """Decide every task whose dependencies just resolved, then start what can start."""
        todo = self._to_decide
        while todo:
            c = todo.pop()
            if self.status[c] == T.PENDING:
                self._decide(c)
        self._pump()
        self._check_done()

    def _pump(self) -> None:
        """Start ready tasks while there are free slots."""
        limit = self.instance.definition.config.max_parallel_tasks
        ready, running = self.ready, self.running
        while ready and len(running) < limit and not self.paused and self._tg is not None:
            _, i = heapq.heappop(ready)
            if self.status[i] != T.PENDING:
                continue
            self.status[i] = T.RUNNING
            running[i] = anyio.CancelScope()
            self._tg.start_soon(self._run_task, i)
        self._update_activity()

    def _check_done(self) -> None:
        if not self.running and (self.unresolved == 0 or self.interrupted is not None):
            self.finished.set()

    def _update_activity(self) -> None:
        if self.stopping is not None or self.state not in (S.RUNNING, S.WAITING_APPROVAL):
            return
        gates_only = bool(self.running) and self.gates == len(self.running) and not self.ready
        if gates_only and self.state == S.RUNNING:
            self.transition(S.WAITING_APPROVAL, "only approval gates are pending",
                            (self.event(WorkflowWaitingApproval),))
        elif not gates_only and self.state == S.WAITING_APPROVAL:
            self.transition(S.RUNNING, "work resumed")

    def _stopping_word(self) -> str:
        return "cancelled" if self.stopping == "cancelled" else "failed"

    # ------------------------------------------------------------------ control

    def stop(self, kind: str, reason: str) -> None:
        """Fail or cancel the run: stop running tasks (not ``all_done`` ones), cancel the
        tasks that did not start, let cleanup tasks run, then finish."""
        if self.stopping is not None:
            if kind == "cancelled" and self.stopping != "cancelled":
                self.stopping, self.failure = "cancelled", reason
            return
        self.stopping = kind
        self.failure = reason
        if self.paused:
            self.paused = False
        for i, scope in list(self.running.items()):
            if self.tasks[i].join != JoinRule.ALL_DONE:
                scope.cancel()
        for i, status in enumerate(self.status):
            if status == T.PENDING and self.tasks[i].join != JoinRule.ALL_DONE:
                self._resolve(i, T.CANCELLED, f"workflow {self._stopping_word()}")
        self._settle()

    def interrupt(self, reason: str) -> None:
        """Stop running tasks now and leave the instance Paused: what they were doing runs
        again on resume (Ctrl-C in ``dagflow run``, or a host shutting down)."""
        if self.stopping is not None or self.interrupted is not None:
            return
        self.interrupted = reason
        self.paused = True
        for scope in self.running.values():
            scope.cancel()
        self._check_done()

    def pause(self) -> None:
        """Let running tasks finish; start nothing new."""
        if self.state not in (S.RUNNING, S.WAITING_APPROVAL):
            raise InvalidStateTransition(from_state=str(self.state), to_state=str(S.PAUSED),
                                         instance_id=self.instance_id)
        self.paused = True
        self.transition(S.PAUSED, "paused", (self.event(WorkflowPaused),))

    def resume(self) -> None:
        """Start ready tasks again."""
        if self.state != S.PAUSED:
            raise InvalidStateTransition(from_state=str(self.state), to_state=str(S.RUNNING),
                                         instance_id=self.instance_id)
        self.paused = False
        self.transition(S.RUNNING, "resumed", (self.event(WorkflowResumed),))
        self._settle()

    # ------------------------------------------------------------------ running a task

    async def _run_task(self, i: int) -> None:
        task = self.tasks[i]
        unit = Unit(task.id, task.id, task, self.attempts[i], started_at=self.started_at[i])
        scope = self.running[i]
        outcome = Outcome(T.CANCELLED, error=f"workflow {self._stopping_word()}")
        try:
            with scope:
                outcome = await self._run_unit(unit, i)
        except StorageError:
            outcome = Outcome(T.FAILED, error=self.failure or "store error")
        finally:
            self.attempts[i] = unit.attempts
            self.started_at[i] = unit.started_at
        self._complete(i, outcome)
        self._settle()

    def _complete(self, i: int, outcome: Outcome) -> None:
        task = self.tasks[i]
        self.running.pop(i, None)
        status = outcome.status
        if status == T.CANCELLED and self.interrupted is not None:
            # back to Pending, attempts kept: it runs again when the instance resumes
            self.status[i] = T.PENDING
            self.record(state=TaskState(task.id, T.PENDING, self.started_at[i], None,
                                        self.attempts[i], None, self.interrupted),
                        events=(self.event(TaskCancelled, task_id=task.id,
                                           reason=f"{self.interrupted}; runs again on resume"),))
            return
        if status == T.CANCELLED and self.stopping is None:
            status = T.FAILED  # cancelled from inside (a handler's own scope): a failure
        self.status[i] = status
        self.outputs[i] = outcome.output
        self.errors[i] = outcome.error
        self.unresolved -= 1
        now = self.engine.clock.now()
        if status == T.COMPLETED:
            event: WorkflowEvent = self.event(TaskCompleted, task_id=task.id,
                                              output=outcome.output or TaskOutput(),
                                              attempt=self.attempts[i])
            self.completion_order.append(i)
            if isinstance(task.type, Conditional):
                data = outcome.output.data if outcome.output else None
                self.branch[i] = bool(data.get("result")) if isinstance(data, dict) else False
        elif status == T.FAILED:
            event = self.event(TaskFailed, task_id=task.id, error=outcome.error or "failed",
                               attempt=self.attempts[i], output=outcome.output)
        else:
            event = self.event(TaskCancelled, task_id=task.id, reason=outcome.error or "")
        self.record(state=TaskState(task.id, status, self.started_at[i], now, self.attempts[i],
                                    outcome.output, outcome.error), events=(event,))
        if status == T.FAILED:
            self._on_failure(i, outcome)
        self._release(i)

    def _on_failure(self, i: int, outcome: Outcome) -> None:
        task = self.tasks[i]
        reason = f"task {task.id!r} failed: {outcome.error}"
        if outcome.timed_out_approval:
            self.stop("cancelled", f"ApprovalTimeout: {outcome.error}")
            return
        action = task.config.on_failure
        if action == FailureAction.CONTINUE:
            self.continued[i] = True
        elif action == FailureAction.ROLLBACK:
            self.stop("rollback", reason)
        else:
            self.stop("failed", reason)

    def _fail_now(self, i: int, error: str) -> None:
        """A task fails before it starts (its condition cannot be evaluated)."""
        self.status[i] = T.RUNNING  # as if it ran: _complete resolves a running task
        self._complete(i, Outcome(T.FAILED, error=error))

    async def _run_unit(self, unit: Unit, index: int | None) -> Outcome:
        """All attempts of a task (or iteration): retries with backoff, each attempt timed."""
        task = unit.task
        policy = effective_policy(task)
        tries_left = max(1, policy.max_attempts - unit.attempts) if policy else 1
        clock = self.engine.clock
        while True:
            tries_left -= 1
            unit.attempts += 1
            attempt = unit.attempts
            unit.started_at = unit.started_at or clock.now()
            done = self.record(
                state=TaskState(unit.key, T.RUNNING, unit.started_at, None, attempt),
                events=(self.event(TaskStarted, task_id=unit.key, attempt=attempt),))
            await self.journal.durable(done)  # durable before the side effect (G2, G4)
            self.engine._crash_point("task-started")
            if isinstance(task.type, Deploy | Scale) and task.config.checkpoint:
                await self.snapshot()  # a recovery point before touching the cluster
            outcome, retryable = await self._attempt(unit, attempt, index)
            self.engine._crash_point("task-finished")
            if outcome.status != T.FAILED or outcome.timed_out_approval:
                return outcome
            if not (retryable and tries_left > 0 and policy is not None
                    and is_retryable(policy, kind=outcome.kind, reason=outcome.error or "")):
                return outcome
            delay = backoff_seconds(policy, attempt)
            self.record(state=TaskState(unit.key, T.RUNNING, unit.started_at, None, attempt,
                                        outcome.output, outcome.error),
                        events=(self.event(TaskRetrying, task_id=unit.key, attempt=attempt,
                                           delay_seconds=delay,
                                           error=outcome.error or ""),))
            await clock.sleep(delay)

    async def _attempt(self, unit: Unit, attempt: int, index: int | None
                       ) -> tuple[Outcome, bool]:
        """One attempt; returns its outcome and whether a failure may be retried."""
        task = unit.task
        try:
            ctx = self.context(unit, attempt, index)
        except ExprError as exc:
            return Outcome(T.FAILED, error=self.redactor.text(exc.message), kind="reference"), False
        timeout = task.timeout.total_seconds() if task.timeout is not None else None
        redact = self.redactor
        try:
            output = await self._with_timeout(timeout, self.engine.executor.execute_task(task, ctx))
        except _TimedOut:
            return Outcome(T.FAILED, error=f"timed out after {timeout:g}s", kind="timeout"), True
        except ApprovalTimeout as exc:
            return Outcome(T.FAILED, error=str(exc), kind="approval_timeout",
                           timed_out_approval=True), False
        except TaskExecutionFailed as exc:
            partial = _redact_output(exc.output, redact) if exc.output is not None else None
            return Outcome(T.FAILED, partial, redact.text(exc.reason), exc.kind), exc.retryable
        except ExprError as exc:
            return Outcome(T.FAILED, error=redact.text(exc.message), kind="reference"), False
        except Exception as exc:
            return Outcome(T.FAILED, error=redact.text(f"{type(exc).__name__}: {exc}"),
                           kind=type(exc).__name__), True
        if not task.config.collect_output:
            output = TaskOutput(exit_code=output.exit_code, metrics=output.metrics)
        return Outcome(T.COMPLETED, _redact_output(output, redact)), False

    async def _with_timeout(self, seconds: float | None, work: Any) -> TaskOutput:
        """Await ``work``, failing with :class:`_TimedOut` after ``seconds`` on the clock."""
        if seconds is None:
            return await work  # type: ignore[no-any-return]
        fired = False
        result: TaskOutput | None = None
        with anyio.CancelScope() as outer:
            async with anyio.create_task_group() as tg:

                async def watchdog() -> None:
                    nonlocal fired
                    await self.engine.clock.sleep(seconds)
                    fired = True
                    outer.cancel()

                tg.start_soon(watchdog)
                result = await work
                tg.cancel_scope.cancel()
        if fired:  # a result that raced the deadline does not count (G10)
            raise _TimedOut
        if result is None:  # cancelled from outside while the watchdog was armed
            raise _TimedOut
        return result

    # ------------------------------------------------------------------ contexts

    def context(self, unit: Unit, attempt: int, index: int | None) -> TaskContext:
        """The TaskContext of one attempt, with the spec's references replaced."""
        task = unit.task
        spec = task.type
        if spec_has_refs(spec):
            spec = interpolate_spec(spec, self._resolver(index, unit))
        if isinstance(task.type, Approval):
            self.gate_units[(unit.task_id, unit.loop_index)] = unit
        on_line = None
        if task.config.stream_output:
            on_line = self._line_sink(unit.key)
        engine = self.engine
        return TaskContext(
            task_id=unit.task_id, spec=spec, instance_id=self.instance_id,
            workflow_id=self.instance.workflow_id, task=task, attempt=attempt,
            variables=self.instance.execution_context.variables,
            workdir=self.instance.workdir or ".", environ=engine.environ,
            loop_index=unit.loop_index, item=unit.item,
            idempotency_key=idempotency_key(self.instance_id, unit.task_id, unit.loop_index),
            clock=engine.clock, redactor=self.redactor, on_line=on_line,
            resources=engine.resources, runtime=self,
        )

    def _line_sink(self, key: str) -> Callable[[str, str], Any]:
        async def on_line(stream: str, line: str) -> None:
            self.record(events=(self.event(TaskOutputLine, task_id=key, stream=stream,
                                           line=self.redactor.text(line)),))
        return on_line

    def _resolver(self, index: int | None, unit: Unit | None) -> Callable[[Ref], Any]:
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
                return {"id": self.instance.workflow_id, "instance_id": self.instance_id,
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

    def evaluate(self, condition: str, ctx: TaskContext) -> bool:
        """Evaluate a Conditional's condition for the task of ``ctx``."""
        index = self.dag.index.get(ctx.task_id)
        unit = Unit(ctx.task_id, ctx.task_id, ctx.task or self.tasks[0],
                     loop_index=ctx.loop_index, item=ctx.item)
        return parse_condition(condition).evaluate(self._resolver(index, unit))


    # ------------------------------------------------------------------ flow types

    async def run_loop(self, ctx: TaskContext, spec: Loop) -> list[Any]:
        """Run a Loop's template per item (see :mod:`dagflow._run_flow`)."""
        return await _run_flow.run_loop(self, ctx, spec)

    async def run_subworkflow(self, ctx: TaskContext, spec: Subworkflow) -> dict[str, Any]:
        """Run a child instance and wait for it."""
        return await _run_flow.run_subworkflow(self, ctx, spec)

    async def wait_for_approval(self, ctx: TaskContext, spec: Approval) -> dict[str, Any]:
        """Open a gate and wait for a decision or its deadline."""
        return await _run_flow.wait_for_approval(self, ctx, spec)

    async def rollback(self) -> bool:
        """Undo completed tasks, newest first; True when all were undone."""
        return await _run_flow.rollback(self)

    async def notify(self, kind: str, event: WorkflowEvent | None = None) -> None:
        """Send the workflow's notifications of ``kind``."""
        await _run_flow.notify(self, kind, event)

    # ------------------------------------------------------------------ the end

    async def _finish_instance(self) -> None:
        """Record the final state; roll back first when a task asked for it."""
        now = self.engine.clock.now()
        if self.interrupted is not None and self.stopping is None and self.unresolved:
            if self.state != S.PAUSED:
                self.transition(S.PAUSED, self.interrupted, (self.event(WorkflowPaused),))
        elif self.stopping == "cancelled":
            reason = self.failure or "cancelled"
            self.transition(S.CANCELLED, reason,
                            (self.event(WorkflowCancelled, reason=reason),),
                            {"completed_at": now, "error": reason})
        elif self.stopping in ("failed", "rollback"):
            error = self.failure or "failed"
            self.transition(S.FAILED, error, (self.event(WorkflowFailed, error=error),),
                            {"completed_at": now, "error": error})
            if self.stopping == "rollback":
                await self.journal.drain()
                await self.rollback()
        else:
            self.transition(S.COMPLETED, "every task finished",
                            (self.event(WorkflowCompleted),), {"completed_at": now})
        await self.journal.drain()
        kinds = {S.COMPLETED: "completed", S.FAILED: "failed", S.CANCELLED: "cancelled",
                 S.ROLLED_BACK: "rolled_back"}
        if self.state in kinds:
            await self.notify(kinds[self.state])


def _redact_output(output: TaskOutput, redactor: Redactor) -> TaskOutput:
    if not redactor:
        return output
    return TaskOutput(
        stdout=redactor.text(output.stdout) if output.stdout else output.stdout,
        stderr=redactor.text(output.stderr) if output.stderr else output.stderr,
        exit_code=output.exit_code, data=redactor.data(output.data), metrics=output.metrics)
