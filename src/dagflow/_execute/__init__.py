"""The default TaskExecutor: one handler per task type, looked up by the ``type:`` name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .._context import TaskContext
from .._errors import TaskExecutionFailed
from .._models import TaskDefinition, TaskOutput
from .._protocols import TaskHandler
from .plugin import PluginFunction, PluginHandler

__all__ = ["DefaultTaskExecutor", "builtin_handlers", "to_output"]

def builtin_handlers(plugins: Mapping[str, PluginFunction] | None = None
                     ) -> dict[str, TaskHandler]:
    """A handler for every built-in leaf task type, each imported by its first task.
    Loop, Conditional, Subworkflow and Approval are the engine's own flow control."""
    from .command import CommandHandler

    return {
        "Command": CommandHandler(),
        "Http": _OnFirstUse("http", "HttpHandler"),
        "Query": _OnFirstUse("query", "QueryHandler"),
        "Deploy": _OnFirstUse("cluster", "DeployHandler"),
        "Scale": _OnFirstUse("cluster", "ScaleHandler"),
        "Plugin": PluginHandler(plugins if plugins is not None else {}),
    }


@attrs.define(eq=False)
class _OnFirstUse:
    """A built-in handler, imported by the first task of its type: httpx, the database
    drivers and the cluster code take longer to import than the rest of the engine, and
    most runs use few task types."""

    module: str
    name: str
    busy = True
    _handler: Any = None

    def __repr__(self) -> str:
        if self._handler is None:
            return f"<{self.name} (not imported yet)>"
        return repr(self._handler)

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        if self._handler is None:
            import importlib

            found = importlib.import_module(f".{self.module}", __package__)
            self._handler = getattr(found, self.name)()
        output: TaskOutput = await self._handler(ctx)
        return output


#: shared by every task that returned nothing (TaskOutput is frozen): a long run then
#: keeps no object per such task for the garbage collector to traverse
EMPTY_OUTPUT = TaskOutput()


def to_output(result: Any) -> TaskOutput:
    """What a handler returned, as a TaskOutput (a mapping becomes ``data``)."""
    if isinstance(result, TaskOutput):
        return result
    if result is None:
        return EMPTY_OUTPUT
    if isinstance(result, Mapping):
        return TaskOutput(data=dict(result))
    return TaskOutput(data=result)


@attrs.define(eq=False)
class DefaultTaskExecutor:
    """The default :class:`~dagflow.TaskExecutor`.

    Args:
        handlers: Task type name -> handler; the built-ins plus the host's own types.
        type_names: The host's settings classes -> their ``type:`` name, where it is not
            the class's ``type_name`` or ``__name__``.
    """

    handlers: dict[str, TaskHandler] = attrs.Factory(builtin_handlers)
    type_names: dict[type[Any], str] = attrs.Factory(dict)

    def __repr__(self) -> str:
        return f"<DefaultTaskExecutor types={len(self.handlers)}>"

    def handler_for(self, spec: Any) -> TaskHandler:
        """The handler of ``spec``'s task type.

        Raises:
            TaskExecutionFailed: No handler is registered for it.
        """
        cls = type(spec)
        name = self.type_names.get(cls) or cls.__dict__.get("type_name") or cls.__name__
        handler = self.handlers.get(name)
        if handler is None:
            raise TaskExecutionFailed(
                reason=f"no handler for task type {name!r} (register one with "
                       "Engine(handlers=...) or engine.register_task_type)",
                retryable=False, kind="no_handler")
        return handler

    async def execute_task(self, task: TaskDefinition, context: TaskContext) -> TaskOutput:
        """Run one attempt; failures raise TaskExecutionFailed (or what the handler raised).

        The engine cancels an attempt by cancelling the scope it runs in.
        """
        handler = self.handler_for(context.spec)
        if getattr(handler, "busy", True):
            with context.clock.busy():
                return to_output(await handler(context))
        return to_output(await handler(context))
