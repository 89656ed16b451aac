"""Kits for the smaller storage parts: :class:`~dagflow.CheckpointStore`,
:class:`~dagflow.LeaseStore`, :class:`~dagflow.ApprovalStore` and
:class:`~dagflow.ControlStore`.

Each runs the part's own checks; :func:`~dagflow.testing.check_storage` runs them all on
a whole store, plus what only a whole store does (fencing, deleting everything of an
instance). Where the store given keeps instances too, the kits store the instances they
talk about first.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable

import anyio
import attrs

from .._errors import ApprovalError
from .._models import ApprovalRequest, ApprovalVote, WorkflowInstance
from .._protocols import ApprovalStore, CheckpointStore, ControlStore, LeaseStore
from ._common import StoreCheck, StoreRun, checkpoint_ids, known, run_store_checks, same
from ._values import UNICODE, make_checkpoint, make_gate, make_instance, new_id, utcnow

__all__ = ["APPROVAL_CHECKS", "CHECKPOINT_CHECKS", "CONTROL_CHECKS", "LEASE_CHECKS",
           "check_approval_store", "check_checkpoint_store", "check_control_store",
           "check_lease_store", "unicode_checkpoint", "unicode_control",
           "unknown_checkpoint_ids", "unknown_control_ids"]


async def check_checkpoint_store(make: Callable[[], Awaitable[CheckpointStore]]
                                 | Callable[[], CheckpointStore]) -> None:
    """Run the :class:`~dagflow.CheckpointStore` contract against a store factory.

    The checks: unknown ids (``None``, ``[]``); save, load, list (oldest first) and
    delete, and pruning to ``store.keep_checkpoints`` if the store has that attribute;
    Unicode in every field. It stops at the first violation.

    Args:
        make: Returns a new store (or an awaitable of one) each time it is called; the
            kit closes each if it has a ``close`` method. Stores may share a database.

    Raises:
        AssertionError: The store broke the contract; the message names the check and
            what differed (``"check_checkpoint_store: checkpoints: ..."``).
    """
    await run_store_checks("check_checkpoint_store", [
        ("unknown ids", _check_unknown_checkpoints), *CHECKPOINT_CHECKS,
        ("unicode", _check_unicode_checkpoint)], make)


async def check_lease_store(make: Callable[[], Awaitable[LeaseStore]]
                            | Callable[[], LeaseStore]) -> None:
    """Run the :class:`~dagflow.LeaseStore` contract against a store factory.

    The checks: a lease is exclusive while unexpired, renewable by its holder, released
    only by its holder, taken over once expired, and never renewed by an owner that lost
    it (even after the new holder released it). Expiry is real time: the kit waits for a
    0.2 s lease to run out. Fencing (commits of an owner that lost the lease fail) needs
    the instance part too: :func:`~dagflow.testing.check_storage` checks it.

    Args:
        make: Returns a new store (or an awaitable of one) each time it is called; the
            kit closes each if it has a ``close`` method. Stores may share a database.

    Raises:
        AssertionError: The store broke the contract; the message names the check and
            what differed (``"check_lease_store: leases: ..."``).
    """
    await run_store_checks("check_lease_store", LEASE_CHECKS, make)


async def check_approval_store(make: Callable[[], Awaitable[ApprovalStore]]
                               | Callable[[], ApprovalStore]) -> None:
    """Run the :class:`~dagflow.ApprovalStore` contract against a store factory.

    The checks: gates round-trip with their votes; ``update_approval`` applies a change
    and returns the new gate, changes nothing when the change raises (and lets its error
    through), and raises :class:`~dagflow.ApprovalError` for an unknown id; the status
    it sets is what ``list_approvals`` filters on; gates are listed earliest deadline
    first, by instance. The rules of voting are the ApprovalSystem's
    (:func:`~dagflow.testing.check_approval_system`).

    Args:
        make: Returns a new store (or an awaitable of one) each time it is called; the
            kit closes each if it has a ``close`` method. Stores may share a database.

    Raises:
        AssertionError: The store broke the contract; the message names the check and
            what differed (``"check_approval_store: approval gates: ..."``).
    """
    await run_store_checks("check_approval_store", APPROVAL_CHECKS, make)


async def check_control_store(make: Callable[[], Awaitable[ControlStore]]
                              | Callable[[], ControlStore]) -> None:
    """Run the :class:`~dagflow.ControlStore` contract against a store factory.

    The checks: an instance without requests has none; requests come back oldest first,
    once, each instance its own; any text round trips as a reason.

    Args:
        make: Returns a new store (or an awaitable of one) each time it is called; the
            kit closes each if it has a ``close`` method. Stores may share a database.

    Raises:
        AssertionError: The store broke the contract; the message names the check and
            what differed (``"check_control_store: controls: ..."``).
    """
    await run_store_checks("check_control_store", [
        ("unknown ids", _check_unknown_controls), *CONTROL_CHECKS,
        ("unicode", _check_unicode_control)], make)


# --------------------------------------------------------------------------- checkpoints


async def unknown_checkpoint_ids(store: CheckpointStore) -> None:
    """An unknown checkpoint id loads as ``None``; an unknown instance has none."""
    assert await store.load_checkpoint(f"cp_{uuid.uuid4().hex}") is None, \
        "load_checkpoint of an unknown id did not return None"
    assert await store.list_checkpoints(new_id()) == [], \
        "list_checkpoints of an unknown instance is not []"


async def _check_unknown_checkpoints(run: StoreRun) -> None:
    await unknown_checkpoint_ids(await run.new())


async def unicode_checkpoint(store: CheckpointStore, instance: WorkflowInstance) -> None:
    """A checkpoint of ``instance`` with Unicode in its checksum loads back equal."""
    checkpoint = make_checkpoint(instance, utcnow(), UNICODE)
    await store.save_checkpoint(checkpoint)
    same("a Unicode checkpoint", await store.load_checkpoint(checkpoint.id), checkpoint)


async def _check_unicode_checkpoint(run: StoreRun) -> None:
    store = await run.new()
    instance = make_instance(text=UNICODE)
    await known(store, instance)
    await unicode_checkpoint(store, instance)


async def _check_checkpoints(run: StoreRun) -> None:
    """save/load/list (oldest first)/delete, and pruning to keep_checkpoints."""
    store = await run.new()
    instance, other = make_instance(), make_instance()
    await known(store, instance, other)
    t0 = utcnow()
    saved = [make_checkpoint(instance, t0 + dt.timedelta(seconds=i)) for i in range(3)]
    for checkpoint in saved:
        await store.save_checkpoint(checkpoint)
    await store.save_checkpoint(make_checkpoint(other, t0))
    for checkpoint in saved:
        same("load_checkpoint", await store.load_checkpoint(checkpoint.id), checkpoint)
    same("list_checkpoints (oldest first)", await store.list_checkpoints(instance.id), saved)
    await store.delete_checkpoint(saved[1].id)
    assert await store.load_checkpoint(saved[1].id) is None, \
        "load_checkpoint finds a deleted checkpoint"
    same("list_checkpoints after delete_checkpoint",
         await store.list_checkpoints(instance.id), [saved[0], saved[2]])
    await store.delete_checkpoint(saved[1].id)  # deleting twice is not an error
    assert len(await store.list_checkpoints(other.id)) == 1, \
        "deleting one instance's checkpoint touched another instance's"
    keep = getattr(store, "keep_checkpoints", None)
    if isinstance(keep, int) and 0 < keep <= 100:
        many = [make_checkpoint(instance, t0 + dt.timedelta(seconds=10 + i))
                for i in range(keep + 2)]
        for checkpoint in many:
            await store.save_checkpoint(checkpoint)
        same(f"list_checkpoints after saving {keep + 2} (keep_checkpoints={keep})",
             checkpoint_ids(await store.list_checkpoints(instance.id)),
             checkpoint_ids(many[-keep:]))
        assert len(await store.list_checkpoints(other.id)) == 1, \
            "pruning one instance's checkpoints removed another instance's"


# --------------------------------------------------------------------------- leases


async def _check_leases(run: StoreRun) -> None:
    """Leases: exclusive while unexpired, renewable, taken over after expiry."""
    store = await run.new()
    instance = make_instance(full=False)
    await known(store, instance)
    iid = instance.id
    owner, _ = await store.lease_of(iid)
    assert owner is None, f"a new instance has a lease held by {owner!r}"
    before = utcnow().timestamp()
    assert await store.acquire_lease(iid, "A", 30.0), "acquire_lease of a free lease failed"
    owner, until = await store.lease_of(iid)
    assert owner == "A", f"lease_of names {owner!r} after A acquired it"
    assert before + 25 <= until <= utcnow().timestamp() + 35, \
        f"lease_of: a 30 s lease expires at {until}, {until - before:.1f} s from now"
    assert not await store.acquire_lease(iid, "B", 30.0), \
        "B acquired a lease A holds (unexpired)"
    assert (await store.lease_of(iid))[0] == "A", "a refused acquire_lease changed the holder"
    assert await store.acquire_lease(iid, "A", 0.2), "A could not renew its own lease"
    await store.release_lease(iid, "B")  # not B's to release
    assert (await store.lease_of(iid))[0] == "A", "release_lease by a non-holder released it"
    await anyio.sleep(0.3)
    assert await store.acquire_lease(iid, "B", 30.0), "B could not take an expired lease"
    assert (await store.lease_of(iid))[0] == "B", "lease_of does not name the new holder"
    assert not await store.renew_lease(iid, "A", 30.0), \
        "A renewed a lease B has taken over"
    assert await store.renew_lease(iid, "B", 30.0), "B could not renew the lease it holds"
    assert not await store.acquire_lease(iid, "A", 30.0), \
        "A took the lease back while B's is unexpired"
    await store.release_lease(iid, "B")
    owner, _ = await store.lease_of(iid)
    assert owner is None, f"lease_of names {owner!r} after the lease was released"
    assert not await store.renew_lease(iid, "A", 30.0), \
        "A renewed a lease it lost, after its new holder released it"
    assert await store.acquire_lease(iid, "A", 30.0), "acquire_lease after release failed"


# --------------------------------------------------------------------------- controls


async def _check_controls(run: StoreRun) -> None:
    """Control requests come back oldest first, once."""
    store = await run.new()
    instance, other = make_instance(full=False), make_instance(full=False)
    await known(store, instance, other)
    assert await store.take_controls(instance.id) == [], "a new instance has control requests"
    assert not {instance.id, other.id} & await store.pending_controls(), \
        "pending_controls names an instance nobody asked anything of"
    asked = [("pause", "for the weekend"), ("resume", ""), ("cancel", "superseded ✗")]
    for action, reason in asked:
        await store.request_control(instance.id, action, reason)
    await store.request_control(other.id, "cancel", "other")
    pending = await store.pending_controls()
    assert {instance.id, other.id} <= pending, \
        f"pending_controls {sorted(pending)} misses an instance with requests"
    same("take_controls (oldest first)", await store.take_controls(instance.id), asked)
    same("take_controls a second time", await store.take_controls(instance.id), [])
    assert instance.id not in await store.pending_controls(), \
        "pending_controls still names an instance whose requests were taken"
    same("take_controls of another instance", await store.take_controls(other.id),
         [("cancel", "other")])


async def unknown_control_ids(store: ControlStore) -> None:
    """An instance nobody asked anything of has no control requests."""
    assert await store.take_controls(new_id()) == [], \
        "take_controls of an unknown instance is not []"


async def _check_unknown_controls(run: StoreRun) -> None:
    await unknown_control_ids(await run.new())


async def unicode_control(store: ControlStore, instance_id: str) -> None:
    """Any text round trips as a control request's reason."""
    await store.request_control(instance_id, "cancel", UNICODE)
    same("a Unicode control reason", await store.take_controls(instance_id),
         [("cancel", UNICODE)])


