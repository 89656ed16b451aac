"""dagflow: an embeddable workflow engine.

Load a workflow with :func:`load` / :func:`loads`; every problem in a file is reported
at once, each with its ``file:line:col``.

How this module is built (for maintainers)
------------------------------------------
``_EXPORTS`` is the public API: one line per name, with the private module that defines
it. Everything else follows from it:

- ``__all__`` is ``sorted(_EXPORTS)``; ``dir(dagflow)`` lists the same names.
- ``__getattr__`` (PEP 562) imports a name's module on first use, so ``import dagflow``
  runs this file only: no I/O, no optional driver, not even ``typing``.
- mypy and pyright cannot evaluate a dict, so they read the plain ``if TYPE_CHECKING:``
  imports at the end of this file. ``python tools/public_api.py`` writes them from
  ``_EXPORTS`` and ``tests/test_public_api.py`` fails when the two disagree. The other
  direction, deriving the list from those imports by parsing this file with ``ast``, was
  rejected: the first attribute access would read and parse source code, which is I/O,
  takes time, and fails where only bytecode is installed (frozen or zipped apps).

To add a name, add its line to ``_EXPORTS``, run ``python tools/public_api.py`` and
document the name in ``docs/api.md``.

Public classes and functions report ``__module__ == "dagflow"``, so reprs, tracebacks,
pickles and the docs show the name users import, not where it happens to be defined.
The rename happens on the first lookup of any name here, for every exported name whose
module is imported by then: a name is renamed no later than its own first lookup, while
an object that a module imported later hands out first (an error raised deep inside a
run, say) shows its private module until then. Before renaming a class, its own
annotations are evaluated in its defining module and stored evaluated:
``typing.get_type_hints`` (which attrs' ``resolve_types`` and cattrs use) evaluates string
annotations in ``sys.modules[cls.__module__]``, which after the rename would be this
module, where those names are not. An annotation that does not evaluate in its own module
either (a name imported only for type checkers) becomes a ``ForwardRef`` to that module,
so it fails as before. Type aliases such as ``PluginFunction`` keep their read-only
``__module__``, and, as with trio's classes, ``inspect.getsource`` cannot find a renamed
class.
"""

from __future__ import annotations

import sys

