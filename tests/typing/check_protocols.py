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


async def conformance_kits() -> None:
    """Each kit takes its seam's defaults as they are built (a wrong one is a type error)."""
    from dagflow._storage.sqlite import SqliteStorage
    from dagflow.testing import (
        check_approval_store,
        check_approval_system,
        check_checkpoint_manager,
        check_checkpoint_store,
        check_control_store,
        check_dag_builder,
        check_executor,
        check_instance_store,
        check_lease_store,
        check_state_machine,
    )

    store = dagflow.MemoryStorage()
    await check_instance_store(dagflow.MemoryStorage, durable=False)
    await check_instance_store(lambda: SqliteStorage("a.db"),
                               reopen=lambda old: SqliteStorage(old.path))
    await check_checkpoint_store(dagflow.MemoryStorage)
    await check_lease_store(dagflow.MemoryStorage)
    await check_approval_store(lambda: SqliteStorage("a.db"))
    await check_control_store(dagflow.MemoryStorage)
    task = dagflow.TaskDefinition("t", dagflow.Command("true"))
    await check_executor(dagflow.DefaultTaskExecutor(), succeeds=task, fails=task, slow=task,
                         context=lambda ctx: ctx)
    check_dag_builder(dagflow.DefaultDagBuilder())
    check_state_machine(dagflow.DefaultStateMachine())
    await check_approval_system(lambda clock: dagflow.DefaultApprovalSystem(store, clock=clock))
    await check_approval_system(lambda clock: dagflow.MemoryApprovalSystem(clock=clock))
    await check_checkpoint_manager(dagflow.DefaultCheckpointManager)
    check_state_machine(dagflow.DefaultDagBuilder())  # type: ignore[arg-type]
    await check_executor(dagflow.DefaultTaskExecutor(), succeeds=task)  # type: ignore[call-arg]
