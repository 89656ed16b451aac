"""The instance store's checks of what runs write: commits and events, large values,
Unicode, and concurrent writers (the rest of :func:`check_instance_store` is in
``_instances``)."""

from __future__ import annotations

import datetime as dt
import uuid

import anyio
import attrs

from .._errors import WorkflowNotFound
from .._events import TaskCompleted
from .._models import (
    ExecutionContext,
    InstanceChanges,
    StateTransition,
    TaskOutput,
    TaskState,
    TaskStatus,
    WorkflowFilters,
    WorkflowInstance,
    WorkflowState,
)
from .._protocols import InstanceStore
from ._common import StoreRun, expect_raises, ids_of, load_instance, same
from ._values import (
    UNICODE,
    make_definition,
    make_events,
    make_instance,
    make_output,
    utcnow,
    with_outputs,
)

__all__ = ["check_commit", "check_commit_many", "check_concurrent_events",
           "check_concurrent_instances", "check_large", "check_unicode", "unicode_instance"]


async def check_commit(run: StoreRun) -> None:
    """Commits show on load; load_events honours after and limit."""
    store = await run.new()
    instance = make_instance(full=False, state=WorkflowState.PENDING)
    await store.store_workflow(instance)
    iid = instance.id
    t0 = utcnow()
    start = StateTransition(WorkflowState.PENDING, WorkflowState.RUNNING, t0, "started")
    events = make_events(iid, 1, 8)
    await store.commit(iid, InstanceChanges(
        fields={"state": WorkflowState.RUNNING, "started_at": t0}, transitions=(start,),
        events=tuple(events[:1])))
    running = TaskState("build", TaskStatus.RUNNING, t0, None, 1)
    await store.commit(iid, InstanceChanges(task_states=(running,), events=tuple(events[1:2])))
    got = await load_instance(store, iid, "after two commits")
    same("state after commit", got.state, WorkflowState.RUNNING)
    same("started_at after commit", got.started_at, t0)
    same("task_states after commit", got.task_states, {"build": running})
    same("state_history after commit", got.state_history, (start,))
    done = TaskState("build", TaskStatus.COMPLETED, t0, t0, 1, make_output(3), None)
    other = TaskState("check", TaskStatus.RUNNING, t0, None, 2)
    await store.commit(iid, InstanceChanges(task_states=(done, other),
                                            events=tuple(events[2:5])))
    await store.commit(iid, InstanceChanges(events=tuple(events[5:6])))
    await store.commit(iid, InstanceChanges(fields={"error": "stopping 🛑"}))
    t1 = t0 + dt.timedelta(seconds=3)
    end = StateTransition(WorkflowState.RUNNING, WorkflowState.COMPLETED, t1, None)
    await store.commit(iid, InstanceChanges(
        fields={"state": WorkflowState.COMPLETED, "completed_at": t1, "error": None},
        transitions=(end,), events=tuple(events[6:])))
    want = with_outputs(attrs.evolve(
        instance, state=WorkflowState.COMPLETED, started_at=t0, completed_at=t1,
        task_states={"build": done, "check": other}, state_history=(start, end)))
    same("load_workflow after commits", await load_instance(store, iid, "after commits"), want)
    same("load_events()", await store.load_events(iid), events)
    same("load_events(after=2)", await store.load_events(iid, after=2), events[2:])
    same("load_events(limit=3)", await store.load_events(iid, limit=3), events[:3])
    same("load_events(after=2, limit=3)", await store.load_events(iid, 2, 3), events[2:5])
    same("load_events(after=7, limit=5)", await store.load_events(iid, 7, 5), events[7:])
    same("load_events(after=8)", await store.load_events(iid, after=8), [])
    same("load_events(after=100)", await store.load_events(iid, after=100), [])
    same("load_events(limit=0)", await store.load_events(iid, limit=0), [])
    same("last_event_seq", await store.last_event_seq(iid), 8)
    same("instance_ids", await store.instance_ids(
        WorkflowFilters(workflow_id=instance.workflow_id)), [(iid, None)])


async def check_commit_many(run: StoreRun) -> None:
    """commit_many applies several instances' changes; with an unknown id among them it
    raises WorkflowNotFound and applies none."""
    store = await run.new()
    one, two = make_instance(full=False), make_instance(full=False)
    for instance in (one, two):
        await store.store_workflow(instance)
    t0 = utcnow()
    a = TaskState("a", TaskStatus.COMPLETED, t0, t0, 1, make_output(1), None)
    b = TaskState("b", TaskStatus.RUNNING, t0, None, 1)
    first, second = make_events(one.id, 1, 2), make_events(two.id, 1, 1)
    await store.commit_many([
        (one.id, InstanceChanges(task_states=(a,), events=tuple(first))),
        (two.id, InstanceChanges(fields={"error": "two's"}, task_states=(b,),
                                 events=tuple(second)))])
    got_one = await load_instance(store, one.id, "after commit_many")
    got_two = await load_instance(store, two.id, "after commit_many")
    same("commit_many: first instance's task states", got_one.task_states, {"a": a})
    same("commit_many: second instance's task states", got_two.task_states, {"b": b})
    same("commit_many: second instance's error", got_two.error, "two's")
    same("commit_many: first instance's events", await store.load_events(one.id), first)
    same("commit_many: second instance's events", await store.load_events(two.id), second)
    c = TaskState("c", TaskStatus.RUNNING, t0, None, 1)
    await expect_raises(WorkflowNotFound, "commit_many with an unknown instance among them",
                        store.commit_many([
                            (one.id, InstanceChanges(task_states=(c,))),
                            (f"{uuid.uuid4()}", InstanceChanges(task_states=(c,)))]))
    again = await load_instance(store, one.id, "after a refused commit_many")
    assert "c" not in again.task_states, \
        "commit_many applied the changes of one instance although another one was unknown"


