"""Every seam a host can swap is used for what it does: a host's parser, DAG builder,
executor, state machine, checkpoint manager, approval system and instance store, each
written here the way a host application would write it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest

import dagflow
from dagflow import (
    Checkpoint,
    InvalidStateTransition,
    StateTransition,
    TaskContext,
    TaskDefinition,
    TaskExecutionFailed,
    TaskOutput,
    TaskStatus,
    WorkflowDag,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowState,
)
from dagflow.testing import approve_when_pending

pytestmark = pytest.mark.anyio

S = WorkflowState


def command(text: str) -> dict[str, Any]:
    return {"type": "Command", "command": "sh", "args": ["-c", text]}


class CommandOnlyExecutor:
    """A host's executor written from scratch: it runs Command tasks through anyio and
    refuses every other type."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def execute_task(self, task: TaskDefinition, context: TaskContext) -> TaskOutput:
        spec = context.spec
        if not isinstance(spec, dagflow.Command):
            raise TaskExecutionFailed(reason=f"only Command tasks here, not "
                                             f"{type(spec).__name__}", retryable=False)
        key = context.task_id + (f"[{context.loop_index}]"
                                 if context.loop_index is not None else "")
        self.ran.append(key)
        result = await anyio.run_process([spec.command, *spec.args], cwd=context.workdir,
                                         check=False)
        out = result.stdout.decode()
        if result.returncode:
            raise TaskExecutionFailed(reason=f"exit code {result.returncode}",
                                      output=TaskOutput(stdout=out,
                                                        exit_code=result.returncode))
        return TaskOutput(stdout=out, exit_code=0)


async def test_a_command_only_executor_runs_loops_branches_gates_and_subworkflows(
        tmp_path: Path) -> None:
    """An executor that knows only Command runs a workflow with a Loop, a Conditional, an
    Approval and a Subworkflow: flow control is the engine's, leaf tasks the executor's."""
    (tmp_path / "child.yaml").write_text(textwrap.dedent("""
        id: child
        tasks:
          - id: inner
            type: {type: Command, command: sh, args: ["-c", "echo child"]}
    """))
    wf = dagflow.loads(json.dumps({"id": "parent", "tasks": [
        {"id": "each", "type": {"type": "Loop", "items": ["a", "b"], "task_template": {
            "id": "t", "type": command("echo ${item}")}}},
        {"id": "pick", "depends_on": ["each"], "type": {
            "type": "Conditional", "condition": "${tasks.each.status} == 'Completed'",
            "true_branch": ["yes"], "false_branch": ["no"]}},
        {"id": "yes", "type": command("echo yes")},
        {"id": "no", "type": command("echo no")},
        {"id": "gate", "depends_on": ["yes"], "type": {
            "type": "Approval", "approvers": ["lead@example.com"]}},
        {"id": "sub", "depends_on": ["gate"], "type": {
            "type": "Subworkflow", "workflow_id": "child"}},
    ]}), format="json")
    executor = CommandOnlyExecutor()
    settings = dagflow.EngineSettings(workflow_dirs=[tmp_path])
    async with (dagflow.Engine(executor=executor, settings=settings) as engine,
                anyio.create_task_group() as tg):
        tg.start_soon(approve_when_pending, engine, "lead@example.com")
        instance = await engine.run(wf, workdir=tmp_path)
    assert instance.state == S.COMPLETED, instance.error
    assert sorted(executor.ran) == ["each[0]", "each[1]", "inner", "yes"]
    states = {k: s.state for k, s in instance.task_states.items()}
    assert states["no"] == TaskStatus.SKIPPED
    assert instance.task_states["gate"].output.data["approvers"] == ["lead@example.com"]
    assert instance.task_states["sub"].output.data["tasks"]["inner"]["stdout"] == "child\n"


class Serializing(dagflow.DefaultDagBuilder):
    """A host's DAG builder: ``b`` waits for ``a`` although the file says nothing."""

    def __init__(self) -> None:
        self.built: list[str] = []

    def build_dag(self, workflow: WorkflowDefinition) -> WorkflowDag:
        self.built.append(workflow.id)
        tasks = tuple(attrs.evolve(t, depends_on=("a",)) if t.id == "b" else t
                      for t in workflow.tasks)
        return super().build_dag(attrs.evolve(workflow, tasks=tasks))


