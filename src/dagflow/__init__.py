"""dagflow: an embeddable workflow engine.

Load a workflow with :func:`load` / :func:`loads`; every problem in a file is reported
at once, each with its ``file:line:col``.

Names are imported on first use (PEP 562), so ``import dagflow`` stays fast and loads no
optional driver; type checkers see the plain imports below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._approval import MemoryApprovalSystem as MemoryApprovalSystem
    from ._approval.notify import EmailNotifier as EmailNotifier
    from ._approval.notify import Notification as Notification
    from ._approval.notify import NotificationError as NotificationError
    from ._approval.notify import Notifier as Notifier
    from ._approval.notify import SmtpSettings as SmtpSettings
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
    from ._state import DefaultStateMachine as DefaultStateMachine
    from ._storage import MemoryStorage as MemoryStorage
    from ._storage.composed import ComposedStorage as ComposedStorage
    from ._sync import run as run

__all__ = [
    "Approval",
    "ApprovalError",
    "ApprovalExpired",
    "ApprovalGranted",
    "ApprovalRejected",
    "ApprovalRequest",
    "ApprovalRequired",
    "ApprovalStatus",
    "ApprovalStore",
    "ApprovalSystem",
    "ApprovalTimeout",
    "ApprovalVote",
    "Checkpoint",
    "CheckpointCreated",
    "CheckpointError",
    "CheckpointManager",
    "CheckpointStore",
    "Clock",
    "ClusterClient",
    "Command",
    "ComposedStorage",
    "Conditional",
    "ControlStore",
    "CycleDetected",
    "DagBuilder",
    "DagEdge",
    "DagNode",
    "DefaultApprovalSystem",
    "DefaultCheckpointManager",
    "DefaultDagBuilder",
    "DefaultStateMachine",
    "DefaultTaskExecutor",
    "DefaultWorkflowParser",
    "DependencyNotSatisfied",
    "Deploy",
    "EgressPolicy",
    "EmailNotifier",
    "Engine",
    "EngineSettings",
    "EnvSecretProvider",
    "EventStream",
    "ExecutionContext",
    "FailureAction",
    "Http",
    "InstanceChanges",
    "InstanceStore",
    "InvalidStateTransition",
    "JoinRule",
    "LeaseStore",
    "Loop",
    "MemoryApprovalSystem",
    "MemoryStorage",
    "Notification",
    "NotificationConfig",
    "NotificationError",
    "NotificationFailed",
    "NotificationSent",
    "Notifier",
    "ParseError",
    "ParseLimits",
    "Plugin",
    "PluginFunction",
    "Problem",
    "Query",
    "Resources",
    "RetryPolicy",
    "RollbackCompleted",
    "RollbackFailed",
    "RollbackStarted",
    "RollbackTaskCompleted",
    "RollbackTaskFailed",
    "Scale",
    "SecretProvider",
    "SmtpSettings",
    "StateMachine",
    "StateTransition",
    "StorageError",
    "Subworkflow",
    "SystemClock",
    "TaskCancelled",
    "TaskCompleted",
    "TaskConfig",
    "TaskContext",
    "TaskDefinition",
    "TaskExecutionFailed",
    "TaskExecutor",
    "TaskFailed",
    "TaskHandler",
    "TaskOutput",
    "TaskOutputLine",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TaskState",
    "TaskStatus",
    "TaskType",
    "TimeoutAction",
    "ValidationError",
    "WebhookNotifier",
    "WorkflowCancelled",
    "WorkflowCompleted",
    "WorkflowConfig",
    "WorkflowDag",
    "WorkflowDefinition",
    "WorkflowEngine",
    "WorkflowError",
    "WorkflowEvent",
    "WorkflowFailed",
    "WorkflowFilters",
    "WorkflowInstance",
    "WorkflowNotFound",
    "WorkflowParser",
    "WorkflowPaused",
    "WorkflowResumed",
    "WorkflowStarted",
    "WorkflowState",
    "WorkflowStorage",
    "WorkflowWaitingApproval",
    "dump",
    "json_schema",
    "load",
    "loads",
    "run",
]

_LAZY: dict[str, str] = {
    "DefaultApprovalSystem": "._approval.store",
    "DefaultCheckpointManager": "._checkpoint",
    "ComposedStorage": "._storage.composed",
    "InstanceStore": "._protocols",
    "CheckpointStore": "._protocols",
    "LeaseStore": "._protocols",
    "ApprovalStore": "._protocols",
    "ControlStore": "._protocols",
    "DagEdge": "._dag",
    "DagNode": "._dag",
    "DefaultDagBuilder": "._dag",
    "WorkflowDag": "._dag",
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
    "ApprovalSystem": "._protocols",
    "CheckpointManager": "._protocols",
    "Clock": "._protocols",
    "DagBuilder": "._protocols",
    "SecretProvider": "._protocols",
    "StateMachine": "._protocols",
    "TaskExecutor": "._protocols",
    "WorkflowEngine": "._protocols",
    "WorkflowParser": "._protocols",
    "WorkflowStorage": "._protocols",
    "json_schema": "._schema",
    "DefaultStateMachine": "._state",
    "Engine": "._engine",
    "EnvSecretProvider": "._engine",
    "run": "._sync",
    "DefaultTaskExecutor": "._execute",
    "MemoryStorage": "._storage",
    "MemoryApprovalSystem": "._approval",
    "PluginFunction": "._execute.plugin",
    "EventStream": "._runtime._stream",
    "EmailNotifier": "._approval.notify",
    "Notification": "._approval.notify",
    "NotificationError": "._approval.notify",
    "Notifier": "._approval.notify",
    "SmtpSettings": "._approval.notify",
    "WebhookNotifier": "._approval.notify",
    "InstanceChanges": "._models",
    "WorkflowEvent": "._events",
    "WorkflowStarted": "._events",
    "WorkflowCompleted": "._events",
    "WorkflowFailed": "._events",
    "WorkflowCancelled": "._events",
    "WorkflowPaused": "._events",
    "WorkflowResumed": "._events",
    "WorkflowWaitingApproval": "._events",
    "TaskStarted": "._events",
    "TaskCompleted": "._events",
    "TaskFailed": "._events",
    "TaskRetrying": "._events",
    "TaskSkipped": "._events",
    "TaskCancelled": "._events",
    "TaskOutputLine": "._events",
    "ApprovalRequired": "._events",
    "ApprovalGranted": "._events",
    "ApprovalRejected": "._events",
    "ApprovalExpired": "._events",
    "CheckpointCreated": "._events",
    "RollbackStarted": "._events",
    "RollbackTaskCompleted": "._events",
    "RollbackTaskFailed": "._events",
    "RollbackCompleted": "._events",
    "RollbackFailed": "._events",
    "NotificationSent": "._events",
    "NotificationFailed": "._events",
    "TaskContext": "._context",
    "Resources": "._context",
    "TaskHandler": "._protocols",
    "ClusterClient": "._protocols",
    "EngineSettings": "._settings",
    "EgressPolicy": "._settings",
    "SystemClock": "._clock",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name == "__version__":  # read lazily: importlib.metadata is slow to import
        from importlib.metadata import version

        return version("dagflow")
    raise AttributeError(f"module 'dagflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
