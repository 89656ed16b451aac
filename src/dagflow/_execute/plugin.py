"""Plugin tasks: call a host function registered with the engine, or found in the
``dagflow.plugins`` entry point group."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from .._context import TaskContext
from .._errors import TaskExecutionFailed
from .._models import Plugin, TaskOutput

__all__ = ["PluginFunction", "PluginHandler", "find_plugin"]

PluginFunction = Callable[[Any, TaskContext], Awaitable[Any]]


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
