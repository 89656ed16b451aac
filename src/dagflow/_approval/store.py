"""The default ApprovalSystem: gates kept in the engine's store, so that a person in
another terminal, process or web request can decide them, and so that they survive a
restart with their deadline.

Every decision is one transaction that reads the gate, applies the rules of
:mod:`dagflow._approval._rules` and writes it back, so votes from several processes never
overwrite each other. A process waiting at a gate hears about decisions made through the
same ApprovalSystem object at once, and polls the store for decisions made elsewhere
(``EngineSettings.approval_poll_seconds``, 0.5 s by default).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import anyio
import attrs

from .._clock import Clock, SystemClock
from .._errors import ApprovalError
from .._models import ApprovalRequest, ApprovalStatus
from .._protocols import ApprovalStore
from ._rules import apply_vote, identity, may_still_vote, new_approval_id, status_of

__all__ = ["DefaultApprovalSystem"]


@attrs.define(eq=False)
class DefaultApprovalSystem:
    """The default :class:`~dagflow.ApprovalSystem`, over a store's approval part.

    Subclass it to change one method (say, to tell a chat channel in
    :meth:`request_approval`) and pass it as ``Engine(approvals=...)``.

    Args:
        store: Where gates live (any :class:`~dagflow.ApprovalStore`; every dagflow store
            is one).
        clock: Where ``now`` comes from: deadlines and the time of each vote.
        poll_seconds: How often a waiting gate looks for decisions made elsewhere.
    """

    store: ApprovalStore
    clock: Clock = attrs.field(factory=SystemClock, kw_only=True)
    poll_seconds: float = attrs.field(default=0.5, kw_only=True)
    _changed: dict[str, anyio.Event] = attrs.Factory(dict)
    _any: anyio.Event = attrs.Factory(anyio.Event)

    def __repr__(self) -> str:
        return f"<DefaultApprovalSystem store={type(self.store).__name__}>"

    def _now(self) -> dt.datetime:
        now: dt.datetime = self.clock.now()
        return now

    async def request_approval(
        self, workflow_id: str, task_id: str, approvers: Sequence[str], timeout_seconds: int,
        *, instance_id: str = "", min_approvals: int = 1, allow_self_approval: bool = False,
        requested_by: str = "",
    ) -> str:
        """Open a gate that expires ``timeout_seconds`` from now; return its unguessable id."""
        now = self._now()
        request = ApprovalRequest(
            approval_id=new_approval_id(), workflow_id=workflow_id, task_id=task_id,
            requested_at=now, expires_at=now + dt.timedelta(seconds=timeout_seconds),
            approvers=tuple(approvers), instance_id=instance_id, min_approvals=min_approvals,
            context={"requested_by": requested_by,
                     "allow_self_approval": "true" if allow_self_approval else "false"})
        with self.clock.busy():
            await self.store.save_approval(request)
        self._notify(request.approval_id)
        return request.approval_id

    async def grant_approval(self, approval_id: str, approver: str,
                             comment: str | None = None) -> None:
        """Record a grant.

        Raises:
            ApprovalError: The person may not decide this gate, already voted, or the gate
                is no longer open (decided, cancelled or past its deadline).
        """
        await self._vote(approval_id, approver, True, comment)

    async def reject_approval(self, approval_id: str, approver: str, reason: str) -> None:
        """Record a rejection (one vetoes the gate); errors as :meth:`grant_approval`."""
        await self._vote(approval_id, approver, False, reason)

    async def _vote(self, approval_id: str, approver: str, approved: bool,
                    comment: str | None) -> None:
        now = self._now()

        def change(request: ApprovalRequest) -> tuple[ApprovalRequest, str]:
            updated = apply_vote(request, approver=approver, approved=approved,
                                 comment=comment, now=now)
            return updated, status_of(updated, now).state

        with self.clock.busy():
            await self.store.update_approval(approval_id, change)
        self._notify(approval_id)

    async def check_approval_status(self, approval_id: str) -> ApprovalStatus:
        """Pending, Approved, Rejected or Expired (the deadline counts by the clock)."""
        return status_of(await self.get_approval(approval_id), self._now())

    async def list_pending_approvals(self, approver: str | None = None
                                     ) -> list[ApprovalRequest]:
        """Open gates, earliest deadline first; given ``approver``, those they are listed on
        and have not voted on yet."""
        now = self._now()
        who = identity(approver) if approver else None
        with self.clock.busy():
            stored = await self.store.list_approvals(state="Pending")
        return [r for r in stored
                if status_of(r, now).state == "Pending"
                and (who is None or may_still_vote(r, who))]

    async def get_approval(self, approval_id: str) -> ApprovalRequest:
        """The gate with its votes.

        Raises:
            ApprovalError: No gate has this id.
        """
        with self.clock.busy():
            request = await self.store.load_approval(approval_id)
        if request is None:
            raise ApprovalError(f"no approval has id {approval_id!r} (dagflow approvals "
                                "lists the open ones)", approval_id=approval_id)
        return request

    async def wait_for_change(self, approval_id: str, seen_votes: int) -> None:
        """Return once the gate has more than ``seen_votes`` votes or was cancelled,
        whichever process made the change."""
        while True:
            request = await self.get_approval(approval_id)
            if len(request.votes) > seen_votes or request.context.get("cancelled") == "true":
                return
            event = self._changed.setdefault(approval_id, anyio.Event())
            with anyio.move_on_after(self.poll_seconds):  # real time: it polls a database
                await event.wait()

    async def cancel_approval(self, approval_id: str) -> None:
        """Close a gate (its task was cancelled, or consumed the decision): no more votes,
        and a decision already made stays."""
        now = self._now()

        def change(request: ApprovalRequest) -> tuple[ApprovalRequest, str]:
            decided = status_of(request, now).state
            updated = attrs.evolve(request, context={**request.context, "cancelled": "true"})
            return updated, decided if decided in ("Approved", "Rejected") else "Closed"

        try:
            with self.clock.busy():
                await self.store.update_approval(approval_id, change)
        except ApprovalError:
            return
        self._notify(approval_id)

    async def list_instance_approvals(self, instance_id: str) -> list[ApprovalRequest]:
        """Every gate an instance opened, oldest first."""
        with self.clock.busy():
            found: list[ApprovalRequest] = await self.store.list_approvals(
                state=None, instance_id=instance_id)
        return sorted(found, key=lambda r: (r.requested_at, r.approval_id))

    async def wait_for_any_change(self) -> None:
        """Return once a gate is opened, decided or closed through this object."""
        await self._any.wait()

    def _notify(self, approval_id: str) -> None:
        event = self._changed.pop(approval_id, None)
        if event is not None:
            event.set()
        self._any.set()
        self._any = anyio.Event()

