"""Stand-ins for task handlers and approvers, so users test their workflows' logic without
running the real commands or waiting for people."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .._errors import TaskExecutionFailed
from .._models import ApprovalRequest, TaskOutput

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = ["Call", "RecordingHandler", "approve_when_pending", "fail"]


@attrs.frozen
class Call:
    """One recorded call of a :class:`RecordingHandler`."""

    task_id: str
    attempt: int
    spec: Any
    loop_index: int | None
    item: Any
    at: dt.datetime
    idempotency_key: str


def fail(reason: str = "failed", *, retryable: bool = True, kind: str = "test") -> Exception:
    """An exception a :class:`RecordingHandler` result may be, to fail that attempt."""
    return TaskExecutionFailed(reason=reason, retryable=retryable, kind=kind)


@attrs.define(eq=False)
class RecordingHandler:
    """A task handler (or plugin function) that records every call and answers from a
    script.

    Register it for a task type (``Engine(handlers={"Command": rec})``) or as a plugin
    (``Engine(plugins={"noop": rec})``).

    Args:
        results: Per task id, what to answer: a value (a TaskOutput, a mapping that
            becomes ``data``, or ``None``), an exception to raise, a callable taking the
            context, or a list with one answer per attempt (the last one repeats).
        default: The answer for task ids not in ``results``.
        seconds: How long each call takes on the engine's clock (a FakeClock skips it).
    """

    results: Mapping[str, Any] = attrs.Factory(dict)
    default: Any = None
    seconds: float | Mapping[str, float] = 0.0
    calls: list[Call] = attrs.Factory(list)
    busy = False  # it only waits on the engine's clock

    def __repr__(self) -> str:
        return f"<RecordingHandler calls={len(self.calls)}>"

    def task_ids(self) -> list[str]:
        """The task ids called, in call order (a Loop iteration as ``loop[i]``)."""
        return [c.task_id if c.loop_index is None else f"{c.task_id}[{c.loop_index}]"
                for c in self.calls]

    def attempts(self, task_id: str) -> int:
        """How many times ``task_id`` was called."""
        return sum(1 for c in self.calls if c.task_id == task_id)

    async def __call__(self, ctx: Any, plugin_ctx: Any = None) -> Any:
        # a task handler gets (ctx); a plugin function gets (config, ctx)
        if plugin_ctx is not None:
            ctx = plugin_ctx
        self.calls.append(Call(ctx.task_id, ctx.attempt, ctx.spec, ctx.loop_index, ctx.item,
                               ctx.clock.now(), ctx.idempotency_key))
        seconds = (self.seconds.get(ctx.task_id, 0.0) if isinstance(self.seconds, Mapping)
                   else self.seconds)
        if seconds:
            await ctx.clock.sleep(seconds)
        answer = self.results.get(ctx.task_id, self.default)
        if isinstance(answer, list):
            answer = answer[min(ctx.attempt, len(answer)) - 1] if answer else None
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer) and not isinstance(answer, TaskOutput):
            answer = answer(ctx)
            if hasattr(answer, "__await__"):
                answer = await answer
        return answer


async def approve_when_pending(
    engine: Engine, approver: str, *, task_id: str | None = None, comment: str | None = None,
    reject: bool = False, count: int = 1, poll_seconds: float = 0.01,
    predicate: Callable[[ApprovalRequest], bool] | None = None,
) -> list[str]:
    """Wait for ``count`` open gates (of ``task_id`` if given) and decide them as
    ``approver``; returns their approval ids. Run it beside ``engine.run`` in a task group.
    """
    decided: list[str] = []
    approvals = engine.approvals
    while len(decided) < count:
        # waiting on the system's own signal, not on time, keeps a FakeClock from
        # jumping past the gate's deadline while this helper waits
        changed = getattr(approvals, "wait_for_any_change", None)
        for request in await approvals.list_pending_approvals(None):
            if request.approval_id in decided or (task_id and request.task_id != task_id):
                continue
            if predicate is not None and not predicate(request):
                continue
            if reject:
                await engine.approvals.reject_approval(request.approval_id, approver,
                                                       comment or "rejected in a test")
            else:
                await engine.approvals.grant_approval(request.approval_id, approver, comment)
            decided.append(request.approval_id)
            if len(decided) >= count:
                break
        else:
            if changed is not None:
                await changed()
            else:
                await anyio.sleep(poll_seconds)
    return decided
