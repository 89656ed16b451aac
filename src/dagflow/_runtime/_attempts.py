"""Running one unit (a task, or one iteration of a Loop): its attempts, retried with
backoff under the task's policy, each one timed, and their outcome as a value."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import attrs

from .._context import Redactor, TaskContext
from .._errors import ApprovalTimeout, TaskExecutionFailed
from .._events import TaskRetrying, TaskStarted
from .._execute._retry import (
    RetryCallState,
    effective_policy,
    is_retryable,
    retry_on_value,
    retrying,
)
from .._expr import ExprError
from .._models import Deploy, Scale, TaskOutput, TaskState, TaskStatus
from ._book import Book, Unit

__all__ = ["Attempts", "Dispatch", "Outcome"]

T = TaskStatus

#: Runs one attempt of a unit given its context: the scheduler's flow control for Loop,
#: Conditional, Subworkflow and Approval, the executor for every other type.
Dispatch = Callable[[Unit, TaskContext, "int | None"], Awaitable[TaskOutput]]


@attrs.frozen
class Outcome:
    """How one attempt (or, as returned by ``run_unit``, all attempts) of a unit ended."""

    status: TaskStatus
    output: TaskOutput | None = None
    error: str | None = None
    kind: str = ""
    timed_out_approval: bool = False
    retryable: bool = False  # a failure the retry policy may try again
    retry_after: float | None = None  # seconds the failing service asked to wait


class _TimedOut(Exception):
    """A task's own timeout fired (raised inside the attempt, turned into a failure)."""


@attrs.define(eq=False, repr=False)
class Attempts:
    """Runs units of one instance: ``run_unit`` is all attempts of one."""

    book: Book
    dispatch: Dispatch

    async def run_unit(self, unit: Unit, index: int | None) -> Outcome:
        """All attempts of a task (or iteration): retried by tenacity under the task's
        policy, waiting on the engine's clock, each attempt timed."""
        policy = effective_policy(unit.task)
        if policy is None:
            return await self._one(unit, index)
        book = self.book

        def again(outcome: Outcome) -> bool:
            return (outcome.status == T.FAILED and outcome.retryable
                    and is_retryable(policy, kind=outcome.kind, reason=outcome.error or ""))

        def retrying_soon(state: RetryCallState) -> None:
            outcome: Outcome = state.outcome.result()  # type: ignore[union-attr]
            book.record(state=TaskState(unit.key, T.RUNNING, unit.started_at, None,
                                        unit.attempts, outcome.output, outcome.error),
                        events=(book.event(TaskRetrying, task_id=unit.key,
                                           attempt=unit.attempts,
                                           delay_seconds=state.upcoming_sleep,
                                           error=outcome.error or ""),))

        loop = retrying(policy, sleep=book.services.clock.sleep, attempts_done=unit.attempts,
                        retry=retry_on_value(again), before_sleep=retrying_soon)
        last: Outcome = await loop(self._one, unit, index)
        return last

    async def _one(self, unit: Unit, index: int | None) -> Outcome:
        """One attempt: its Running record first (durable before the side effect on a
        durable store: G2, G4), then the attempt."""
        book = self.book
        unit.attempts += 1
        attempt = unit.attempts
        now = book.services.clock.now()
        unit.started_at = unit.started_at or now
        done = book.record(
            state=TaskState(unit.key, T.RUNNING, unit.started_at, None, attempt),
            events=(book.event(TaskStarted, now, task_id=unit.key, attempt=attempt),))
        if book.services.durable:
            await book.journal.durable(done)
        task = unit.task
        if isinstance(task.type, Deploy | Scale) and task.config.checkpoint:
            await book.snapshot()  # a recovery point before touching the cluster
        # the attempt itself; a failure says whether it may be retried
        redact = book.redactor
        try:
            ctx = book.context(unit, attempt, index)
        except ExprError as exc:
            return Outcome(T.FAILED, error=redact.text(exc.message), kind="reference")
        timeout = task.timeout.total_seconds() if task.timeout is not None else None
        try:
            work = self.dispatch(unit, ctx, index)
            output = await (work if timeout is None else self._with_timeout(timeout, work))
        except _TimedOut:
            return Outcome(T.FAILED, error=f"timed out after {timeout:g}s", kind="timeout",
                           retryable=True)
        except ApprovalTimeout as exc:
            return Outcome(T.FAILED, error=str(exc), kind="approval_timeout",
                           timed_out_approval=True)
        except TaskExecutionFailed as exc:
            partial = redact_output(exc.output, redact) if exc.output is not None else None
            return Outcome(T.FAILED, partial, redact.text(exc.reason), exc.kind,
                           retryable=exc.retryable, retry_after=exc.retry_after)
        except ExprError as exc:
            return Outcome(T.FAILED, error=redact.text(exc.message), kind="reference")
        except Exception as exc:
            return Outcome(T.FAILED, error=redact.text(f"{type(exc).__name__}: {exc}"),
                           kind=type(exc).__name__, retryable=True)
        if not task.config.collect_output:
            output = TaskOutput(exit_code=output.exit_code, metrics=output.metrics)
        return Outcome(T.COMPLETED, redact_output(output, redact))

    async def _with_timeout(self, seconds: float, work: Awaitable[TaskOutput]) -> TaskOutput:
        """Await ``work``, failing with :class:`_TimedOut` after ``seconds`` on the clock."""
        fired = False
        result: TaskOutput | None = None
        clock = self.book.services.clock
        with anyio.CancelScope() as outer:
            async with anyio.create_task_group() as tg:

                async def watchdog() -> None:
                    nonlocal fired
                    await clock.sleep(seconds)
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


def redact_output(output: TaskOutput, redactor: Redactor) -> TaskOutput:
    """``output`` with every known secret replaced by ``***``."""
    if not redactor:
        return output
    return TaskOutput(
        stdout=redactor.text(output.stdout) if output.stdout else output.stdout,
        stderr=redactor.text(output.stderr) if output.stderr else output.stderr,
        exit_code=output.exit_code, data=redactor.data(output.data), metrics=output.metrics)