# Not `from typing import TYPE_CHECKING`: typing would be most of `import dagflow`'s time.
# mypy and pyright treat any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The public API: name -> the private module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    "MemoryApprovalSystem": "._approval",
    "DefaultApprovalSystem": "._approval.store",
    "DefaultCheckpointManager": "._checkpoint",
    "EmailNotifier": "._approval.notify",
    "Notification": "._approval.notify",
    "NotificationError": "._approval.notify",
    "Notifier": "._approval.notify",
    "SmtpSettings": "._settings",
    "WebhookNotifier": "._approval.notify",
    "SystemClock": "._clock",
    "Resources": "._context",
    "TaskContext": "._context",
    "DagEdge": "._dag",
    "DagNode": "._dag",
    "DefaultDagBuilder": "._dag",
    "WorkflowDag": "._dag",
    "Engine": "._engine",
    "EnvSecretProvider": "._engine",
    "ApprovalError": "._errors",
    "ApprovalTimeout": "._errors",
    "CheckpointError": "._errors",
    "CycleDetected": "._errors",
    "DependencyNotSatisfied": "._errors",
    "InvalidStateTransition": "._errors",
    "ParseError": "._errors",
    "Problem": "._errors",
    "StorageError": "._errors",
    "TaskExecutionFailed": "._errors",
    "ValidationError": "._errors",
    "WorkflowError": "._errors",
    "WorkflowNotFound": "._errors",
    "ApprovalExpired": "._events",
    "ApprovalGranted": "._events",
    "ApprovalRejected": "._events",
    "ApprovalRequired": "._events",
    "CheckpointCreated": "._events",
    "NotificationFailed": "._events",
    "NotificationSent": "._events",
    "RollbackCompleted": "._events",
    "RollbackFailed": "._events",
    "RollbackStarted": "._events",
    "RollbackTaskCompleted": "._events",
    "RollbackTaskFailed": "._events",
    "TaskCancelled": "._events",
    "TaskCompleted": "._events",
    "TaskFailed": "._events",
    "TaskOutputLine": "._events",
    "TaskRetrying": "._events",
    "TaskSkipped": "._events",
    "TaskStarted": "._events",
    "WorkflowCancelled": "._events",
    "WorkflowCompleted": "._events",
    "WorkflowEvent": "._events",
    "WorkflowFailed": "._events",
    "WorkflowPaused": "._events",
    "WorkflowResumed": "._events",
    "WorkflowStarted": "._events",
    "WorkflowWaitingApproval": "._events",
    "DefaultTaskExecutor": "._execute",
    "PluginFunction": "._execute.plugin",
    "Approval": "._models",
    "ApprovalRequest": "._models",
    "ApprovalStatus": "._models",
    "ApprovalVote": "._models",
    "Checkpoint": "._models",
    "Command": "._models",
    "Conditional": "._models",
    "Deploy": "._models",
    "ExecutionContext": "._models",
    "FailureAction": "._models",
    "Http": "._models",
    "InstanceChanges": "._models",
    "JoinRule": "._models",
    "Loop": "._models",
    "NotificationConfig": "._models",
    "Plugin": "._models",
    "Query": "._models",
    "RetryPolicy": "._models",
    "Scale": "._models",
    "StateTransition": "._models",
    "Subworkflow": "._models",
    "TaskConfig": "._models",
    "TaskDefinition": "._models",
    "TaskOutput": "._models",
    "TaskState": "._models",
    "TaskStatus": "._models",
    "TaskType": "._models",
    "TimeoutAction": "._models",
    "WorkflowConfig": "._models",
    "WorkflowDefinition": "._models",
    "WorkflowFilters": "._models",
    "WorkflowInstance": "._models",
    "WorkflowState": "._models",
    "DefaultWorkflowParser": "._parse",
    "ParseLimits": "._parse",
    "dump": "._parse",
    "load": "._parse",
    "loads": "._parse",
    "ApprovalStore": "._protocols",
    "ApprovalSystem": "._protocols",
    "CheckpointStore": "._protocols",
    "ControlStore": "._protocols",
    "InstanceStore": "._protocols",
    "LeaseStore": "._protocols",
    "CheckpointManager": "._protocols",
    "Clock": "._protocols",
    "ClusterClient": "._protocols",
    "DagBuilder": "._protocols",
    "SecretProvider": "._protocols",
    "StateMachine": "._protocols",
    "TaskExecutor": "._protocols",
    "TaskHandler": "._protocols",
    "WorkflowEngine": "._protocols",
    "WorkflowParser": "._protocols",
    "WorkflowStorage": "._protocols",
    "json_schema": "._schema",
    "EgressPolicy": "._settings",
    "EngineSettings": "._settings",
    "DefaultStateMachine": "._state",
    "MemoryStorage": "._storage",
    "open_store": "._storage",
    "ComposedStorage": "._storage.composed",
    "PostgresStorage": "._storage.postgres",
    "SqliteStorage": "._storage.sqlite",
    "EventStream": "._runtime._stream",
    "run": "._sync",
}

if not TYPE_CHECKING:  # hidden from mypy, which takes a computed __all__ to export nothing
    __all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import an exported name's module on its first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(module, __name__), name)
        _adopt_imported()
        return value
    if name == "__version__":  # read lazily: importlib.metadata is slow to import
        from importlib.metadata import version

        globals()[name] = found = version("dagflow")
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """This module's names and every exported name, imported yet or not."""
    return sorted({*globals(), *_EXPORTS, "__version__"})


def _adopt_imported() -> None:
    """Rename and cache every exported name whose module has finished importing; later
    lookups of a cached name skip ``__getattr__``."""
    namespace = globals()
    for name, module in _EXPORTS.items():
        loaded = sys.modules.get(__name__ + module)
        if name in namespace or loaded is None:
            continue
        # a module still being imported (a circular import, or another thread) may not
        # have defined everything its annotations use yet: adopt its names next time
        if getattr(getattr(loaded, "__spec__", None), "_initializing", False):
            continue
        if hasattr(loaded, name):  # a wrong entry fails in __getattr__, with its name
            value = getattr(loaded, name)
            _adopt(name, value)
            namespace[name] = value


