"""``check_approval_system``: the contract of an :class:`~dagflow.ApprovalSystem`, as a kit.

The rules are the contract's (section 7): only a listed approver decides, identities
compared exactly after trimming and case-folding; one vote each; one rejection vetoes;
``min_approvals`` distinct grants approve; the person who started the run may not approve
it unless the gate allows it; nothing after the deadline or after the gate was closed.
Every check makes its own system around a :class:`~dagflow.testing.FakeClock` that moves
only when the kit advances it, and uses addresses of its own, so systems may share a store.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from .._errors import ApprovalError
from .._models import ApprovalRequest
from .._protocols import ApprovalSystem
from ._clock import FakeClock
from ._common import expect_raises, made, named, short

__all__ = ["check_approval_system"]

_HOUR = 3600


async def check_approval_system(
    make: Callable[[FakeClock], Awaitable[ApprovalSystem]]
    | Callable[[FakeClock], ApprovalSystem],
    *,
    wake_within: float = 5.0,
) -> None:
    """Run the :class:`~dagflow.ApprovalSystem` contract against a system factory.

    The checks, in order: ``request_approval`` returns distinct, unguessable ids and
    ``get_approval`` the gate as requested (``ApprovalError`` for an unknown id); a
    listed approver's grant approves, their address trimmed and case-folded; a stranger
    (also one whose address merely starts like a listed one) gets ``ApprovalError`` and
    the gate stays pending; a rejection vetoes, with its reason; ``min_approvals``
    distinct people approve, and a second vote by the same person is refused; the person
    who requested the gate may not approve it unless ``allow_self_approval``; a decision
    after the deadline is refused and the gate is Expired; ``wait_for_change`` returns
    once a vote arrives or the gate is cancelled; ``cancel_approval`` takes no more votes
    and keeps a decision already made; ``list_pending_approvals(approver)`` lists only
    the open gates that person may still decide; ``list_instance_approvals`` lists an
    instance's gates oldest first, open or closed. It stops at the first violation.

    Args:
        make: Given a :class:`~dagflow.testing.FakeClock`, returns a new system (or an
            awaitable of one) that takes ``now`` from it
            (``lambda clock: DefaultApprovalSystem(store, clock=clock)``). The clock
            moves only when the kit advances it; wait for decisions on events, or poll
            in real time, not on the clock. Systems may share a store.
        wake_within: Seconds ``wait_for_change`` may take to return after a vote or a
            cancel (a system that polls its store for decisions made by other processes
            needs its poll interval; the default polls every 0.5 s).

    Raises:
        AssertionError: The system broke the contract; the message names the check and
            what happened (``"check_approval_system: a stranger: grant_approval by
            'mallory...' returned None, expected ApprovalError"``).
    """
    checks: list[tuple[str, Callable[[_Gates], Awaitable[None]]]] = [
        ("ids and get_approval", _check_ids),
        ("a listed approver", _check_grant),
        ("a stranger", _check_stranger),
        ("a rejection", _check_veto),
        ("min_approvals", _check_quorum),
        ("self-approval", _check_self_approval),
        ("the deadline", _check_deadline),
        ("wait_for_change", _check_wait),
        ("cancel_approval", _check_cancel),
        ("list_pending_approvals", _check_pending),
        ("list_instance_approvals", _check_instance_list),
    ]
    for name, check in checks:
        with named("check_approval_system", name):
            clock = FakeClock(autojump=False)
            await check(_Gates(await made(make(clock)), clock, wake_within))


@attrs.define
class _Gates:
    """One check's system and clock, and people of its own."""

    system: ApprovalSystem
    clock: FakeClock
    wake_within: float
    tag: str = attrs.Factory(lambda: uuid.uuid4().hex[:10])
    instance_id: str = attrs.Factory(lambda: f"kit-{uuid.uuid4().hex}")

    def person(self, name: str) -> str:
        """An address as the gate lists it (mixed case)."""
        return f"{name.title()}.{self.tag}@Example.com"

    def voter(self, name: str) -> str:
        """The same person as they type it: other case, spaces around."""
        return f"  {name.lower()}.{self.tag}@EXAMPLE.com "

    async def open(self, *names: str, seconds: int = _HOUR, min_approvals: int = 1,
                   requested_by: str = "", allow_self: bool = False,
                   instance_id: str | None = None) -> str:
        """Request a gate that ``names`` may decide; return its id."""
        approval_id: Any = await self.system.request_approval(
            "kit-workflow", "approve ✓", [self.person(n) for n in names], seconds,
            instance_id=self.instance_id if instance_id is None else instance_id,
            min_approvals=min_approvals, allow_self_approval=allow_self,
            requested_by=requested_by)
        assert isinstance(approval_id, str), \
            f"request_approval returned {short(approval_id)}, not a str"
        return approval_id

    async def state(self, approval_id: str) -> str:
        """The gate's status now."""
        status = await self.system.check_approval_status(approval_id)
        return status.state

    async def expect_state(self, approval_id: str, want: str, after: str) -> None:
        """The gate's status is ``want``."""
        got = await self.state(approval_id)
        assert got == want, f"the gate is {got} {after}, expected {want}"

    async def grant(self, approval_id: str, name: str, comment: str | None = None) -> None:
        """``name`` grants, and must be allowed to."""
        await self.system.grant_approval(approval_id, self.voter(name), comment)

    async def refused(self, approval_id: str, who: str, what: str, *,
                      reject: bool = False) -> None:
        """``who`` (an address) votes, and must get ApprovalError."""
        call = (self.system.reject_approval(approval_id, who, "no") if reject
                else self.system.grant_approval(approval_id, who))
        verb = "reject_approval" if reject else "grant_approval"
        await expect_raises(ApprovalError, f"{verb} by {who.strip()!r} ({what})", call)

    async def votes(self, approval_id: str) -> int:
        """How many votes the gate holds."""
        return len((await self.system.get_approval(approval_id)).votes)


def _identity(person: str) -> str:
    return person.strip().casefold()


def _shared(texts: list[str]) -> int:
    """How many leading characters all of ``texts`` have in common."""
    first = texts[0]
    for n, char in enumerate(first):
        if any(len(t) <= n or t[n] != char for t in texts):
            return n
    return len(first)


# --------------------------------------------------------------------------- checks


async def _check_ids(g: _Gates) -> None:
    """Ids are distinct and unguessable; get_approval returns the gate as requested."""
    ids = [await g.open("alice") for _ in range(20)]
    assert len(set(ids)) == len(ids), f"request_approval returned an id twice: {ids}"
    prefix = _shared(ids)
    suffix = _shared([i[::-1] for i in ids])
    varying = min(len(i) - prefix - suffix for i in ids)
    assert varying >= 16, (
        f"approval ids like {ids[:3]} differ in {varying} characters only: an id is all "
        "it takes to decide a gate, so it must be unguessable (say 128 random bits)")
    approval_id = await g.open("alice", "bob", min_approvals=2, requested_by=g.person("carol"))
    gate = await g.system.get_approval(approval_id)
    assert isinstance(gate, ApprovalRequest), \
        f"get_approval returned {short(gate)}, not an ApprovalRequest"
    now = g.clock.now()
    got = (gate.approval_id, gate.workflow_id, gate.task_id, gate.instance_id,
           [_identity(a) for a in gate.approvers], gate.min_approvals, gate.votes,
           gate.requested_at, gate.expires_at)
    want = (approval_id, "kit-workflow", "approve ✓", g.instance_id,
            [_identity(g.person(n)) for n in ("alice", "bob")], 2, (), now,
            now + dt.timedelta(seconds=_HOUR))
    for field, a, b in zip(("approval_id", "workflow_id", "task_id", "instance_id",
                            "approvers", "min_approvals", "votes", "requested_at",
                            "expires_at"), got, want, strict=True):
        assert a == b, f"get_approval: {field} is {short(a)}, expected {short(b)}"
    await g.expect_state(approval_id, "Pending", "when requested")
    unknown = f"apr_{uuid.uuid4().hex}"
    await expect_raises(ApprovalError, "get_approval of an unknown id",
                        g.system.get_approval(unknown))
    await expect_raises(ApprovalError, "grant_approval of an unknown id",
                        g.system.grant_approval(unknown, g.voter("alice")))
    await expect_raises(ApprovalError, "reject_approval of an unknown id",
                        g.system.reject_approval(unknown, g.voter("alice"), "no"))


async def _check_grant(g: _Gates) -> None:
    """A listed approver's grant, typed in another case with spaces, approves."""
    approval_id = await g.open("alice", "bob")
    await g.grant(approval_id, "alice", "lgtm ✓")
    await g.expect_state(approval_id, "Approved", "after a listed approver granted it")
    votes = (await g.system.get_approval(approval_id)).votes
    assert len(votes) == 1, f"the gate holds {len(votes)} votes after one grant"
    vote = votes[0]
    got = (_identity(vote.approver), vote.approved, vote.at, vote.comment)
    want = (_identity(g.person("alice")), True, g.clock.now(), "lgtm ✓")
    assert got == want, f"the vote recorded is {got}, expected (who, approved, when, " \
                        f"comment) {want}"


async def _check_stranger(g: _Gates) -> None:
    """Anyone not listed is refused, also by prefix or pattern; the gate stays pending."""
    approval_id = await g.open("alice", "bob")
    alice = g.person("alice")
    for who, what in [(g.voter("mallory"), "not listed"),
                      (alice + ".evil.example", "a listed address is a prefix of theirs"),
                      (alice.split("@")[0], "theirs is a prefix of a listed address"),
                      ("*", "a pattern"), ("", "nobody")]:
        await g.refused(approval_id, who, what)
    await g.refused(approval_id, g.voter("mallory"), "not listed", reject=True)
    await g.expect_state(approval_id, "Pending", "after strangers voted")
    assert await g.votes(approval_id) == 0, "a stranger's vote was recorded"


async def _check_veto(g: _Gates) -> None:
    """One rejection vetoes a gate that needs two grants; later votes are refused."""
    approval_id = await g.open("alice", "bob", "carol", min_approvals=2)
    await g.grant(approval_id, "alice")
    await g.expect_state(approval_id, "Pending", "after one of two grants")
    await g.system.reject_approval(approval_id, g.voter("bob"), "not today ✗")
    status = await g.system.check_approval_status(approval_id)
    assert status.state == "Rejected", f"the gate is {status.state} after a rejection"
    assert status.reason == "not today ✗", \
        f"a rejected gate's status gives the reason {status.reason!r}, not the rejection's"
    await g.refused(approval_id, g.voter("carol"), "the gate was rejected")
    await g.expect_state(approval_id, "Rejected", "after a vote on a rejected gate")


async def _check_quorum(g: _Gates) -> None:
    """min_approvals distinct people approve; one person's second vote is refused."""
    approval_id = await g.open("alice", "bob", "carol", min_approvals=2)
    await g.grant(approval_id, "alice")
    await g.expect_state(approval_id, "Pending", "after one of two grants")
    await g.refused(approval_id, g.person("alice"), "a second grant by the same person")
    await g.refused(approval_id, g.voter("alice"), "a second vote by the same person",
                    reject=True)
    await g.expect_state(approval_id, "Pending", "after one person voted twice")
    assert await g.votes(approval_id) == 1, "a second vote by the same person was recorded"
    await g.grant(approval_id, "bob")
    await g.expect_state(approval_id, "Approved", "after two people of two granted it")
    await g.refused(approval_id, g.voter("carol"), "the gate was already approved")


async def _check_self_approval(g: _Gates) -> None:
    """Whoever requested the gate may not approve it, unless the gate allows it."""
    approval_id = await g.open("alice", "bob", requested_by=g.voter("alice"))
    await g.refused(approval_id, g.voter("alice"), "requested the gate themselves")
    await g.expect_state(approval_id, "Pending", "after its requester tried to approve it")
    await g.grant(approval_id, "bob")
    await g.expect_state(approval_id, "Approved", "after another approver granted it")
    allowed = await g.open("alice", "bob", requested_by=g.person("alice"), allow_self=True)
    await g.grant(allowed, "alice")
    await g.expect_state(allowed, "Approved",
                         "after its requester granted it with allow_self_approval")


async def _check_deadline(g: _Gates) -> None:
    """A decision after the deadline is refused, and the gate is Expired."""
    approval_id = await g.open("alice", "bob", seconds=60, min_approvals=2)
    g.clock.advance(30)
    await g.grant(approval_id, "alice")
    g.clock.advance(31)
    await g.refused(approval_id, g.voter("bob"), "after the deadline")
    await g.refused(approval_id, g.voter("bob"), "after the deadline", reject=True)
    await g.expect_state(approval_id, "Expired", "past its deadline")
    pending = {r.approval_id for r in await g.system.list_pending_approvals()}
    assert approval_id not in pending, "list_pending_approvals lists a gate past its deadline"


async def _check_wait(g: _Gates) -> None:
    """wait_for_change returns once a vote arrives, at once if one has, and on cancel."""
    approval_id = await g.open("alice", "bob", min_approvals=2)

    async def vote() -> None:
        await g.grant(approval_id, "alice")

    async def cancel() -> None:
        await g.system.cancel_approval(approval_id)

    for seen, act in ((0, vote), (1, cancel)):
        returned = anyio.Event()

        async def waiter(seen: int = seen, returned: anyio.Event = returned) -> None:
            await g.system.wait_for_change(approval_id, seen)
            returned.set()

        what = "a vote" if seen == 0 else "cancel_approval"
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            for _ in range(20):  # let the waiter start waiting
                await anyio.lowlevel.checkpoint()
            assert not returned.is_set(), \
                f"wait_for_change(seen_votes={seen}) returned before {what}"
            await act()
            with anyio.move_on_after(g.wake_within):
                await returned.wait()
            tg.cancel_scope.cancel()
        assert returned.is_set(), \
            f"wait_for_change did not return within {g.wake_within:g} s of {what}"
    with anyio.move_on_after(g.wake_within) as scope:
        await g.system.wait_for_change(approval_id, 0)  # it has a vote already
    assert not scope.cancelled_caught, \
        "wait_for_change(seen_votes=0) of a gate with a vote did not return at once"


async def _check_cancel(g: _Gates) -> None:
    """A cancelled gate takes no more votes and keeps the decision it had."""
    open_, approved, rejected = [await g.open("alice", "bob") for _ in range(3)]
    await g.grant(approved, "alice")
    await g.system.reject_approval(rejected, g.voter("alice"), "no")
    for approval_id in (open_, approved, rejected):
        await g.system.cancel_approval(approval_id)
        await g.refused(approval_id, g.voter("bob"), "the gate was cancelled")
    state = await g.state(open_)
    assert state not in ("Pending", "Approved"), \
        f"an undecided gate is {state} after cancel_approval"
    pending = {r.approval_id for r in await g.system.list_pending_approvals()}
    assert open_ not in pending, "list_pending_approvals lists a cancelled gate"
    await g.expect_state(approved, "Approved", "after cancel_approval (it was approved)")
    await g.expect_state(rejected, "Rejected", "after cancel_approval (it was rejected)")


async def _check_pending(g: _Gates) -> None:
    """Pending gates: all open ones, or those one person may still decide."""
    mine = await g.open("alice", "bob")
    others = await g.open("carol")
    decided = await g.open("alice")
    await g.grant(decided, "alice")
    voted = await g.open("alice", "bob", min_approvals=2)
    await g.grant(voted, "alice")
    expired = await g.open("alice", seconds=60)
    closed = await g.open("alice")
    await g.system.cancel_approval(closed)
    g.clock.advance(61)
    ours = {mine, others, decided, voted, expired, closed}
    names = {mine: "open, alice listed", others: "open, alice not listed",
             decided: "approved", voted: "alice voted", expired: "expired",
             closed: "cancelled"}
    for who, want in [(None, {mine, others, voted}), (g.voter("alice"), {mine}),
                      (g.voter("bob"), {mine, voted}), (g.voter("mallory"), set())]:
        listed = await g.system.list_pending_approvals(who)
        assert all(isinstance(r, ApprovalRequest) for r in listed), \
            f"list_pending_approvals returned {short(listed)}, not ApprovalRequests"
        got = {r.approval_id for r in listed} & ours
        assert got == want, (
            f"list_pending_approvals({who.strip() if who else None!r}) lists "
            f"{sorted(names[i] for i in got)}, expected {sorted(names[i] for i in want)}")


async def _check_instance_list(g: _Gates) -> None:
    """An instance's gates, open or closed, oldest first; no other instance's."""
    first = await g.open("alice")
    g.clock.advance(1)
    await g.open("alice", instance_id=f"kit-{uuid.uuid4().hex}")
    g.clock.advance(1)
    second = await g.open("alice")
    g.clock.advance(1)
    third = await g.open("alice")
    await g.grant(second, "alice")
    await g.system.cancel_approval(third)
    listed = [r.approval_id for r in await g.system.list_instance_approvals(g.instance_id)]
    assert listed == [first, second, third], (
        f"list_instance_approvals lists {listed}, expected the instance's three gates "
        f"oldest first {[first, second, third]}")
    assert await g.system.list_instance_approvals(f"kit-{uuid.uuid4().hex}") == [], \
        "list_instance_approvals of an instance without gates is not []"
