"""G4: completion is durable before anything depends on it; a store that refuses writes
stops the run without recording anything it could not write."""

from __future__ import annotations

from typing import Any

import pytest

import dagflow
from dagflow import InstanceChanges, TaskStatus, WorkflowState
from dagflow.testing import RecordingHandler

pytestmark = pytest.mark.anyio


class FlakyStore(dagflow.MemoryStorage):
    """A memory store whose commits fail while ``failing(changes)`` says so."""

    def __init__(self, failing: Any) -> None:
        super().__init__()
        self.failing = failing
        self.refused = 0

    async def commit(self, instance_id: str, changes: InstanceChanges) -> None:
        if self.failing(changes):
            self.refused += 1
            raise OSError("disk I/O error")  # what a driver raises, not a dagflow error
        await super().commit(instance_id, changes)


def completes(task_id: str) -> Any:
    def check(changes: InstanceChanges) -> bool:
        return any(s.task_id == task_id and s.state == TaskStatus.COMPLETED
                   for s in changes.task_states)
    return check


async def test_dependent_never_starts_when_completion_cannot_be_written(
        make_workflow: Any) -> None:
    """If a's completion cannot be committed, b never starts, the run raises StorageError,
    and the store still shows a as Running (so a recovery runs it again)."""
    rec = RecordingHandler()
    store = FlakyStore(completes("a"))
    wf = make_workflow({"id": "a"}, {"id": "b", "depends_on": ["a"]})
    async with dagflow.Engine(store=store, plugins={"rec": rec}) as engine:
        with pytest.raises(dagflow.StorageError, match="disk I/O error"):
            await engine.run(wf, instance_id="inst")
    assert rec.task_ids() == ["a"]
    assert store.refused == 4  # the first try and three retries
    stored = await store.load_workflow("inst")
    assert stored is not None
    assert stored.state == WorkflowState.RUNNING
    assert stored.task_states["a"].state == TaskStatus.RUNNING
    assert "b" not in stored.task_states

    # the disk is fine again: recovery re-runs a (at least once) and then b
    store.failing = lambda changes: False
    async with dagflow.Engine(store=store, plugins={"rec": rec}) as engine:
        assert await engine.recover() == ["inst"]
        final = await engine.wait("inst")
    assert final.state == WorkflowState.COMPLETED
    assert rec.task_ids() == ["a", "a", "b"]
    assert final.task_states["a"].attempts == 2


async def test_transient_write_errors_are_retried(make_workflow: Any) -> None:
    """Two failed commits in a row are retried and the run completes normally."""
    failures = iter([True, True])
    store = FlakyStore(lambda changes: next(failures, False))
    async with dagflow.Engine(store=store, plugins={"rec": RecordingHandler()}) as engine:
        inst = await engine.run(make_workflow({"id": "a"}, {"id": "b", "depends_on": ["a"]}))
    assert inst.state == WorkflowState.COMPLETED
    assert store.refused == 2


async def test_a_run_that_lost_its_lease_stops_alone(make_workflow: Any, tmp_path: Any) -> None:
    """Runs of one engine share their commits; when another process takes one run's
    lease, that run stops (its writes are refused), and the other run completes."""
    import anyio

    release = anyio.Event()
    both = anyio.Event()
    started: set[str] = set()

    async def hold(config: Any, ctx: Any) -> None:
        started.add(ctx.instance_id)
        if len(started) == 2:
            both.set()
        await release.wait()

    wf = make_workflow({"id": "a", "type": {"type": "Plugin", "plugin_name": "hold"}},
                       {"id": "b", "depends_on": ["a"],
                        "type": {"type": "Plugin", "plugin_name": "hold"}})
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    other = dagflow.open_store(url)  # another process's view of the same database
    async with dagflow.Engine(store=url, plugins={"hold": hold}) as engine:
        kept = await engine.create_workflow(wf)
        lost = await engine.create_workflow(wf)
        await engine.start_workflow(kept.id)
        await engine.start_workflow(lost.id)
        await both.wait()
        await other.release_lease(lost.id, engine.owner)
        assert await other.acquire_lease(lost.id, "another-host:1:x", 30.0)
        release.set()
        done = await engine.wait(kept.id)
        # the lost run's first write after the release (in the same round as the kept
        # run's, which went on for another step) was refused: it has stopped by now
        stopped = await engine.get_status(lost.id)
    await other.close()
    assert done.state == WorkflowState.COMPLETED
    assert stopped.state == WorkflowState.RUNNING  # as last recorded, for its new owner
    assert stopped.task_states["a"].state == TaskStatus.RUNNING
