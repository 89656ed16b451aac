"""mypy --strict checks that each default implementation fits its Protocol."""

from __future__ import annotations

import dagflow
from dagflow._execute.cluster import DeployHandler, KubectlClient, ScaleHandler
from dagflow._execute.command import CommandHandler
from dagflow._execute.http import HttpHandler
from dagflow._execute.query import QueryHandler
from dagflow.testing import FakeClock, RecordingHandler

parser: dagflow.WorkflowParser = dagflow.DefaultWorkflowParser()
builder: dagflow.DagBuilder = dagflow.DefaultDagBuilder()
machine: dagflow.StateMachine = dagflow.DefaultStateMachine()
engine: dagflow.WorkflowEngine = dagflow.Engine()
storage: dagflow.WorkflowStorage = dagflow.MemoryStorage()
executor: dagflow.TaskExecutor = dagflow.DefaultTaskExecutor()
approvals: dagflow.ApprovalSystem = dagflow.MemoryApprovalSystem()
clock: dagflow.Clock = dagflow.SystemClock()
fake_clock: dagflow.Clock = FakeClock()
secrets: dagflow.SecretProvider = dagflow.EnvSecretProvider()
cluster: dagflow.ClusterClient = KubectlClient()
handlers: list[dagflow.TaskHandler] = [
    CommandHandler(), HttpHandler(), QueryHandler(), DeployHandler(), ScaleHandler(),
    RecordingHandler(),
]


async def storage_kit() -> None:
    """check_storage infers the store type: reopen gets a SqliteStorage, not the Protocol."""
    from dagflow._storage.sqlite import SqliteStorage
    from dagflow.testing import check_storage

    await check_storage(dagflow.MemoryStorage, durable=False)
    await check_storage(lambda: SqliteStorage("a.db"), reopen=lambda old: SqliteStorage(old.path))


def engine_arguments_are_checked() -> None:
    """Engine(...) takes the Protocols: a wrong component is a type error where it is
    passed (each ignore below must be needed, or mypy --strict fails on it)."""
    dagflow.Engine(store=dagflow.MemoryStorage(), clock=FakeClock(),
                   secrets=dagflow.EnvSecretProvider(), approvals=dagflow.MemoryApprovalSystem())
    dagflow.Engine(secrets=42)  # type: ignore[arg-type]
    dagflow.Engine(clock="now")  # type: ignore[arg-type]
    dagflow.Engine(store=3.14)  # type: ignore[arg-type]
