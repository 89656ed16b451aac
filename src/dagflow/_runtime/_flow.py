"""The task types that steer a run, run by the scheduler itself (never by the executor,
so any executor gets them): Loop, Conditional and Subworkflow. Approval gates are in
:mod:`._gate`."""

from __future__ import annotations

import json
from typing import Any, Protocol

import anyio

from .._context import TaskContext
from .._errors import TaskExecutionFailed
from .._events import TaskCompleted, TaskFailed
from .._expr import Ref, parse_condition, parse_template
from .._models import (
    Conditional,
    Loop,
    Subworkflow,
    TaskOutput,
    TaskState,
    TaskStatus,
    WorkflowInstance,
    WorkflowState,
)
from ._attempts import Attempts
from ._book import Book, Unit

__all__ = ["ChildRuns", "evaluate_conditional", "run_loop", "run_subworkflow"]

S = WorkflowState
T = TaskStatus


class ChildRuns(Protocol):
    """Runs the child instance of a Subworkflow task attempt (the engine's runner)."""

    async def run_child(self, parent: Book, ctx: TaskContext, spec: Subworkflow,
                        chain: tuple[str, ...]) -> WorkflowInstance:
        """Run (or resume, or reuse) the child and return it once it stopped."""
        ...

    async def cancel_child(self, parent: Book, ctx: TaskContext, reason: str) -> None:
        """Cancel the child of an attempt its parent stopped, unless it finished."""
        ...


def evaluate_conditional(book: Book, ctx: TaskContext, spec: Conditional,
                         index: int | None) -> TaskOutput:
    """Evaluate the condition; the scheduler then skips the branch not taken.

    Output data: ``{"result": bool, "branch": "true_branch" | "false_branch"}``.
    """
    task = ctx.task or book.tasks[0]
    unit = Unit(ctx.task_id, ctx.task_id, task, loop_index=ctx.loop_index, item=ctx.item)
    result = parse_condition(spec.condition).evaluate(book.resolver(index, unit))
    branch = "true_branch" if result else "false_branch"
    return TaskOutput(data={"result": result, "branch": branch})


async def run_loop(book: Book, attempts: Attempts, ctx: TaskContext, spec: Loop,
                   index: int | None) -> TaskOutput:
    """Run the template per item; a failed iteration fails the Loop (after the others).

    Output data: the list of iteration outputs in item order.
    """
    items = _loop_items(book, ctx, spec, index)
    results: list[Any] = [None] * len(items)
    failures: list[str] = []
    limiter = anyio.CapacityLimiter(
        book.instance.definition.config.max_parallel_tasks if spec.parallel else 1)
    clock = book.services.clock

    async def iteration(k: int, item: Any) -> None:
        key = f"{ctx.task_id}[{k}]"
        saved = book.iterations.get(key)
        if saved is not None and saved.state == T.COMPLETED:  # finished before: reuse
            results[k] = _iteration_data(saved.output)
            return
        if failures and not spec.parallel:
            return
        async with limiter:
            unit = Unit(key, ctx.task_id, spec.task_template,
                        saved.attempts if saved is not None else 0, k, item)
            outcome = await attempts.run_unit(unit, index)
        state = TaskState(key, outcome.status, unit.started_at, clock.now(),
                          unit.attempts, outcome.output, outcome.error)
        book.iterations[key] = state
        if outcome.status == T.COMPLETED:
            results[k] = _iteration_data(outcome.output)
            book.record(state=state, events=(book.event(
                TaskCompleted, task_id=key, output=outcome.output or TaskOutput(),
                attempt=unit.attempts),))
        else:
            failures.append(f"item {k}: {outcome.error}")
            book.record(state=state, events=(book.event(
                TaskFailed, task_id=key, error=outcome.error or "failed",
                attempt=unit.attempts, output=outcome.output),))

    async with anyio.create_task_group() as tg:
        for k, item in enumerate(items):
            if spec.parallel:
                tg.start_soon(iteration, k, item)
            else:
                await iteration(k, item)
    if failures:
        raise TaskExecutionFailed(
            task_id=ctx.task_id, kind="loop", retryable=False,
            reason=f"{len(failures)} of {len(items)} iterations failed: "
                   + "; ".join(failures[:3]) + (" ..." if len(failures) > 3 else ""),
            output=TaskOutput(data=results))
    return TaskOutput(data=results, metrics={"iterations": float(len(results))})


def _loop_items(book: Book, ctx: TaskContext, spec: Loop, index: int | None) -> list[Any]:
    items: Any = spec.items
    if isinstance(items, str):
        text = items.strip()
        if text.startswith("${"):
            (ref,) = parse_template(text)
            assert isinstance(ref, Ref)
            items = book.resolver(index, None)(ref)
        else:
            variables = book.instance.execution_context.variables
            if text not in variables:
                raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False,
                                          kind="reference",
                                          reason=f"items: no variable named {text!r}")
            items = variables[text]
    if isinstance(items, str):  # a JSON list as text (e.g. a task's stdout)
        try:
            items = json.loads(items)
        except ValueError:
            items = [line for line in items.splitlines() if line.strip()]
    if not isinstance(items, list | tuple):
        raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False, kind="reference",
                                  reason=f"items must be a list, got {type(items).__name__}")
    return list(items)


def _iteration_data(output: TaskOutput | None) -> Any:
    if output is None:
        return None
    return {"stdout": output.stdout, "stderr": output.stderr, "exit_code": output.exit_code,
            "data": output.data}


async def run_subworkflow(book: Book, children: ChildRuns, ctx: TaskContext,
                          spec: Subworkflow) -> TaskOutput:
    """Run the named workflow as a child instance and wait for it; data is its outputs."""
    chain = (*book.parent_chain, book.instance.workflow_id)
    if spec.workflow_id in chain:
        loop = " -> ".join([*chain[chain.index(spec.workflow_id):], spec.workflow_id])
        raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False, kind="recursion",
                                  reason=f"subworkflow recursion: {loop}")
    child = await children.run_child(book, ctx, spec, chain)
    data = {
        "instance_id": child.id,
        "state": str(child.state),
        "tasks": {k: {"status": str(s.state),
                      "exit_code": s.output.exit_code if s.output else None,
                      "stdout": s.output.stdout if s.output else None,
                      "data": s.output.data if s.output else None}
                  for k, s in child.task_states.items()},
    }
    if child.state != S.COMPLETED:
        raise TaskExecutionFailed(
            task_id=ctx.task_id, retryable=False, kind="subworkflow",
            reason=f"subworkflow {spec.workflow_id!r} ({child.id}) ended "
                   f"{child.state}: {child.error or 'no error recorded'}",
            output=TaskOutput(data=data))
    return TaskOutput(data=data)
