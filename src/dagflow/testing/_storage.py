"""``check_storage``: the contract every :class:`~dagflow.WorkflowStorage` keeps, as a kit.

dagflow runs it against its own stores (memory, SQLite, PostgreSQL), and host
applications run it against theirs (compare trio's ``check_two_way_stream``)::

    from dagflow.testing import check_storage

    async def test_my_store(tmp_path):
        await check_storage(lambda: MyStore(tmp_path / f"{uuid.uuid4()}.db"),
                            reopen=lambda old: MyStore(old.path))

It runs the kit of every part (:func:`~dagflow.testing.check_instance_store`,
``check_checkpoint_store``, ``check_lease_store``, ``check_control_store``,
``check_approval_store``) on the whole store, and what only a whole store does: deleting
an instance deletes its checkpoints, controls and lease; a second process sees every part;
a process that lost an instance's lease cannot commit to it (fencing).

Each check gets its own store from the factory and closes it (and any store it reopened)
at the end. Checks use random (uuid4) instance ids and workflow ids, and never assume the
store is empty, so a factory may hand out stores over one shared database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from .._errors import StorageError
from .._models import (
    Checkpoint,
    InstanceChanges,
    StateTransition,
    TaskState,
    TaskStatus,
    WorkflowInstance,
    WorkflowState,
)
from .._protocols import WorkflowStorage
from ._commits import unicode_instance
from ._common import StoreRun, expect_raises, load_instance, run_store_checks, same
from ._instances import (
    CONCURRENCY_CHECKS,
    INSTANCE_CHECKS,
    delete_instance,
    reopened_instance,
    unknown_instance_ids,
)
from ._parts import (
    APPROVAL_CHECKS,
    CHECKPOINT_CHECKS,
    CONTROL_CHECKS,
    LEASE_CHECKS,
    unicode_checkpoint,
    unicode_control,
    unknown_checkpoint_ids,
    unknown_control_ids,
)
from ._values import make_checkpoint, make_events, make_instance, make_output, utcnow, with_outputs

__all__ = ["check_storage"]

S = TypeVar("S", bound=WorkflowStorage)


async def check_storage(
    make: Callable[[], Awaitable[S]] | Callable[[], S],
    *,
    durable: bool = True,
    concurrency: bool = True,
    reopen: Callable[[S], Awaitable[S] | S] | None = None,
) -> None:
    """Run the :class:`~dagflow.WorkflowStorage` contract against a store factory.

    The checks, in order: a full instance round trip; unknown ids; storing an existing
    id again; ``update_workflow``; ``list_workflows`` with each filter, newest first (and
    ``instance_ids`` in the same order); ``delete_workflow`` removing events,
    checkpoints, controls and leases too; ``commit`` of fields, task states, events and
    transitions, and ``load_events`` with ``after``/``limit``; large values (1 MB
    stdout, 10,000-item data); Unicode everywhere; checkpoints (and pruning to
    ``store.keep_checkpoints`` if the store has that attribute); leases; control
    requests; approval gates (``save_approval``, ``load_approval``, ``update_approval``
    and ``list_approvals``); then, for durable stores, reopening and lease fencing; then
    concurrent writers. It stops at the first violation.

    These are the checks of the part kits (``check_instance_store``,
    ``check_checkpoint_store``, ``check_lease_store``, ``check_control_store`` and
    ``check_approval_store``) on one store, plus what only a whole store does: deleting
    an instance deletes its checkpoints, controls and lease, a second process sees every
    part, and a process that lost a lease cannot commit.

    Args:
        make: Returns a new store (or an awaitable of one) each time it is called. Each
            check gets its own; the kit closes it. Stores may share a database: checks
            use uuid4 ids and never assume the store is empty.
        durable: The store keeps what it was given across processes: storing an
            existing id again must raise :class:`~dagflow.StorageError`, a second store
            on the same database must see everything (``reopen``), and a store that lost
            an instance's lease must not write (fencing). Non-durable stores may either
            refuse or replace an existing id.
        concurrency: Also check concurrent writers (20 tasks writing 20 instances, 10
            tasks appending events to one instance).
        reopen: Given a store made by ``make``, returns another store on the same
            database (``lambda old: SqliteStorage(old.path)``), as a second process
            would open it. It may be called while the first store is open (fencing) or
            after it was closed (reopening). Required when ``durable`` is true.

    Raises:
        AssertionError: The store broke the contract; the message names the check and
            what differed.
        TypeError: ``durable`` is true but no ``reopen`` was given.
    """
    if durable and reopen is None:
        raise TypeError("check_storage(durable=True) needs reopen=: a callable that opens "
                        "a second store on the same database as the store it is given")
    # the instance checks, with the whole-store version of those that touch other parts
    whole = {"unknown ids": _check_unknown_ids, "delete_workflow": _check_delete,
             "unicode": _check_unicode}
    checks = [(name, whole.get(name, check)) for name, check in INSTANCE_CHECKS]
    checks += CHECKPOINT_CHECKS + LEASE_CHECKS + CONTROL_CHECKS + APPROVAL_CHECKS
    if durable:
        checks += [("reopen", _check_reopen), ("lease fencing", _check_fencing)]
    if concurrency:
        checks += CONCURRENCY_CHECKS
    await run_store_checks("check_storage", checks, make, reopen=reopen, durable=durable)


async def _check_unknown_ids(run: StoreRun) -> None:
    """Unknown ids: None, [] or WorkflowNotFound, and nothing is created."""
    store = await run.new()
    await unknown_instance_ids(store)
    await unknown_checkpoint_ids(store)
    await unknown_control_ids(store)


async def _check_delete(run: StoreRun) -> None:
    """delete_workflow removes everything recorded about one instance, only it."""
    await delete_instance(run, everything=True)


async def _check_unicode(run: StoreRun) -> None:
    """Any text (but NUL) round trips in every field that holds text."""
    store = await run.new()
    got = await unicode_instance(store)
    await unicode_checkpoint(store, got)
    await unicode_control(store, got.id)


async def _check_reopen(run: StoreRun) -> None:
    """A second store on the same database sees everything the first wrote."""
    checkpoints: list[Checkpoint] = []

    async def also(first: Any, instance: WorkflowInstance) -> None:
        checkpoints.append(make_checkpoint(instance, utcnow()))
        await first.save_checkpoint(checkpoints[0])
        await first.request_control(instance.id, "pause", "later")
        assert await first.acquire_lease(instance.id, "A", 60.0), "acquire_lease refused"

    second, instance = await reopened_instance(run, also)
    same("list_checkpoints from a reopened store", await second.list_checkpoints(instance.id),
         checkpoints)
    same("take_controls from a reopened store", await second.take_controls(instance.id),
         [("pause", "later")])
    assert (await second.lease_of(instance.id))[0] == "A", \
        "the lease did not survive reopening"
    assert not await second.acquire_lease(instance.id, "B", 30.0), \
        "B acquired A's unexpired lease through a reopened store"


async def _check_fencing(run: StoreRun) -> None:
    """A store whose lease was taken by another writes nothing more."""
    a = await run.new()
    instance = make_instance(full=False, state=WorkflowState.RUNNING)
    await a.store_workflow(instance)
    iid = instance.id
    assert await a.acquire_lease(iid, "A", 30.0), "acquire_lease refused"
    await a.commit(iid, InstanceChanges(events=tuple(make_events(iid, 1, 1))))
    b = await run.again(a)
    assert not await b.acquire_lease(iid, "B", 30.0), \
        "a second store acquired an unexpired lease"
    assert await a.acquire_lease(iid, "A", 0.2), "A could not renew (shorten) its lease"
    await anyio.sleep(0.3)
    assert await b.acquire_lease(iid, "B", 30.0), \
        "a second store could not take an expired lease"
    at = utcnow()
    late = InstanceChanges(
        fields={"state": WorkflowState.COMPLETED, "completed_at": at, "error": "late"},
        task_states=(TaskState("build", TaskStatus.COMPLETED, at, at, 1, make_output(1)),),
        events=tuple(make_events(iid, 2, 2)),
        transitions=(StateTransition(WorkflowState.RUNNING, WorkflowState.COMPLETED, at),))
    await expect_raises(StorageError, "commit by a store whose lease another store took",
                        a.commit(iid, late))
    got = await load_instance(b, iid, "after a fenced commit")
    same("instance after a fenced commit (nothing of it may be applied)", got,
         with_outputs(instance))
    assert len(await b.load_events(iid)) == 1, "a fenced commit appended events"
    await b.commit(iid, InstanceChanges(events=tuple(make_events(iid, 2, 1))))
    assert len(await b.load_events(iid)) == 2, "the new lease holder could not commit"