def _adopt(name: str, value: object) -> None:
    """Make a class or function defined in dagflow report ``dagflow.<name>``."""
    import types

    if not isinstance(value, (type, types.FunctionType)):
        return  # a type alias: its __module__ is read-only and names its origin's module
    if value.__qualname__ != name or not value.__module__.startswith(__name__ + "."):
        return  # pickle would look it up as dagflow.<qualname>; or another library's object
    if isinstance(value, type):
        # first, so that a thread adopting the same class at the same time finds either
        # the private module or evaluated annotations, never strings and "dagflow"
        _evaluate_annotations(value)
    value.__module__ = __name__  # functions evaluate theirs in __globals__, which stays


def _evaluate_annotations(cls: type) -> None:
    """Store ``cls``'s own annotations evaluated in its defining module, as
    ``typing.get_type_hints`` would, so that evaluating them later needs no namespace."""
    import typing

    own = cls.__dict__.get("__annotations__")  # noqa: RUF063 - changed in place, not a copy
    if not own:
        return
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # one of them (maybe a base's) names what only type checkers see
        hints = {}
        module = cls.__module__
        for key, annotation in own.items():
            probe = type(cls.__name__, (), {"__annotations__": {key: annotation}})
            try:  # get_type_hints' own order: the module's names, then the class's
                hints |= typing.get_type_hints(probe, dict(vars(cls)), vars(sys.modules[module]),
                                               include_extras=True)
            except Exception:
                # it did not evaluate before the rename either; this keeps it evaluating
                # where it was written, with the same error, should anyone try again
                if isinstance(annotation, str):
                    hints[key] = typing.ForwardRef(annotation, is_argument=False,
                                                   module=module, is_class=True)
    for key in own.keys() & hints.keys():
        own[key] = hints[key]


