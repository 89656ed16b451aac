"""The in-memory ApprovalSystem: gates of this process only, decided in this process."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import anyio
import attrs

from .._clock import SystemClock
from .._errors import ApprovalError
from .._models import ApprovalRequest, ApprovalStatus
from ._rules import apply_vote, identity, may_still_vote, new_approval_id, status_of

__all__ = ["MemoryApprovalSystem"]


@attrs.define(eq=False)
class MemoryApprovalSystem:
    """The default :class:`~dagflow.ApprovalSystem` of a ``memory://`` engine.

    Args:
        clock: Where ``now`` comes from (the engine passes its own).
    """

    clock: object = attrs.Factory(SystemClock)
    _requests: dict[str, ApprovalRequest] = attrs.Factory(dict)
    _changed: dict[str, anyio.Event] = attrs.Factory(dict)
    _any: anyio.Event = attrs.Factory(anyio.Event)

    def __repr__(self) -> str:
        return f"<MemoryApprovalSystem gates={len(self._requests)}>"

    def _now(self) -> dt.datetime:
        return self.clock.now()  # type: ignore[attr-defined, no-any-return]

    async def request_approval(
        self, workflow_id: str, task_id: str, approvers: Sequence[str], timeout_seconds: int,
        *, instance_id: str = "", min_approvals: int = 1, allow_self_approval: bool = False,
        requested_by: str = "",
    ) -> str:
        """Open a gate; return its unguessable id."""
        now = self._now()
        approval_id = new_approval_id()
        self._requests[approval_id] = ApprovalRequest(
            approval_id=approval_id, workflow_id=workflow_id, task_id=task_id,
            requested_at=now, expires_at=now + dt.timedelta(seconds=timeout_seconds),
            approvers=tuple(approvers), instance_id=instance_id, min_approvals=min_approvals,
            context={"requested_by": requested_by,
                     "allow_self_approval": "true" if allow_self_approval else "false"},
        )
        self._changed[approval_id] = anyio.Event()
        self._notify_any()
        return approval_id

    async def grant_approval(self, approval_id: str, approver: str,
                             comment: str | None = None) -> None:
        """Record a grant (ApprovalError if the approver may not, or the gate is closed)."""
        self._vote(approval_id, approver, True, comment)

    async def reject_approval(self, approval_id: str, approver: str, reason: str) -> None:
        """Record a rejection; one rejection vetoes the gate."""
        self._vote(approval_id, approver, False, reason)

    def _vote(self, approval_id: str, approver: str, approved: bool,
              comment: str | None) -> None:
        request = self.get(approval_id)
        self._requests[approval_id] = apply_vote(request, approver=approver, approved=approved,
                                                 comment=comment, now=self._now())
        self._notify(approval_id)

    async def check_approval_status(self, approval_id: str) -> ApprovalStatus:
        """Pending, Approved, Rejected or Expired."""
        return status_of(self.get(approval_id), self._now())

    async def list_pending_approvals(self, approver: str | None = None
                                     ) -> list[ApprovalRequest]:
        """Open gates, oldest first; given ``approver``, those they are listed on and have
        not voted on yet."""
        now = self._now()
        who = identity(approver) if approver else None
        return [r for r in self._requests.values()
                if status_of(r, now).state == "Pending"
                and (who is None or may_still_vote(r, who))]

    async def get_approval(self, approval_id: str) -> ApprovalRequest:
        """The gate with its votes (ApprovalError if unknown)."""
        return self.get(approval_id)

    async def wait_for_change(self, approval_id: str, seen_votes: int) -> None:
        """Return once the gate has more than ``seen_votes`` votes or was cancelled."""
        while True:
            request = self.get(approval_id)
            if len(request.votes) > seen_votes or request.context.get("cancelled") == "true":
                return
            await self._changed[approval_id].wait()

    async def cancel_approval(self, approval_id: str) -> None:
        """Close a gate whose task was cancelled; it no longer counts as pending."""
        request = self._requests.get(approval_id)
        if request is not None:
            self._requests[approval_id] = attrs.evolve(
                request, context={**request.context, "cancelled": "true"})
            self._notify(approval_id)

    def get(self, approval_id: str) -> ApprovalRequest:
        """The gate (ApprovalError if unknown)."""
        try:
            return self._requests[approval_id]
        except KeyError:
            raise ApprovalError(f"no approval has id {approval_id!r}",
                                approval_id=approval_id) from None

    async def list_instance_approvals(self, instance_id: str) -> list[ApprovalRequest]:
        """Every gate an instance opened, oldest first."""
        return [r for r in self._requests.values() if r.instance_id == instance_id]

    async def wait_for_any_change(self) -> None:
        """Return once any gate of this process opens, gets a vote or closes."""
        await self._any.wait()

    def _notify(self, approval_id: str) -> None:
        event = self._changed.get(approval_id)
        if event is not None:
            event.set()
        self._changed[approval_id] = anyio.Event()
        self._notify_any()

    def _notify_any(self) -> None:
        self._any.set()
        self._any = anyio.Event()
