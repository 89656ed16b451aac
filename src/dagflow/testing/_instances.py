"""``check_instance_store``: the contract of an :class:`~dagflow.InstanceStore` (instances,
task states, events), as a kit.

Run it on a store that keeps instances only (the rest of the engine's store then comes
from elsewhere, through :class:`~dagflow.ComposedStorage`); a whole store runs it as part
of :func:`~dagflow.testing.check_storage`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs

from .._errors import StorageError, WorkflowNotFound
from .._models import (
    ExecutionContext,
    InstanceChanges,
    StateTransition,
    TaskState,
    TaskStatus,
    WorkflowFilters,
    WorkflowInstance,
    WorkflowState,
)
from .._protocols import InstanceStore
from ._commits import (
    check_commit,
    check_commit_many,
    check_concurrent_events,
    check_concurrent_instances,
    check_large,
    check_unicode,
)
from ._common import (
    StoreCheck,
    StoreRun,
    expect_raises,
    ids_of,
    load_instance,
    no_events,
    run_store_checks,
    same,
    short,
)
from ._values import (
    make_checkpoint,
    make_definition,
    make_events,
    make_instance,
    make_output,
    new_id,
    utcnow,
    with_outputs,
)

__all__ = [
    "CONCURRENCY_CHECKS",
    "INSTANCE_CHECKS",
    "check_instance_store",
    "delete_instance",
    "reopened_instance",
    "unknown_instance_ids",
]

IS = TypeVar("IS", bound=InstanceStore)


async def check_instance_store(
    make: Callable[[], Awaitable[IS]] | Callable[[], IS],
    *,
    durable: bool = True,
    concurrency: bool = True,
    reopen: Callable[[IS], Awaitable[IS] | IS] | None = None,
) -> None:
    """Run the :class:`~dagflow.InstanceStore` contract against a store factory.

    The checks, in order: a full instance round trip; unknown ids; storing an existing
    id again; ``update_workflow``; ``list_workflows`` with each filter, newest first (and
    ``instance_ids`` in the same order); ``delete_workflow``; ``commit`` of fields, task
    states, events and transitions, and ``load_events`` with ``after``/``limit``; large
    values (1 MB stdout, 10,000-item data); Unicode everywhere; then, for durable stores,
    reopening; then concurrent writers. It stops at the first violation.

    Args:
        make: Returns a new store (or an awaitable of one) each time it is called. Each
            check gets its own, and the kit closes it if it has a ``close`` method.
            Stores may share a database: checks use uuid4 ids and never assume the store
            is empty.
        durable: The store keeps what it was given across processes: storing an
            existing id again must raise :class:`~dagflow.StorageError`, and a second
            store on the same database must see everything (``reopen``). Non-durable
            stores may either refuse or replace an existing id.
        concurrency: Also check concurrent writers (20 tasks writing 20 instances, 10
            tasks appending events to one instance).
        reopen: Given a store made by ``make``, returns another store on the same
            database, as a second process would open it. Required when ``durable`` is
            true.

    Raises:
        AssertionError: The store broke the contract; the message names the check and
            what differed (``"check_instance_store: round trip: ..."``).
        TypeError: ``durable`` is true but no ``reopen`` was given.
    """
    if durable and reopen is None:
        raise TypeError("check_instance_store(durable=True) needs reopen=: a callable that "
                        "opens a second store on the same database as the store it is given")
    checks = list(INSTANCE_CHECKS)
    if durable:
        checks.append(("reopen", _check_reopen))
    if concurrency:
        checks += CONCURRENCY_CHECKS
    await run_store_checks("check_instance_store", checks, make, reopen=reopen,
                           durable=durable)


async def _check_round_trip(run: StoreRun) -> None:
    """A full instance (and a minimal one) loads back equal, with no events."""
    store = await run.new()
    instance = make_instance(text="round trip")
    await store.store_workflow(instance)
    same("load_workflow", await load_instance(store, instance.id, "after store_workflow"), instance)
    assert await store.load_events(instance.id) == [], "a new instance has events"
    assert await store.last_event_seq(instance.id) == 0, \
        "last_event_seq of a new instance is not 0"
    minimal = make_instance(full=False, state=WorkflowState.PENDING)
    await store.store_workflow(minimal)
    same("load_workflow (minimal instance)", await load_instance(store, minimal.id, "minimal"),
         minimal)


async def _check_unknown_ids(run: StoreRun) -> None:
    """Unknown ids: None or WorkflowNotFound, and nothing is created."""
    await unknown_instance_ids(await run.new())


async def unknown_instance_ids(store: InstanceStore) -> None:
    """What the instance part does with an id it does not know."""
    unknown = new_id()
    got = await store.load_workflow(unknown)
    assert got is None, f"load_workflow of an unknown id returned {short(got)}, not None"
    await expect_raises(WorkflowNotFound, "commit to an unknown id",
                        store.commit(unknown, InstanceChanges(
                            fields={"state": WorkflowState.RUNNING},
                            events=tuple(make_events(unknown, 1, 1)))))
    await expect_raises(WorkflowNotFound, "update_workflow of an unknown id",
                        store.update_workflow(make_instance(instance_id=unknown)))
    assert await store.load_workflow(unknown) is None, \
        "a failed commit or update_workflow created the instance"
    await expect_raises(WorkflowNotFound, "load_events of an unknown id",
                        store.load_events(unknown))


async def _check_store_existing(run: StoreRun) -> None:
    """Storing an existing id raises StorageError (durable) or replaces it."""
    store = await run.new()
    first = make_instance()
    await store.store_workflow(first)
    second = attrs.evolve(make_instance(instance_id=first.id, state=WorkflowState.PENDING,
                                        full=False), created_by="someone-else")
    try:
        await store.store_workflow(second)
    except StorageError:
        same("after a refused store_workflow", await load_instance(store, first.id, "original"),
             first)
        return
    if run.durable:
        raise AssertionError("storing an existing id again did not raise StorageError")
    same("after store_workflow replaced an instance",
         await load_instance(store, first.id, "replaced"), second)


async def _check_update(run: StoreRun) -> None:
    """update_workflow replaces header, task states and history; events stay."""
    store = await run.new()
    instance = make_instance()
    await store.store_workflow(instance)
    events = make_events(instance.id, 1, 3)
    await store.commit(instance.id, InstanceChanges(events=tuple(events)))
    at = instance.created_at + dt.timedelta(minutes=5)
    states = dict(instance.task_states)
    del states["note"]  # a task state the update leaves out is gone
    states["count"] = TaskState("count", TaskStatus.COMPLETED, at, at, 2, make_output(7), None)
    states["deploy"] = TaskState("deploy", TaskStatus.CANCELLED, at, at, 1, None, "cancelled")
    context = instance.execution_context
    updated = with_outputs(attrs.evolve(
        instance, state=WorkflowState.FAILED, completed_at=at, error="failed: check 💥",
        task_states=states,
        state_history=(StateTransition(WorkflowState.PENDING, WorkflowState.RUNNING, at, "r"),
                       StateTransition(WorkflowState.RUNNING, WorkflowState.FAILED, at,
                                       "check failed")),
        execution_context=ExecutionContext({"env": "prod", "new": [1, {"x": "y"}]},
                                           context.outputs, {"ONLY": "this"})))
    await store.update_workflow(updated)
    same("load_workflow after update_workflow", await load_instance(store, instance.id, "updated"),
         updated)
    same("load_events after update_workflow", await store.load_events(instance.id), events)
    retry = StateTransition(WorkflowState.FAILED, WorkflowState.RUNNING, at, "retry")
    await store.commit(instance.id, InstanceChanges(
        fields={"state": WorkflowState.RUNNING, "completed_at": None, "error": None},
        transitions=(retry,), events=tuple(make_events(instance.id, 4, 1))))
    again = await load_instance(store, instance.id, "committed after update")
    same("state_history after update_workflow and commit", again.state_history,
         (*updated.state_history, retry))
    same("state after update_workflow and commit", again.state, WorkflowState.RUNNING)
    assert again.completed_at is None and again.error is None, \
        "commit of fields completed_at=None, error=None did not clear them"
    assert len(await store.load_events(instance.id)) == 4, \
        "events appended after update_workflow are missing"


async def _check_list(run: StoreRun) -> None:
    """Every filter of list_workflows, newest (by created_at) first."""
    store = await run.new()
    definition = make_definition()
    tag = uuid.uuid4().hex[:8]
    users = [f"kit-a-{tag}", f"kit-b-{tag} José"]
    kinds = [WorkflowState.PENDING, WorkflowState.RUNNING, WorkflowState.COMPLETED,
             WorkflowState.FAILED, WorkflowState.RUNNING, WorkflowState.COMPLETED]
    # half-second steps: created_at alternates between whole and fractional seconds
    base = utcnow().replace(microsecond=0) - dt.timedelta(hours=1)
    made = [make_instance(definition, created_at=base + dt.timedelta(seconds=i / 2),
                          created_by=users[i % 2], state=state, full=i % 2 == 0)
            for i, state in enumerate(kinds)]
    for i in (3, 0, 5, 1, 4, 2):  # newest first means by created_at, not by storing order
        await store.store_workflow(made[i])
    newest = made[::-1]

    async def listed(what: str, filters: WorkflowFilters,
                     want: list[WorkflowInstance]) -> None:
        got = await store.list_workflows(filters)
        assert ids_of(got) == ids_of(want), (
            f"list_workflows({what}) returned {ids_of(got)} (created_at "
            f"{[i.created_at.isoformat() for i in got]}), expected {ids_of(want)} newest first")
        same(f"list_workflows({what})", got, [with_outputs(i) for i in want])
        pairs = await store.instance_ids(filters)
        assert pairs == [(i.id, i.parent_id) for i in want], \
            f"instance_ids({what}) returned {pairs}, expected the ids of list_workflows"

    wf = definition.id
    await listed("workflow_id", WorkflowFilters(workflow_id=wf), newest)
    await listed("user_id", WorkflowFilters(user_id=users[0]), newest[1::2])
    await listed("user_id with Unicode", WorkflowFilters(user_id=users[1]), newest[::2])
    await listed("state=Running", WorkflowFilters(workflow_id=wf, state=WorkflowState.RUNNING),
                 [made[4], made[1]])
    await listed("state=Completed, user_id",
                 WorkflowFilters(state=WorkflowState.COMPLETED, user_id=users[1]), [made[5]])
    cutoff = made[2].created_at
    await listed("created_after (strictly after)",
                 WorkflowFilters(workflow_id=wf, created_after=cutoff), newest[:3])
    await listed("created_after between two instances",
                 WorkflowFilters(workflow_id=wf, created_after=cutoff + dt.timedelta(
                     milliseconds=1)), newest[:3])
    elsewhere = dt.timezone(dt.timedelta(hours=-7))
    await listed("created_after in another time zone",
                 WorkflowFilters(workflow_id=wf, created_after=cutoff.astimezone(elsewhere)),
                 newest[:3])
    await listed("limit=2", WorkflowFilters(workflow_id=wf, limit=2), newest[:2])
    await listed("limit=0", WorkflowFilters(workflow_id=wf, limit=0), [])
    await listed("every filter", WorkflowFilters(
        workflow_id=wf, user_id=users[0], state=WorkflowState.RUNNING,
        created_after=made[0].created_at, limit=5), [made[4]])
    await listed("unknown workflow_id", WorkflowFilters(workflow_id=f"none-{tag}"), [])
    everything = ids_of(await store.list_workflows(WorkflowFilters()))
    assert set(ids_of(made)) <= set(everything), \
        "list_workflows(WorkflowFilters()) leaves out stored instances"


async def _check_delete(run: StoreRun) -> None:
    """delete_workflow removes one instance and its events, only them."""
    await delete_instance(run, everything=False)


async def delete_instance(run: StoreRun, *, everything: bool) -> None:
    """delete_workflow removes everything recorded about one instance, only it: with
    ``everything``, its checkpoints, control requests and lease too (a whole store)."""
    store = await run.new()
    definition = make_definition()
    doomed = make_instance(definition)
    kept = make_instance(definition)  # shares the definition (and its snapshot)
    for instance in (doomed, kept):
        await store.store_workflow(instance)
        await store.commit(instance.id,
                           InstanceChanges(events=tuple(make_events(instance.id, 1, 4))))
        if everything:
            await store.save_checkpoint(make_checkpoint(instance, utcnow()))
            await store.request_control(instance.id, "pause", "please")
    if everything:
        assert await store.acquire_lease(doomed.id, "owner-a", 60.0), "acquire_lease refused"
        checkpoint = (await store.list_checkpoints(doomed.id))[0]
    await store.delete_workflow(doomed.id)
    assert await store.load_workflow(doomed.id) is None, \
        "load_workflow finds an instance after delete_workflow"
    assert doomed.id not in ids_of(await store.list_workflows(
        WorkflowFilters(workflow_id=definition.id))), "list_workflows lists a deleted instance"
    await no_events(store, doomed.id, "after delete_workflow")
    if everything:
        assert await store.list_checkpoints(doomed.id) == [], \
            "delete_workflow left the instance's checkpoints (list_checkpoints)"
        assert await store.load_checkpoint(checkpoint.id) is None, \
            "delete_workflow left the instance's checkpoints (load_checkpoint)"
        assert await store.take_controls(doomed.id) == [], \
            "delete_workflow left the instance's control requests"
    await store.delete_workflow(doomed.id)  # deleting twice is not an error
    await store.delete_workflow(new_id())
    # the same id can be stored again, and starts with nothing from before
    fresh = make_instance(definition, instance_id=doomed.id, full=False)
    await store.store_workflow(fresh)
    same("an instance stored again after delete_workflow",
         await load_instance(store, doomed.id, "stored again"), fresh)
    assert await store.load_events(doomed.id) == [], \
        "an instance stored again after delete_workflow has the old events"
    if everything:
        owner, _ = await store.lease_of(doomed.id)
        assert owner is None, \
            f"an instance stored again after delete_workflow still has the old lease ({owner!r})"
    # the other instance, and the definition snapshot it shares, are untouched
    reopened = run.durable and run.reopen is not None
    readers = [store] + ([await run.again(store)] if reopened else [])
    for reader in readers:
        same("another instance after delete_workflow",
             await load_instance(reader, kept.id, "the other instance"), kept)
        assert len(await reader.load_events(kept.id)) == 4, \
            "delete_workflow removed another instance's events"
        if everything:
            assert len(await reader.list_checkpoints(kept.id)) == 1, \
                "delete_workflow removed another instance's checkpoints"


async def _check_reopen(run: StoreRun) -> None:
    """A second store on the same database sees the instances and events the first wrote."""
    await reopened_instance(run)


async def reopened_instance(
    run: StoreRun, also: Callable[[Any, WorkflowInstance], Awaitable[None]] | None = None,
) -> tuple[Any, WorkflowInstance]:
    """Write an instance, a commit and events (and ``also`` what else the caller writes)
    through one store, close it, and check that a store reopened on its database loads
    them all equal; return that store and the instance."""
    first = await run.new()
    instance = make_instance(text="reopen ✓")
    await first.store_workflow(instance)
    events = make_events(instance.id, 1, 5)
    at = utcnow()
    state = TaskState("count", TaskStatus.COMPLETED, at, at, 1, make_output(9), None)
    await first.commit(instance.id, InstanceChanges(task_states=(state,), events=tuple(events)))
    if also is not None:
        await also(first, instance)
    want = with_outputs(attrs.evolve(
        instance, task_states={**instance.task_states, "count": state}))
    await run.close_one(first)
    second = await run.again(first)
    # a new store parses the definition snapshot instead of reusing the object it was given
    same("load_workflow from a reopened store",
         await load_instance(second, instance.id, "reopened"), want)
    same("load_events from a reopened store", await second.load_events(instance.id), events)
    same("last_event_seq from a reopened store", await second.last_event_seq(instance.id), 5)
    return second, instance


#: The checks of an instance store, in the order the kit runs them (before reopening).
INSTANCE_CHECKS: list[tuple[str, StoreCheck]] = [
    ("round trip", _check_round_trip),
    ("unknown ids", _check_unknown_ids),
    ("storing an existing id", _check_store_existing),
    ("update_workflow", _check_update),
    ("list_workflows", _check_list),
    ("delete_workflow", _check_delete),
    ("commit and load_events", check_commit),
    ("commit_many", check_commit_many),
    ("large values", check_large),
    ("unicode", check_unicode),
]

#: Concurrent writers, run last.
CONCURRENCY_CHECKS: list[tuple[str, StoreCheck]] = [
    ("concurrent instances", check_concurrent_instances),
    ("concurrent events", check_concurrent_events),
]
