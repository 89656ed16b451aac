"""Handlers of the task types that steer the run itself: Conditional, Loop, Subworkflow,
Approval, and Plugin (which calls host code).

They work through ``ctx.runtime``, the engine's hooks for the running instance; outside
an engine (``runtime is None``) they refuse with a clear error.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from .._context import TaskContext
from .._errors import TaskExecutionFailed
from .._models import Approval, Conditional, Loop, Plugin, Subworkflow, TaskOutput

__all__ = [
    "ApprovalHandler",
    "ConditionalHandler",
    "LoopHandler",
    "PluginFunction",
    "PluginHandler",
    "SubworkflowHandler",
    "find_plugin",
]

PluginFunction = Callable[[Any, TaskContext], Awaitable[Any]]


def _runtime(ctx: TaskContext) -> Any:
    if ctx.runtime is None:
        raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False, kind="no_engine",
                                  reason=f"{type(ctx.spec).__name__} tasks run inside an Engine")
    return ctx.runtime


@attrs.frozen
class ConditionalHandler:
    """Evaluates the condition; the engine then skips the branch not taken.

    Output data: ``{"result": bool, "branch": "true_branch" | "false_branch"}``.
    """

    busy = False

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        spec: Conditional = ctx.spec
        result = _runtime(ctx).evaluate(spec.condition, ctx)
        branch = "true_branch" if result else "false_branch"
        return TaskOutput(data={"result": result, "branch": branch})


@attrs.frozen
class LoopHandler:
    """Runs the template once per item; data is the list of iteration outputs."""

    busy = False

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        spec: Loop = ctx.spec
        data = await _runtime(ctx).run_loop(ctx, spec)
        return TaskOutput(data=data, metrics={"iterations": float(len(data))})


@attrs.frozen
class SubworkflowHandler:
    """Runs another workflow as a child instance; data is its outputs."""

    busy = False

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        spec: Subworkflow = ctx.spec
        data = await _runtime(ctx).run_subworkflow(ctx, spec)
        return TaskOutput(data=data)


@attrs.frozen
class ApprovalHandler:
    """Opens a gate and waits for a decision or the deadline."""

    busy = False

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        spec: Approval = ctx.spec
        data = await _runtime(ctx).wait_for_approval(ctx, spec)
        return TaskOutput(data=data)


def find_plugin(name: str, registered: Mapping[str, PluginFunction]) -> PluginFunction | None:
    """A plugin registered with the engine, else one from the ``dagflow.plugins`` entry
    point group (loaded on first use)."""
    found = registered.get(name)
    if found is not None:
        return found
    from importlib.metadata import entry_points

    for entry in entry_points(group="dagflow.plugins"):
        if entry.name == name:
            loaded = entry.load()
            return loaded if callable(loaded) else None
    return None


@attrs.frozen
class PluginHandler:
    """Calls ``handler(config, ctx)`` for the plugin the task names.

    A mapping result becomes the output's ``data``; a TaskOutput is used as it is.
    """

    plugins: Mapping[str, PluginFunction] = attrs.Factory(dict)
    busy = True

    async def __call__(self, ctx: TaskContext) -> TaskOutput | Mapping[str, Any] | None:
        spec: Plugin = ctx.spec
        function = find_plugin(spec.plugin_name, self.plugins)
        if function is None:
            known = ", ".join(sorted(self.plugins)) or "none registered"
            raise TaskExecutionFailed(
                task_id=ctx.task_id, retryable=False, kind="unknown_plugin",
                reason=f"unknown plugin {spec.plugin_name!r} ({known}; entry point group "
                       "'dagflow.plugins')")
        result = function(spec.config, ctx)
        if inspect.isawaitable(result):
            result = await result
        if result is None or isinstance(result, TaskOutput | Mapping):
            return result
        return TaskOutput(data=result)