# Generated from _EXPORTS by `python tools/public_api.py`; do not edit below.
if TYPE_CHECKING:
    from ._approval import MemoryApprovalSystem as MemoryApprovalSystem
    from ._approval.notify import EmailNotifier as EmailNotifier
    from ._approval.notify import Notification as Notification
    from ._approval.notify import NotificationError as NotificationError
    from ._approval.notify import Notifier as Notifier
    from ._approval.notify import WebhookNotifier as WebhookNotifier
    from ._approval.store import DefaultApprovalSystem as DefaultApprovalSystem
    from ._checkpoint import DefaultCheckpointManager as DefaultCheckpointManager
    from ._clock import SystemClock as SystemClock
    from ._context import Resources as Resources
    from ._context import TaskContext as TaskContext
    from ._dag import DagEdge as DagEdge
    from ._dag import DagNode as DagNode
    from ._dag import DefaultDagBuilder as DefaultDagBuilder
    from ._dag import WorkflowDag as WorkflowDag
    from ._engine import Engine as Engine
    from ._engine import EnvSecretProvider as EnvSecretProvider
    from ._errors import ApprovalError as ApprovalError
    from ._errors import ApprovalTimeout as ApprovalTimeout
    from ._errors import CheckpointError as CheckpointError
    from ._errors import CycleDetected as CycleDetected
    from ._errors import DependencyNotSatisfied as DependencyNotSatisfied
    from ._errors import InvalidStateTransition as InvalidStateTransition
    from ._errors import ParseError as ParseError
    from ._errors import Problem as Problem
    from ._errors import StorageError as StorageError
    from ._errors import TaskExecutionFailed as TaskExecutionFailed
    from ._errors import ValidationError as ValidationError
    from ._errors import WorkflowError as WorkflowError
    from ._errors import WorkflowNotFound as WorkflowNotFound
    from ._events import ApprovalExpired as ApprovalExpired
    from ._events import ApprovalGranted as ApprovalGranted
    from ._events import ApprovalRejected as ApprovalRejected
    from ._events import ApprovalRequired as ApprovalRequired
    from ._events import CheckpointCreated as CheckpointCreated
    from ._events import NotificationFailed as NotificationFailed
    from ._events import NotificationSent as NotificationSent
    from ._events import RollbackCompleted as RollbackCompleted
    from ._events import RollbackFailed as RollbackFailed
    from ._events import RollbackStarted as RollbackStarted
    from ._events import RollbackTaskCompleted as RollbackTaskCompleted
    from ._events import RollbackTaskFailed as RollbackTaskFailed
    from ._events import TaskCancelled as TaskCancelled
    from ._events import TaskCompleted as TaskCompleted
    from ._events import TaskFailed as TaskFailed
    from ._events import TaskOutputLine as TaskOutputLine
    from ._events import TaskRetrying as TaskRetrying
    from ._events import TaskSkipped as TaskSkipped
    from ._events import TaskStarted as TaskStarted
    from ._events import WorkflowCancelled as WorkflowCancelled
    from ._events import WorkflowCompleted as WorkflowCompleted
    from ._events import WorkflowEvent as WorkflowEvent
    from ._events import WorkflowFailed as WorkflowFailed
    from ._events import WorkflowPaused as WorkflowPaused
    from ._events import WorkflowResumed as WorkflowResumed
    from ._events import WorkflowStarted as WorkflowStarted
    from ._events import WorkflowWaitingApproval as WorkflowWaitingApproval
    from ._execute import DefaultTaskExecutor as DefaultTaskExecutor
    from ._execute.plugin import PluginFunction as PluginFunction
    from ._models import Approval as Approval
    from ._models import ApprovalRequest as ApprovalRequest
    from ._models import ApprovalStatus as ApprovalStatus
    from ._models import ApprovalVote as ApprovalVote
    from ._models import Checkpoint as Checkpoint
    from ._models import Command as Command
    from ._models import Conditional as Conditional
    from ._models import Deploy as Deploy
    from ._models import ExecutionContext as ExecutionContext
    from ._models import FailureAction as FailureAction
    from ._models import Http as Http
    from ._models import InstanceChanges as InstanceChanges
    from ._models import JoinRule as JoinRule
    from ._models import Loop as Loop
    from ._models import NotificationConfig as NotificationConfig
    from ._models import Plugin as Plugin
    from ._models import Query as Query
    from ._models import RetryPolicy as RetryPolicy
    from ._models import Scale as Scale
    from ._models import StateTransition as StateTransition
    from ._models import Subworkflow as Subworkflow
    from ._models import TaskConfig as TaskConfig
    from ._models import TaskDefinition as TaskDefinition
    from ._models import TaskOutput as TaskOutput
    from ._models import TaskState as TaskState
    from ._models import TaskStatus as TaskStatus
    from ._models import TaskType as TaskType
    from ._models import TimeoutAction as TimeoutAction
    from ._models import WorkflowConfig as WorkflowConfig
    from ._models import WorkflowDefinition as WorkflowDefinition
    from ._models import WorkflowFilters as WorkflowFilters
    from ._models import WorkflowInstance as WorkflowInstance
    from ._models import WorkflowState as WorkflowState
    from ._parse import DefaultWorkflowParser as DefaultWorkflowParser
    from ._parse import ParseLimits as ParseLimits
    from ._parse import dump as dump
    from ._parse import load as load
    from ._parse import loads as loads
    from ._protocols import ApprovalStore as ApprovalStore
    from ._protocols import ApprovalSystem as ApprovalSystem
    from ._protocols import CheckpointManager as CheckpointManager
    from ._protocols import CheckpointStore as CheckpointStore
    from ._protocols import Clock as Clock
    from ._protocols import ClusterClient as ClusterClient
    from ._protocols import ControlStore as ControlStore
    from ._protocols import DagBuilder as DagBuilder
    from ._protocols import InstanceStore as InstanceStore
    from ._protocols import LeaseStore as LeaseStore
    from ._protocols import SecretProvider as SecretProvider
    from ._protocols import StateMachine as StateMachine
    from ._protocols import TaskExecutor as TaskExecutor
    from ._protocols import TaskHandler as TaskHandler
    from ._protocols import WorkflowEngine as WorkflowEngine
    from ._protocols import WorkflowParser as WorkflowParser
    from ._protocols import WorkflowStorage as WorkflowStorage
    from ._runtime._stream import EventStream as EventStream
    from ._schema import json_schema as json_schema
    from ._settings import EgressPolicy as EgressPolicy
    from ._settings import EngineSettings as EngineSettings
    from ._settings import SmtpSettings as SmtpSettings
    from ._state import DefaultStateMachine as DefaultStateMachine
    from ._storage import MemoryStorage as MemoryStorage
    from ._storage import open_store as open_store
    from ._storage.composed import ComposedStorage as ComposedStorage
    from ._storage.postgres import PostgresStorage as PostgresStorage
    from ._storage.sqlite import SqliteStorage as SqliteStorage
    from ._sync import run as run