async def test_the_host_dag_builder_builds_the_run_s_graph() -> None:
    """The run is scheduled by the host builder's graph: b starts only after a ended."""
    order: list[str] = []

    async def note(config: Any, ctx: Any) -> None:
        order.append(f"start {ctx.task_id}")
        await anyio.lowlevel.checkpoint()
        order.append(f"end {ctx.task_id}")

    wf = dagflow.loads("id: two\ntasks:\n"
                       "  - {id: a, type: {type: Plugin, plugin_name: note}}\n"
                       "  - {id: b, type: {type: Plugin, plugin_name: note}}\n")
    builder = Serializing()
    async with dagflow.Engine(dag_builder=builder, plugins={"note": note}) as engine:
        instance = await engine.run(wf)
    assert instance.state == S.COMPLETED
    assert builder.built == ["two"]
    assert order == ["start a", "end a", "start b", "end b"]


class Watching(dagflow.DefaultStateMachine):
    """A host's state machine: it is told of every change, and refuses to pause."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[WorkflowState, WorkflowState]] = []

    def transition(self, instance_id: str, from_state: WorkflowState,
                   to_state: WorkflowState, reason: str | None = None) -> StateTransition:
        if to_state == S.PAUSED:
            raise InvalidStateTransition(from_state=str(from_state), to_state=str(to_state),
                                         instance_id=instance_id)
        self.seen.append((from_state, to_state))
        return super().transition(instance_id, from_state, to_state, reason)


async def test_the_host_state_machine_hears_every_transition_and_may_refuse_one() -> None:
    """Every workflow state change goes through the host's machine (the history is what
    it returned), and a change it refuses does not happen: the refused pause raises
    InvalidStateTransition and the run goes on to Completed."""
    release = anyio.Event()
    started = anyio.Event()

    async def hold(config: Any, ctx: Any) -> None:
        started.set()
        await release.wait()

    wf = dagflow.loads("id: held\ntasks:\n  - {id: a, type: {type: Plugin, plugin_name: hold}}\n")
    machine = Watching()
    async with dagflow.Engine(state_machine=machine, plugins={"hold": hold}) as engine:
        instance = await engine.create_workflow(wf)
        await engine.start_workflow(instance.id)
        await started.wait()
        with pytest.raises(InvalidStateTransition):
            await engine.pause_workflow(instance.id)
        release.set()
        final = await engine.wait(instance.id)
    assert final.state == S.COMPLETED
    changes = [(t.from_state, t.to_state) for t in final.state_history]
    assert changes == [(S.DRAFT, S.VALIDATED), (S.VALIDATED, S.PENDING),
                       (S.PENDING, S.RUNNING), (S.RUNNING, S.COMPLETED)]
    assert machine.seen == changes


class Tagging(dagflow.DefaultCheckpointManager):
    """A host's checkpoint manager: it counts the checkpoints it makes."""

    made: int = 0

    async def create_checkpoint(self, instance: WorkflowInstance) -> Checkpoint:
        type(self).made += 1
        return await super().create_checkpoint(instance)


async def test_the_host_checkpoint_manager_makes_on_demand_checkpoints() -> None:
    """engine.checkpoint(id) is the host manager's checkpoint, for a stored instance and
    for one running now; restore() rewinds through the same manager."""
    release = anyio.Event()
    started = anyio.Event()

    async def hold(config: Any, ctx: Any) -> None:
        started.set()
        await release.wait()

    wf = dagflow.loads("id: held\ntasks:\n  - {id: a, type: {type: Plugin, plugin_name: hold}}\n"
                       "  - {id: b, depends_on: [a], type: {type: Plugin, plugin_name: hold}}\n")
    store = dagflow.MemoryStorage()
    manager = Tagging(store)
    Tagging.made = 0
    async with dagflow.Engine(store=store, checkpoints=manager,
                              plugins={"hold": hold}) as engine:
        stored = await engine.create_workflow(wf)
        first = await engine.checkpoint(stored.id)
        assert Tagging.made == 1
        assert [c.id for c in await manager.list_checkpoints(stored.id)] == [first.id]
        await engine.start_workflow(stored.id)
        await started.wait()
        live = await engine.checkpoint(stored.id)
        assert Tagging.made == 2
        assert live.instance_id == stored.id and live.workflow_state == S.RUNNING
        release.set()
        assert (await engine.wait(stored.id)).state == S.COMPLETED


