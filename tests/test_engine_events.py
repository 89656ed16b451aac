"""Events: per-instance seq without gaps, replay after N, live following, JSON."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

import dagflow
from dagflow import WorkflowState
from dagflow._events import event_from_dict, event_to_dict
from dagflow._serde import make_converter
from dagflow.testing import RecordingHandler

pytestmark = pytest.mark.anyio


async def test_seq_counts_from_one_without_gaps(make_workflow: Any) -> None:
    """Every event of an instance has seq 1, 2, 3, ... in order."""
    wf = make_workflow(*({"id": f"t{i}"} for i in range(30)), max_parallel_tasks=4)
    async with dagflow.Engine(plugins={"rec": RecordingHandler()}) as engine:
        inst = await engine.run(wf)
        events = [e async for e in engine.stream_events(inst.id)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert type(events[0]).__name__ == "WorkflowStarted"
    assert type(events[-1]).__name__ == "WorkflowCompleted"
    assert all(e.instance_id == inst.id for e in events)


async def test_reconnect_after_n_misses_nothing_and_repeats_nothing(make_workflow: Any) -> None:
    """A follower that stops after N events and reconnects with after=N sees the rest of
    a live run exactly once."""
    gate = anyio.Event()

    async def slow(config: Any, ctx: Any) -> None:
        if ctx.task_id == "t5":
            await gate.wait()

    wf = make_workflow(*({"id": f"t{i}", **({"depends_on": [f"t{i - 1}"]} if i else {})}
                         for i in range(10)))
    first: list[Any] = []
    async with dagflow.Engine(plugins={"rec": slow}) as engine:
        inst = await engine.create_workflow(wf)
        await engine.start_workflow(inst.id)
        async for event in engine.stream_events(inst.id):
            first.append(event)
            if len(first) == 7:
                break  # disconnect mid-run
        gate.set()
        rest = [e async for e in engine.stream_events(inst.id, after=first[-1].seq)]
        final = await engine.wait(inst.id)
    assert final.state == WorkflowState.COMPLETED
    seqs = [e.seq for e in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert type(rest[-1]).__name__ == "WorkflowCompleted"


async def test_slow_subscriber_does_not_stall_the_engine(make_workflow: Any) -> None:
    """A follower that reads one event and then stalls does not keep the run from finishing;
    it later reads everything that happened, in order."""
    wf = make_workflow(*({"id": f"t{i}"} for i in range(200)), max_parallel_tasks=50)
    async with dagflow.Engine(plugins={"rec": RecordingHandler()}) as engine:
        inst = await engine.create_workflow(wf)
        stream = engine.stream_events(inst.id)
        await engine.start_workflow(inst.id)
        first = await stream.__anext__()
        final = await engine.wait(inst.id)  # finishes while the follower sits on event 1
        assert final.state == WorkflowState.COMPLETED
        rest = [e async for e in stream]
    assert [e.seq for e in [first, *rest]] == list(range(1, len(rest) + 2))


async def test_events_are_json_and_round_trip(make_workflow: Any) -> None:
    """Every event serialises to JSON tagged with its type and reads back equal."""
    rec = RecordingHandler(results={"a": {"k": [1, 2]}})
    wf = make_workflow({"id": "a"}, {"id": "b", "condition": "false"})
    converter = make_converter()
    async with dagflow.Engine(plugins={"rec": rec}) as engine:
        inst = await engine.run(wf)
        events = [e async for e in engine.stream_events(inst.id)]
    for event in events:
        data = json.loads(json.dumps(event_to_dict(converter, event)))
        assert data["type"] == type(event).__name__
        assert data["seq"] == event.seq
        assert event_from_dict(converter, data) == event


async def test_stream_of_a_finished_instance_ends(make_workflow: Any) -> None:
    """Following a finished instance replays its history and stops."""
    async with dagflow.Engine(plugins={"rec": RecordingHandler()}) as engine:
        inst = await engine.run(make_workflow({"id": "a"}))
        with anyio.fail_after(5):
            events = [e async for e in engine.stream_events(inst.id)]
            later = [e async for e in engine.stream_events(inst.id, after=2)]
    assert [e.seq for e in later] == [e.seq for e in events[2:]]


async def test_unknown_instance_raises_workflow_not_found() -> None:
    """Status and events of an unknown id raise WorkflowNotFound."""
    async with dagflow.Engine() as engine:
        with pytest.raises(dagflow.WorkflowNotFound):
            await engine.get_status("nope")
        with pytest.raises(dagflow.WorkflowNotFound):
            [e async for e in engine.stream_events("nope")]


async def test_a_follower_is_woken_by_a_commit_between_its_read_and_its_wait(
        tmp_path: Any) -> None:
    """A stream takes the run's waiter, reads the stored events, then waits: a commit
    that lands while it reads (reads and writes run at once on a durable store) still
    wakes it, instead of leaving it waiting for a commit that may never come."""
    release = anyio.Event()

    async def held(config: Any, ctx: Any) -> None:
        await release.wait()

    workflow = dagflow.loads("id: held\ntasks:\n  - {id: a, type: {type: Plugin,"
                             " plugin_name: held}}\n")
    async with dagflow.Engine(store=f"sqlite:///{tmp_path}/s.db",
                              plugins={"held": held}) as engine:
        instance = await engine.create_workflow(workflow)
        await engine.start_workflow(instance.id)
        async for event in engine.stream_events(instance.id):
            if type(event).__name__ == "TaskStarted":
                break
        waiter = engine._runner.waiter(instance.id)  # what a stream takes before reading
        assert waiter is not None
        await engine.pause_workflow(instance.id)  # a commit, "while the stream reads"
        with anyio.fail_after(5):
            await waiter()
        release.set()
        await engine.resume_workflow(instance.id)
        assert (await engine.wait(instance.id)).state == WorkflowState.COMPLETED
