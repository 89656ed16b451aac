"""One running instance: the dynamic scheduler, joins, failure actions, pause/cancel, the
flow-control task types, and the timers that keep a run honest (lease, control requests,
timeout, checkpoints).

A task starts the moment its last dependency is resolved, within ``max_parallel_tasks``;
among ready tasks the one with the longest remaining path to the end of the workflow goes
first.

Durability order (G4): a task's Running record is committed before its handler runs, and
its outcome before anything that depends on it starts — the journal commits in order, and
a dependent waits for its own Running record, which comes later.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Awaitable
from typing import Any

import anyio
import attrs

from .._context import TaskContext
from .._dag import WorkflowDag
from .._errors import InvalidStateTransition, StorageError
from .._events import (
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSkipped,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowWaitingApproval,
)
from .._execute import EMPTY_OUTPUT
from .._expr import ExprError
from .._models import (
    Approval,
    Conditional,
    FailureAction,
    JoinRule,
    Loop,
    Subworkflow,
    TaskDefinition,
    TaskOutput,
    TaskState,
    TaskStatus,
    WorkflowState,
)
from ._attempts import Attempts, Outcome
from ._book import RESOLVED, Book, Unit
from ._ending import notify, rollback
from ._flow import ChildRuns, evaluate_conditional, run_loop, run_subworkflow
from ._gate import wait_for_approval

__all__ = ["Run"]

logger = logging.getLogger("dagflow")

S = WorkflowState
T = TaskStatus
#: the task types the scheduler runs itself; every other one goes to the executor
_FLOW = (Loop, Conditional, Subworkflow, Approval)


def _priorities(dag: WorkflowDag) -> list[float]:
    """Heap keys: the longest remaining path first (negated), computed once per graph."""
    cached: list[float] | None = dag.definition._derived.get("priorities")
    if cached is None or len(cached) != len(dag.ids) or dag.definition._derived.get(
            "dag") is not dag:
        cached = [-r for r in dag.remaining_path()]
        if dag.definition._derived.get("dag") is dag:  # the graph kept on the definition
            dag.definition._derived["priorities"] = cached
    return cached


@attrs.define(eq=False, repr=False)
class Run:
    """The scheduler of one instance while this process runs it."""

    book: Book
    children: ChildRuns
    # whether the run looks for control requests itself (outside an entered engine,
    # whose runner looks for all of its runs at once)
    watch_controls: bool = True
    attempts: Attempts = attrs.field(init=False)

    waiting: list[int] = attrs.Factory(list)
    priority: list[float] = attrs.Factory(list)
    ready: list[tuple[float, int]] = attrs.Factory(list)
    _to_decide: list[int] = attrs.Factory(list)
    # running task -> whether it is an all_done task (its worker is in the cleanup group)
    running: dict[int, bool] = attrs.Factory(dict)
    limit: int = attrs.field(init=False)
    gates: int = 0
    unresolved: int = 0
    stopping: str | None = None  # "failed" | "rollback" | "cancelled"
    failure: str | None = None
    paused: bool = False
    interrupted: str | None = None  # why running tasks were stopped to be resumed later
    finished: anyio.Event = attrs.Factory(anyio.Event)
    _tg: Any = None
    # the task groups workers run in: False -> ordinary tasks, True -> all_done tasks;
    # stopping the run cancels the first group, interrupting it both (no scope per task)
    _groups: dict[bool, Any] = attrs.Factory(dict)
    # the groups this run cancelled itself (a group is also cancelled when the engine
    # shuts down: its tasks then stay Running, to run again on recovery)
    _stopped: set[bool] = attrs.Factory(set)
    _closing: anyio.Event = attrs.Factory(anyio.Event)
    _notifying: int = 0
    _notified: anyio.Event = attrs.Factory(anyio.Event)

    def __attrs_post_init__(self) -> None:
        self.attempts = Attempts(self.book, self._dispatch)
        self.priority = _priorities(self.book.dag)
        self.limit = self.book.instance.definition.config.max_parallel_tasks

    def __repr__(self) -> str:
        return (f"<Run {self.book.instance_id} {self.book.state} running={len(self.running)}"
                f" unresolved={self.unresolved}>")

    # ------------------------------------------------------------------ plumbing

    @property
    def instance_id(self) -> str:
        return self.book.instance_id

    @property
    def state(self) -> WorkflowState:
        return self.book.state

    def storage_failed(self, exc: BaseException) -> None:
        """The store refuses our writes: stop everything; nothing more can be recorded."""
        self.failure = f"store error: {exc}"
        self.stopping = self.stopping or "failed"
        self._cancel_workers(all_done=True)
        self.finished.set()

    # ------------------------------------------------------------------ the run

    async def execute(self, *, first_start: bool) -> None:
        """Run until every task is resolved, then finish the instance (and roll back)."""
        book = self.book
        services = book.services
        instance = book.instance
        now = services.clock.now()
        extra: dict[str, Any] = {"workflow_id": instance.workflow_id} if first_start else {}
        started = book.event(WorkflowStarted if first_start else WorkflowResumed, **extra)
        fields = {"started_at": now} if first_start else {}
        if book.state == S.RUNNING:  # recovered after a crash: it never stopped running
            book.record(events=(started,), fields=fields)
        else:
            book.transition(S.RUNNING, "started" if first_start else "resumed", (started,),
                            fields)
        timeout = instance.definition.config.timeout_seconds
        began = instance.started_at or now
        interval = (services.settings.checkpoint_interval_seconds
                    or instance.definition.config.checkpoint_interval_seconds)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(book.journal.flusher)
                await tg.start(self._hold_group, False)
                await tg.start(self._hold_group, True)
                self._tg = tg
                tg.start_soon(self._keep_lease)
                if self.watch_controls:
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
                self._closing.set()
                tg.cancel_scope.cancel()
        finally:
            self._tg = None
        if book.journal.error is None:
            await self._finish_instance()
            if book.state == S.PAUSED:  # a recovery point to resume from
                await book.snapshot()
        book.changed()

    async def _hold_group(self, all_done: bool, *,
                          task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep a task group for workers open until the run ends (or the group is
        cancelled: its workers then end, and the group with them)."""
        async with anyio.create_task_group() as group:
            self._groups[all_done] = group
            task_status.started()
            await self._closing.wait()

    def _cancel_workers(self, *, all_done: bool) -> None:
        """Cancel the running tasks (with ``all_done``: the cleanup tasks too)."""
        for kind in (False, True) if all_done else (False,):
            group = self._groups.get(kind)
            if group is not None and any(self.running[i] is kind for i in self.running):
                self._stopped.add(kind)
                group.cancel_scope.cancel()

    async def _keep_lease(self) -> None:
        """Renew this process's lease on the instance; losing it stops the run (G9)."""
        services = self.book.services
        seconds = services.settings.lease_seconds
        while True:
            await anyio.sleep(seconds / 3)  # real time: leases expire in real time
            try:
                with services.clock.busy():
                    kept = await services.leases.renew_lease(self.instance_id, services.owner,
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
        services = self.book.services
        while True:
            await anyio.sleep(services.settings.control_poll_seconds)  # real time, like I/O
            try:
                with services.clock.busy():
                    requests = await services.controls.take_controls(self.instance_id)
            except Exception as exc:
                logger.warning("instance %s: cannot read control requests: %s",
                               self.instance_id, exc)
                continue
            self.apply_controls(requests)

    def apply_controls(self, requests: list[tuple[str, str]]) -> None:
        """Carry out ``(action, reason)`` requests made by other processes."""
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
        book = self.book
        while True:
            if not book.changed_since_snapshot:
                await book.next_change()()
                continue
            await book.services.clock.sleep(interval)
            await book.snapshot()

    def _begin(self) -> None:
        book = self.book
        n = len(book.tasks)
        parents = book.dag.parents
        status = book.status
        self.unresolved = sum(1 for s in status if s not in RESOLVED)
        if self.unresolved == n:  # a fresh run: every dependency is still to come
            self.waiting = list(map(len, parents))
        else:
            self.waiting = [sum(1 for p in parents[i] if status[p] not in RESOLVED)
                            for i in range(n)]
        self._to_decide = [i for i in reversed(range(n))
                           if status[i] == T.PENDING and not self.waiting[i]]
        self._settle()

    async def _watch_timeout(self, seconds: float, left: float) -> None:
        await self.book.services.clock.sleep(left)
        self.stop("cancelled", f"workflow timed out after {seconds:g}s (config.timeout_seconds)")

    # ------------------------------------------------------------------ deciding

    def _decide(self, i: int) -> None:
        """All of task ``i``'s dependencies are resolved: run it, skip it or cancel it."""
        book = self.book
        task = book.tasks[i]
        if self.stopping is not None and task.join != JoinRule.ALL_DONE:
            self._resolve(i, T.CANCELLED, f"workflow {self._stopping_word()}")
            return
        reason = self._skip_reason(i, task)
        if reason is None and i in book.conditions:
            try:
                if not book.conditions[i].evaluate(book.resolver(i, None)):
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
        book = self.book
        parents = book.dag.parents[i]
        if not parents:
            return None
        status, ids, branch = book.status, book.dag.ids, book.branch
        for p in parents:  # a Conditional's branch not taken
            if p in branch:
                spec = book.tasks[p].type
                assert isinstance(spec, Conditional)
                taken = spec.true_branch if branch[p] else spec.false_branch
                other = spec.false_branch if branch[p] else spec.true_branch
                if task.id in other and task.id not in taken:
                    return f"branch not taken: {ids[p]!r} chose " + (
                        "true_branch" if branch[p] else "false_branch")
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
                  and not book.continued[p]]
        if failed:
            return f"dependency {', '.join(map(repr, failed))} failed"
        if all(status[p] == T.SKIPPED for p in parents):
            return "every dependency was skipped"
        return None

    def _resolve(self, i: int, status: TaskStatus, reason: str) -> None:
        """Skip or cancel a task that never started; its dependents are decided next."""
        book = self.book
        if book.status[i] != T.PENDING:
            return
        book.status[i] = status
        book.errors[i] = reason if status == T.CANCELLED else None
        self.unresolved -= 1
        task_id = book.tasks[i].id
        cls = TaskSkipped if status == T.SKIPPED else TaskCancelled
        book.record(state=TaskState(task_id, status, attempts=book.attempts[i],
                                    completed_at=book.services.clock.now(),
                                    error=book.errors[i]),
                    events=(book.event(cls, task_id=task_id, reason=reason),))
        self._release(i)

    def _release(self, i: int) -> None:
        """Task ``i`` is resolved: count it off its dependents; the ready ones are decided
        by :meth:`_settle` (a worklist, so a long chain of skips cannot recurse deeply)."""
        waiting, status, todo = self.waiting, self.book.status, self._to_decide
        for c in self.book.dag.children[i]:
            waiting[c] -= 1
            if not waiting[c] and status[c] == T.PENDING:
                todo.append(c)

    def _settle(self) -> None:
        """Decide every task whose dependencies just resolved, then start what can start."""
        self._decide_all()
        self._pump()
        self._check_done()

    def _decide_all(self) -> None:
        todo = self._to_decide
        status = self.book.status
        while todo:
            c = todo.pop()
            if status[c] == T.PENDING:
                self._decide(c)

    def _take(self) -> int | None:
        """The next ready task to run, marked Running; ``None`` when nothing is ready or
        no slot is free (or the run is paused)."""
        ready, running, status = self.ready, self.running, self.book.status
        if self.paused or self._tg is None or len(running) >= self.limit:
            return None
        while ready:
            _, i = heapq.heappop(ready)
            if status[i] == T.PENDING:
                status[i] = T.RUNNING
                running[i] = self.book.tasks[i].join is JoinRule.ALL_DONE
                return i
        return None

    def _pump(self) -> None:
        """Start a worker for each ready task while there are free slots."""
        while self.ready and (i := self._take()) is not None:
            self._groups[self.running[i]].start_soon(self._worker, i)
        self.update_activity()

    async def _worker(self, i: int) -> None:
        """Run task ``i``, then the next ready task of the same kind, and so on: a chain of
        tasks is run by one worker, with no new task spawned per step.

        Stopping the run cancels the worker's whole group; the task it was running is
        then recorded as cancelled (or, interrupted, as to run again) before the
        cancellation goes on.
        """
        book, run_unit, running = self.book, self.attempts.run_unit, self.running
        kind = running[i]
        done = 0
        try:
            while True:
                task = book.tasks[i]
                unit = Unit(task.id, task.id, task, book.attempts[i],
                            started_at=book.started_at[i])
                try:
                    outcome = await run_unit(unit, i)
                except StorageError:
                    outcome = Outcome(T.FAILED, error=self.failure or "store error")
                finally:
                    book.attempts[i] = unit.attempts
                    book.started_at[i] = unit.started_at
                self._complete(i, outcome)
                self._decide_all()
                taken = self._take()
                if taken is not None and running[taken] is not kind:
                    self._groups[running[taken]].start_soon(self._worker, taken)
                    taken = None
                self._pump()  # workers for the others that became ready
                if taken is None:
                    self._check_done()
                    return
                i = taken
                done += 1
                if not done % 32:  # a long chain of instant tasks lets the others in too
                    await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            if i in running and kind in self._stopped:
                # our own stop or interrupt (not the engine shutting down): record it
                self._complete(i, Outcome(T.CANCELLED,
                                          error=f"workflow {self._stopping_word()}"))
                self._decide_all()
                self._pump()
                self._check_done()
            raise

    def _check_done(self) -> None:
        if not self.running and (self.unresolved == 0 or self.interrupted is not None):
            self.finished.set()

    def update_activity(self) -> None:
        """Move the run between Running and WaitingApproval as approval gates open and
        close (WaitingApproval: only gates are left)."""
        book = self.book
        if not self.gates and book.state is S.RUNNING:
            return  # the common case: no gate open, nothing to change
        if self.stopping is not None or book.state not in (S.RUNNING, S.WAITING_APPROVAL):
            return
        gates_only = bool(self.running) and self.gates == len(self.running) and not self.ready
        if gates_only and book.state == S.RUNNING:
            book.transition(S.WAITING_APPROVAL, "only approval gates are pending",
                            (book.event(WorkflowWaitingApproval),))
        elif not gates_only and book.state == S.WAITING_APPROVAL:
            book.transition(S.RUNNING, "work resumed")

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
        tasks = self.book.tasks
        self._cancel_workers(all_done=False)
        for i, status in enumerate(self.book.status):
            if status == T.PENDING and tasks[i].join != JoinRule.ALL_DONE:
                self._resolve(i, T.CANCELLED, f"workflow {self._stopping_word()}")
        self._settle()

    def interrupt(self, reason: str) -> None:
        """Stop running tasks now and leave the instance Paused: what they were doing runs
        again on resume (Ctrl-C in ``dagflow run``, or a host shutting down)."""
        if self.stopping is not None or self.interrupted is not None:
            return
        self.interrupted = reason
        self.paused = True
        self._cancel_workers(all_done=True)
        self._check_done()

    def pause(self) -> None:
        """Let running tasks finish; start nothing new."""
        book = self.book
        if book.state not in (S.RUNNING, S.WAITING_APPROVAL):
            raise InvalidStateTransition(from_state=str(book.state), to_state=str(S.PAUSED),
                                         instance_id=self.instance_id)
        book.transition(S.PAUSED, "paused", (book.event(WorkflowPaused),))
        self.paused = True

    def resume(self) -> None:
        """Start ready tasks again."""
        book = self.book
        if book.state != S.PAUSED:
            raise InvalidStateTransition(from_state=str(book.state), to_state=str(S.RUNNING),
                                         instance_id=self.instance_id)
        book.transition(S.RUNNING, "resumed", (book.event(WorkflowResumed),))
        self.paused = False
        self._settle()

    # ------------------------------------------------------------------ running a task

    def _dispatch(self, unit: Unit, ctx: TaskContext, index: int | None
                  ) -> Awaitable[TaskOutput]:
        """One attempt: flow control here, every other task type through the executor
        (what to await, so that a leaf task's attempt costs no frame of its own here)."""
        spec = ctx.spec
        if not isinstance(spec, _FLOW):
            return self.book.services.executor.execute_task(unit.task, ctx)
        return self._flow(unit, ctx, index)

    async def _flow(self, unit: Unit, ctx: TaskContext, index: int | None) -> TaskOutput:
        spec = ctx.spec
        if isinstance(spec, Loop):
            return await run_loop(self.book, self.attempts, ctx, spec, index)
        if isinstance(spec, Conditional):
            return evaluate_conditional(self.book, ctx, spec, index)
        if isinstance(spec, Subworkflow):
            try:
                return await run_subworkflow(self.book, self.children, ctx, spec)
            except anyio.get_cancelled_exc_class():
                if (self.stopping is not None and self.interrupted is None
                        and (unit.task.join is JoinRule.ALL_DONE) in self._stopped):
                    # the run stopped itself (not a crash, an interrupt or the engine
                    # shutting down): its child is cancelled too, not left Running
                    with anyio.CancelScope(shield=True):
                        try:
                            await self.children.cancel_child(
                                self.book, ctx, f"parent {self.instance_id} "
                                                f"{self._stopping_word()}")
                        except Exception as exc:  # it stays Running; cancel it by hand
                            logger.warning("instance %s: cannot cancel the child of "
                                           "task %s: %s", self.instance_id, ctx.task_id, exc)
                raise
        assert isinstance(spec, Approval)
        return await wait_for_approval(self.book, self, unit, ctx, spec)

    def _complete(self, i: int, outcome: Outcome) -> None:
        book = self.book
        task = book.tasks[i]
        self.running.pop(i, None)
        status = outcome.status
        if status == T.CANCELLED and self.interrupted is not None:
            # back to Pending, attempts kept: it runs again when the instance resumes
            book.status[i] = T.PENDING
            book.record(state=TaskState(task.id, T.PENDING, book.started_at[i], None,
                                        book.attempts[i], None, self.interrupted),
                        events=(book.event(TaskCancelled, task_id=task.id,
                                           reason=f"{self.interrupted}; runs again on resume"),))
            return
        if status == T.CANCELLED and self.stopping is None:
            status = T.FAILED  # cancelled from inside (a handler's own scope): a failure
        book.status[i] = status
        book.outputs[i] = outcome.output
        book.errors[i] = outcome.error
        self.unresolved -= 1
        now = book.services.clock.now()
        if status == T.COMPLETED:
            event: WorkflowEvent = book.event(TaskCompleted, now, task_id=task.id,
                                              output=outcome.output or EMPTY_OUTPUT,
                                              attempt=book.attempts[i])
            book.completion_order.append(i)
            if isinstance(task.type, Conditional):
                book.choose_branch(i, outcome.output)
        elif status == T.FAILED:
            event = book.event(TaskFailed, now, task_id=task.id,
                               error=outcome.error or "failed", attempt=book.attempts[i],
                               output=outcome.output)
        else:
            event = book.event(TaskCancelled, now, task_id=task.id, reason=outcome.error or "")
        book.record(state=TaskState(task.id, status, book.started_at[i], now, book.attempts[i],
                                    outcome.output, outcome.error), events=(event,))
        if status == T.FAILED:
            self._on_failure(i, outcome)
        self._release(i)

    def _on_failure(self, i: int, outcome: Outcome) -> None:
        task = self.book.tasks[i]
        reason = f"task {task.id!r} failed: {outcome.error}"
        if outcome.timed_out_approval:
            self.stop("cancelled", f"ApprovalTimeout: {outcome.error}")
            return
        action = task.config.on_failure
        if action == FailureAction.CONTINUE:
            self.book.continued[i] = True
        elif action == FailureAction.ROLLBACK:
            self.stop("rollback", reason)
        else:
            self.stop("failed", reason)

    def _fail_now(self, i: int, error: str) -> None:
        """A task fails before it starts (its condition cannot be evaluated)."""
        self.book.status[i] = T.RUNNING  # as if it ran: _complete resolves a running task
        self._complete(i, Outcome(T.FAILED, error=error))

    # ------------------------------------------------------------------ notifications

    def notify_soon(self, kind: str, event: WorkflowEvent) -> None:
        """Send the workflow's notifications of ``kind`` in the run's task group; the
        run waits for them before it ends."""
        if self._tg is not None:
            # counted now, not when the task first runs: the run must not end between
            self._notifying += 1
            self._tg.start_soon(self._notify_in_background, kind, event)

    async def _notify_in_background(self, kind: str, event: WorkflowEvent) -> None:
        try:
            await notify(self.book, kind, event)
        finally:
            self._notifying -= 1
            self._notified.set()
            self._notified = anyio.Event()

    # ------------------------------------------------------------------ the end

    async def _finish_instance(self) -> None:
        """Record the final state; roll back first when a task asked for it."""
        book = self.book
        now = book.services.clock.now()
        if self.interrupted is not None and self.stopping is None and self.unresolved:
            if book.state != S.PAUSED:
                book.transition(S.PAUSED, self.interrupted, (book.event(WorkflowPaused),))
        elif self.stopping == "cancelled":
            reason = self.failure or "cancelled"
            book.transition(S.CANCELLED, reason,
                            (book.event(WorkflowCancelled, reason=reason),),
                            {"completed_at": now, "error": reason})
        elif self.stopping in ("failed", "rollback"):
            error = self.failure or "failed"
            book.transition(S.FAILED, error, (book.event(WorkflowFailed, error=error),),
                            {"completed_at": now, "error": error})
            if self.stopping == "rollback":
                await book.journal.drain()
                await rollback(book)
        else:
            book.transition(S.COMPLETED, "every task finished",
                            (book.event(WorkflowCompleted),), {"completed_at": now})
        await book.journal.drain()
        kinds = {S.COMPLETED: "completed", S.FAILED: "failed", S.CANCELLED: "cancelled",
                 S.ROLLED_BACK: "rolled_back"}
        if book.state in kinds:
            await notify(book, kinds[book.state])