class Announcing(dagflow.DefaultApprovalSystem):
    """A host's approval system: it hears of each gate as it opens."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.requests: list[tuple[str, tuple[str, ...], str]] = []

    async def request_approval(self, workflow_id: str, task_id: str, approvers: Any,
                               timeout_seconds: int, **options: Any) -> str:
        self.requests.append((task_id, tuple(approvers), options["instance_id"]))
        return await super().request_approval(workflow_id, task_id, approvers,
                                              timeout_seconds, **options)


async def test_the_host_approval_system_receives_the_gate() -> None:
    """An Approval task opens its gate through the host's ApprovalSystem, which the engine
    exposes as engine.approvals for deciding it."""
    wf = dagflow.loads("id: gated\ntasks:\n  - id: ok\n    type: {type: Approval, "
                       "approvers: [lead@example.com]}\n")
    store = dagflow.MemoryStorage()
    approvals = Announcing(store)
    async with dagflow.Engine(store=store, approvals=approvals) as engine:
        assert engine.approvals is approvals
        async with anyio.create_task_group() as tg:
            tg.start_soon(approve_when_pending, engine, "lead@example.com")
            instance = await engine.run(wf)
    assert instance.state == S.COMPLETED
    assert approvals.requests == [("ok", ("lead@example.com",), instance.id)]


class CountingParser(dagflow.DefaultWorkflowParser):
    """A host's parser: it counts what it parses and validates."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str | None]] = []

    def parse_yaml(self, text: str | bytes, *, filename: str | None = None
                   ) -> WorkflowDefinition:
        self.calls.append(("parse_yaml", filename))
        return super().parse_yaml(text, filename=filename)

    def validate(self, workflow: WorkflowDefinition) -> None:
        self.calls.append(("validate", workflow.id))
        super().validate(workflow)


async def test_the_host_parser_reads_files_and_validates_what_runs(tmp_path: Path) -> None:
    """engine.load reads through the host's parser (keeping the file's path), and every
    run's definition is validated by it."""
    path = tmp_path / "hi.yaml"
    path.write_text("id: hi\ntasks:\n  - {id: a, type: {type: Command, command: 'true'}}\n")
    parser = CountingParser()
    async with dagflow.Engine(parser=parser) as engine:
        wf = engine.load(path)
        assert wf.source_path == str(path)
        instance = await engine.run(wf)
    assert instance.state == S.COMPLETED
    assert parser.calls == [("parse_yaml", str(path)), ("validate", "hi")]


class HostTable:
    """A host's own instance table (here over a private MemoryStorage), implementing only
    dagflow.InstanceStore: leases, gates, checkpoints and controls come from elsewhere."""

    def __init__(self) -> None:
        self._rows = dagflow.MemoryStorage()
        self.commits = 0

    async def store_workflow(self, instance: WorkflowInstance) -> None:
        await self._rows.store_workflow(instance)

    async def load_workflow(self, instance_id: str) -> WorkflowInstance | None:
        return await self._rows.load_workflow(instance_id)

    async def update_workflow(self, instance: WorkflowInstance) -> None:
        await self._rows.update_workflow(instance)

    async def list_workflows(self, filters: Any) -> list[WorkflowInstance]:
        return await self._rows.list_workflows(filters)

    async def delete_workflow(self, instance_id: str) -> None:
        await self._rows.delete_workflow(instance_id)

    async def instance_ids(self, filters: Any) -> list[tuple[str, str | None]]:
        return await self._rows.instance_ids(filters)

    async def commit(self, instance_id: str, changes: Any) -> None:
        self.commits += 1
        await self._rows.commit(instance_id, changes)

    async def commit_many(self, batch: Any) -> None:
        self.commits += 1
        await self._rows.commit_many(batch)  # all or nothing, like a transaction

    async def load_events(self, instance_id: str, after: int = 0,
                          limit: int | None = None) -> list[Any]:
        return await self._rows.load_events(instance_id, after, limit)

    async def last_event_seq(self, instance_id: str) -> int:
        return await self._rows.last_event_seq(instance_id)


async def test_a_host_instance_store_with_the_default_parts_for_the_rest(
        tmp_path: Path) -> None:
    """ComposedStorage(instances=host table, approvals=SQLite): instances and events live
    in the host's table, gates in the SQLite store, the rest in memory."""
    table = HostTable()
    rest = dagflow._storage.open_storage(f"sqlite:///{tmp_path / 'rest.db'}")
    store = dagflow.ComposedStorage(instances=table, approvals=rest)
    wf = dagflow.loads("id: gated\ntasks:\n  - id: ok\n    type: {type: Approval, "
                       "approvers: [lead@example.com]}\n")
    async with dagflow.Engine(store=store) as engine:
        async with anyio.create_task_group() as tg:
            tg.start_soon(approve_when_pending, engine, "lead@example.com")
            instance = await engine.run(wf)
        events = [type(e).__name__ async for e in engine.stream_events(instance.id)]
        gates = await rest.list_approvals(state=None, instance_id=instance.id)
    assert instance.state == S.COMPLETED
    assert table.commits > 0 and "ApprovalGranted" in events
    assert await table.load_workflow(instance.id) == instance
    assert [g.task_id for g in gates] == ["ok"]  # the engine closed both parts since
