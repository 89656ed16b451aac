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