async def check_large(run: StoreRun) -> None:
    """A 1 MB stdout, 10,000-item data and large variables round trip."""
    store = await run.new()
    instance = make_instance(full=False)
    await store.store_workflow(instance)
    line = "line ✓ %07d the quick brown fox jumps over the lazy dog\n"
    stdout = "".join(line % i for i in range(1_048_576 // len(line % 0) + 1))
    big = TaskOutput(stdout=stdout, stderr="e" * 100_000, exit_code=0,
                     data={"items": [{"i": i, "name": f"item-{i}", "ok": i % 2 == 0}
                                     for i in range(10_000)]},
                     metrics={f"m{i}": float(i) for i in range(100)})
    at = utcnow()
    state = TaskState("build", TaskStatus.COMPLETED, at, at, 1, big, None)
    event = TaskCompleted(seq=1, instance_id=instance.id, timestamp=at, task_id="build",
                          output=big)
    await store.commit(instance.id, InstanceChanges(task_states=(state,), events=(event,)))
    got = await load_instance(store, instance.id, "with a large output")
    same("a large task output", got.task_states.get("build"), state)
    same("an event with a large output", await store.load_events(instance.id), [event])
    variables = {"big": "v" * 500_000, "many": list(range(10_000))}
    large = attrs.evolve(make_instance(), execution_context=ExecutionContext(variables))
    await store.store_workflow(large)
    same("large variables", await load_instance(store, large.id, "with large variables"),
         with_outputs(large))


async def check_unicode(run: StoreRun) -> None:
    """Any text (but NUL) round trips in every field of an instance that holds text."""
    await unicode_instance(await run.new())


async def unicode_instance(store: InstanceStore) -> WorkflowInstance:
    """Store and commit Unicode everywhere; return the instance as loaded."""
    user = f"José 🚀 {uuid.uuid4().hex[:8]} {UNICODE}"
    instance = attrs.evolve(make_instance(created_by=user, text=UNICODE), error=UNICODE)
    await store.store_workflow(instance)
    same("load_workflow with Unicode", await load_instance(store, instance.id, "Unicode"),
         instance)
    same("list_workflows(user_id=Unicode)",
         ids_of(await store.list_workflows(WorkflowFilters(user_id=user))), [instance.id])
    at = utcnow()
    events = make_events(instance.id, 1, 8, UNICODE)
    transition = StateTransition(WorkflowState.RUNNING, WorkflowState.FAILED, at, UNICODE)
    state = TaskState("check", TaskStatus.FAILED, at, at, 1, make_output(5, UNICODE), UNICODE)
    await store.commit(instance.id, InstanceChanges(
        fields={"state": WorkflowState.FAILED, "error": UNICODE + "!"}, task_states=(state,),
        events=tuple(events), transitions=(transition,)))
    got = await load_instance(store, instance.id, "after a Unicode commit")
    same("error after a Unicode commit", got.error, UNICODE + "!")
    same("task state after a Unicode commit", got.task_states["check"], state)
    same("transition after a Unicode commit", got.state_history[-1], transition)
    same("Unicode events", await store.load_events(instance.id), events)
    return got


async def check_concurrent_instances(run: StoreRun) -> None:
    """20 tasks writing 20 instances at once lose nothing."""
    store = await run.new()
    definition = make_definition()
    instances = [make_instance(definition, full=False) for _ in range(20)]
    names = ["build", "check", "count", "approve", "deploy"]

    async def drive(instance: WorkflowInstance) -> None:
        await store.store_workflow(instance)
        for seq, name in enumerate(names, 1):
            at = utcnow()
            await store.commit(instance.id, InstanceChanges(
                task_states=(TaskState(name, TaskStatus.COMPLETED, at, at, 1, make_output(seq)),),
                events=tuple(make_events(instance.id, seq, 1))))

    async with anyio.create_task_group() as tg:
        for instance in instances:
            tg.start_soon(drive, instance)
    for instance in instances:
        got = await load_instance(store, instance.id, "after concurrent writers")
        assert sorted(got.task_states) == sorted(names), (
            f"instance {instance.id}: task states {sorted(got.task_states)} after concurrent "
            f"writers, expected {sorted(names)}")
        seqs = [e.seq for e in await store.load_events(instance.id)]
        assert seqs == [1, 2, 3, 4, 5], \
            f"instance {instance.id}: event seqs {seqs} after concurrent writers"
    listed = await store.instance_ids(WorkflowFilters(workflow_id=definition.id))
    assert len(listed) == 20, f"{len(listed)} instances listed after 20 concurrent writers"


async def check_concurrent_events(run: StoreRun) -> None:
    """10 tasks appending events to one instance lose nothing; seq order."""
    store = await run.new()
    instance = make_instance(full=False)
    await store.store_workflow(instance)

    async def append(seq: int) -> None:
        at = utcnow()
        await store.commit(instance.id, InstanceChanges(
            task_states=(TaskState(f"t{seq}", TaskStatus.COMPLETED, at, at, 1),),
            events=tuple(make_events(instance.id, seq, 1))))

    async with anyio.create_task_group() as tg:
        for seq in (3, 7, 1, 10, 5, 2, 9, 4, 8, 6):  # commits may land in any order
            tg.start_soon(append, seq)
    seqs = [e.seq for e in await store.load_events(instance.id)]
    assert seqs == list(range(1, 11)), \
        f"event seqs {seqs} after 10 concurrent commits to one instance, expected 1..10"
    got = await load_instance(store, instance.id, "after concurrent commits")
    assert len(got.task_states) == 10, \
        f"{len(got.task_states)} task states after 10 concurrent commits to one instance"