async def _check_unicode_control(run: StoreRun) -> None:
    store = await run.new()
    instance = make_instance(full=False)
    await known(store, instance)
    await unicode_control(store, instance.id)


# --------------------------------------------------------------------------- approval gates


async def _check_approvals(run: StoreRun) -> None:
    """Gates round-trip with their votes; update_approval is atomic (a refused change
    changes nothing) and sets the state list_approvals filters on; deadlines order them."""
    store = await run.new()
    instance_id = f"kit-{uuid.uuid4().hex}"
    later, sooner = make_gate(instance_id, 48), make_gate(instance_id, 2)
    assert await store.load_approval(later.approval_id) is None, "a gate before it was saved"
    await store.save_approval(later)
    await store.save_approval(sooner)
    same("load_approval", await store.load_approval(later.approval_id), later)
    mine = await store.list_approvals(state="Pending", instance_id=instance_id)
    same("list_approvals (earliest deadline first)", [g.approval_id for g in mine],
         [sooner.approval_id, later.approval_id])

    vote = ApprovalVote("alice@example.com", True, utcnow(), "lgtm ✓")

    def grant(gate: ApprovalRequest) -> tuple[ApprovalRequest, str]:
        return attrs.evolve(gate, votes=(*gate.votes, vote)), "Pending"

    updated = await store.update_approval(later.approval_id, grant)
    same("update_approval's result", updated.votes, (vote,))
    same("the gate after update_approval",
         await store.load_approval(later.approval_id), updated)

    def refuse(gate: ApprovalRequest) -> tuple[ApprovalRequest, str]:
        raise ApprovalError("refused by the rules", approval_id=gate.approval_id)

    try:
        await store.update_approval(later.approval_id, refuse)
    except ApprovalError:
        pass
    else:
        raise AssertionError("update_approval swallowed the error its change raised")
    same("the gate after a refused change", await store.load_approval(later.approval_id),
         updated)
    try:
        await store.update_approval(f"apr_{uuid.uuid4().hex}", grant)
    except ApprovalError:
        pass
    else:
        raise AssertionError("update_approval of an unknown id did not raise ApprovalError")

    def decide(gate: ApprovalRequest) -> tuple[ApprovalRequest, str]:
        return gate, "Approved"

    await store.update_approval(sooner.approval_id, decide)
    pending = await store.list_approvals(state="Pending", instance_id=instance_id)
    same("Pending gates after one was decided", [g.approval_id for g in pending],
         [later.approval_id])
    approved = await store.list_approvals(state="Approved", instance_id=instance_id)
    same("Approved gates", [g.approval_id for g in approved], [sooner.approval_id])
    every = await store.list_approvals(state=None, instance_id=instance_id)
    same("all gates of the instance", sorted(g.approval_id for g in every),
         sorted([sooner.approval_id, later.approval_id]))
    other = await store.list_approvals(state=None, instance_id=f"kit-{uuid.uuid4().hex}")
    same("gates of an instance that has none", other, [])


CHECKPOINT_CHECKS: list[tuple[str, StoreCheck]] = [("checkpoints", _check_checkpoints)]
LEASE_CHECKS: list[tuple[str, StoreCheck]] = [("leases", _check_leases)]
CONTROL_CHECKS: list[tuple[str, StoreCheck]] = [("controls", _check_controls)]
APPROVAL_CHECKS: list[tuple[str, StoreCheck]] = [("approval gates", _check_approvals)]
