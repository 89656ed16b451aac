"""Pause, resume, interrupt, and the synchronous ``dagflow.run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import dagflow
from dagflow import TaskStatus, WorkflowState
from dagflow.testing import RecordingHandler


async def _wait_started(engine: dagflow.Engine, instance_id: str, task_id: str) -> None:
    async for event in engine.stream_events(instance_id):
        if type(event).__name__ == "TaskStarted" and event.task_id == task_id:
            return


@pytest.mark.anyio
async def test_pause_lets_running_tasks_finish_and_starts_nothing(make_workflow: Any) -> None:
    """While paused, the running task completes, the next does not start; resume runs it."""
    release = anyio.Event()

    async def handler(config: Any, ctx: Any) -> None:
        if ctx.task_id == "a":
            await release.wait()

    wf = make_workflow({"id": "a"}, {"id": "b", "depends_on": ["a"]})
    async with dagflow.Engine(plugins={"rec": handler}) as engine:
        inst = await engine.create_workflow(wf)
        await engine.start_workflow(inst.id)
        await _wait_started(engine, inst.id, "a")
        await engine.pause_workflow(inst.id)
        release.set()
        await anyio.sleep(0.2)
        paused = await engine.get_status(inst.id)
        assert paused.state == WorkflowState.PAUSED
        assert paused.task_states["a"].state == TaskStatus.COMPLETED
        assert "b" not in paused.task_states
        await engine.resume_workflow(inst.id)
        final = await engine.wait(inst.id)
    assert final.state == WorkflowState.COMPLETED
    history = [(t.from_state, t.to_state) for t in final.state_history]
    assert (WorkflowState.RUNNING, WorkflowState.PAUSED) in history
    assert (WorkflowState.PAUSED, WorkflowState.RUNNING) in history


@pytest.mark.anyio
async def test_interrupt_leaves_a_resumable_instance(make_workflow: Any) -> None:
    """Interrupting stops the running command and pauses the instance; resuming runs the
    interrupted task again (attempt 2) and completes, without re-running finished ones."""
    rec = RecordingHandler()
    wf = make_workflow(
        {"id": "first"},
        {"id": "slow", "depends_on": ["first"],
         "type": {"type": "Command", "command": "sleep", "args": ["${seconds}"]}},
        variables={"seconds": 30})
    async with dagflow.Engine(plugins={"rec": rec}) as engine:
        inst = await engine.create_workflow(wf)
        await engine.start_workflow(inst.id)
        await _wait_started(engine, inst.id, "slow")
        await engine.interrupt_workflow(inst.id)
        paused = await engine.wait(inst.id)
        assert paused.state == WorkflowState.PAUSED
        assert paused.task_states["slow"].state == TaskStatus.PENDING
        assert paused.task_states["slow"].attempts == 1
        engine.executor.handlers["Command"] = rec  # the resumed attempt: a quick stub
        await engine.resume_workflow(inst.id)
        final = await engine.wait(inst.id)
    assert final.state == WorkflowState.COMPLETED
    assert final.task_states["slow"].attempts == 2
    assert rec.task_ids() == ["first", "slow"]  # "first" ran once


@pytest.mark.anyio
async def test_start_workflow_needs_an_entered_engine(make_workflow: Any) -> None:
    """start_workflow outside 'async with Engine' says how to use it."""
    engine = dagflow.Engine(plugins={"rec": RecordingHandler()})
    inst = await engine.create_workflow(make_workflow({"id": "a"}))
    with pytest.raises(RuntimeError, match="async with Engine"):
        await engine.start_workflow(inst.id)
    finished = await engine.run(make_workflow({"id": "a"}))  # run() works without it
    assert finished.state == WorkflowState.COMPLETED


def test_sync_run_helper(tmp_path: Path) -> None:
    """dagflow.run() runs a workflow to its end from synchronous code."""
    path = tmp_path / "wf.yaml"
    path.write_text("id: w\ntasks:\n  - {id: hi, type: {type: Command, command: pwd}}\n")
    inst = dagflow.run(dagflow.load(path))
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["hi"].output.stdout.strip() == str(tmp_path)


@pytest.mark.anyio
async def test_sync_run_inside_an_event_loop_is_refused(make_workflow: Any) -> None:
    """Calling dagflow.run() from async code raises and says what to do instead."""
    with pytest.raises(RuntimeError, match=r"await engine\.run"):
        dagflow.run(make_workflow({"id": "a"}))


@pytest.mark.anyio
async def test_history_starts_with_the_seed_states(make_workflow: Any, tmp_path: Path) -> None:
    """create_workflow passes through Draft and Validated to Pending, recorded with who
    submitted it and kept by the store; a run then continues the same history."""
    wf = make_workflow({"id": "a"})
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    async with dagflow.Engine(store=store, plugins={"rec": RecordingHandler()}) as engine:
        inst = await engine.create_workflow(wf, "ann")
    async with dagflow.Engine(store=store, plugins={"rec": RecordingHandler()}) as engine:
        stored = await engine.get_status(inst.id)
        await engine.start_workflow(inst.id)
        final = await engine.wait(inst.id)
    S = WorkflowState
    assert [(t.from_state, t.to_state, t.reason) for t in stored.state_history] == [
        (S.DRAFT, S.VALIDATED, "validated"), (S.VALIDATED, S.PENDING, "submitted by ann")]
    assert [t.to_state for t in final.state_history] == [
        S.VALIDATED, S.PENDING, S.RUNNING, S.COMPLETED]


@pytest.mark.anyio
async def test_errors_in_the_engine_block_come_out_as_themselves(make_workflow: Any) -> None:
    """What the body of 'async with Engine()' raises leaves it unwrapped (not in an
    ExceptionGroup), so ordinary except clauses and pytest.raises work; dagflow.run too."""
    bad = make_workflow({"id": "a", "type": {"type": "Command", "command": "echo",
                                             "args": ["${nope}"]}})
    with pytest.raises(dagflow.ValidationError, match="nope"):
        async with dagflow.Engine() as engine:
            await engine.create_workflow(bad)
    with pytest.raises(KeyError):
        async with dagflow.Engine():
            raise KeyError("mine")


def test_sync_run_raises_the_error_itself(make_workflow: Any) -> None:
    bad = make_workflow({"id": "a", "type": {"type": "Command", "command": "echo",
                                             "args": ["${nope}"]}})
    with pytest.raises(dagflow.ValidationError, match="nope"):
        dagflow.run(bad)


@pytest.mark.anyio
async def test_a_falsy_component_is_used_not_replaced(make_workflow: Any) -> None:
    """Engine(secrets=...) keeps the host's provider even when it is falsy (here an empty
    cache with __len__ 0), instead of falling back to the environment."""

    class CachingVault:
        def __init__(self) -> None:
            self.cache: dict[str, str] = {}

        def __len__(self) -> int:
            return len(self.cache)

        async def get_secret(self, name: str) -> str | None:
            self.cache[name] = "from-the-vault"
            return self.cache[name]

    vault = CachingVault()
    wf = make_workflow({"id": "a", "type": {"type": "Command", "command": "echo",
                                            "args": ["${secrets.API_TOKEN}"]}})
    async with dagflow.Engine(secrets=vault, environ={"API_TOKEN": "from-env"}) as engine:
        assert engine.secrets is vault
        inst = await engine.run(wf)
    assert inst.state == WorkflowState.COMPLETED
    assert vault.cache == {"API_TOKEN": "from-the-vault"}


@pytest.mark.anyio
async def test_a_store_failure_stops_only_its_own_background_run(
        caplog: pytest.LogCaptureFixture) -> None:
    """When the store refuses one instance's writes, that run stops (logged, left as last
    recorded) while the engine and the other background runs carry on."""

    class Flaky(dagflow.MemoryStorage):
        fail_for = ""

        async def commit(self, instance_id: str, changes: Any) -> None:
            if instance_id == self.fail_for and changes.task_states:
                raise dagflow.StorageError("disk full")
            await super().commit(instance_id, changes)

    slow = dagflow.loads("id: slow\ntasks: [{id: a, type: {type: Command, command: sleep, "
                         "args: ['0.5']}}]")
    fast = dagflow.loads("id: fast\ntasks: [{id: a, type: {type: Command, command: 'true'}}]")
    store = Flaky()
    async with dagflow.Engine(store=store) as engine:
        other = await engine.create_workflow(slow)
        await engine.start_workflow(other.id)
        bad = await engine.create_workflow(fast)
        store.fail_for = bad.id
        await engine.start_workflow(bad.id)
        assert (await engine.wait(other.id)).state == WorkflowState.COMPLETED
        assert (await engine.get_status(bad.id)).state != WorkflowState.COMPLETED
    assert any(bad.id in r.getMessage() and "disk full" in r.getMessage()
               for r in caplog.records if r.levelname == "ERROR")
