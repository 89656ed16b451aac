"""The rules of an approval gate, as pure functions over :class:`ApprovalRequest`.

Identities are compared exactly after trimming spaces and case-folding. Only a listed
approver may vote, once; one rejection vetoes; ``min_approvals`` distinct grants open the
gate; the person who started the run may not approve it unless the gate allows it; a vote
after the deadline is refused. Every store-backed ApprovalSystem applies these same rules.
"""

from __future__ import annotations

import datetime as dt
import secrets

import attrs

from .._errors import ApprovalError
from .._models import ApprovalRequest, ApprovalStatus, ApprovalVote

__all__ = ["apply_vote", "identity", "may_still_vote", "new_approval_id", "status_of"]


def identity(person: str) -> str:
    """The comparable form of an address: trimmed and case-folded."""
    return person.strip().casefold()


def new_approval_id() -> str:
    """An unguessable id (128 random bits), safe in URLs and shells."""
    return "apr_" + secrets.token_urlsafe(16)


def status_of(request: ApprovalRequest, now: dt.datetime) -> ApprovalStatus:
    """Pending, Approved, Rejected or Expired, from the votes and the deadline."""
    grants = [v for v in request.votes if v.approved]
    for vote in request.votes:
        if not vote.approved:
            return ApprovalStatus("Rejected", approver=vote.approver, reason=vote.comment,
                                  at=vote.at)
    if len({identity(v.approver) for v in grants}) >= request.min_approvals:
        last = grants[-1]
        return ApprovalStatus("Approved", approver=last.approver, at=last.at)
    if request.context.get("cancelled") == "true":
        return ApprovalStatus("Expired", reason="cancelled", at=request.expires_at)
    if now >= request.expires_at:
        return ApprovalStatus("Expired", at=request.expires_at)
    return ApprovalStatus("Pending")


def may_still_vote(request: ApprovalRequest, who: str) -> bool:
    """Whether the person ``who`` (an identity) is listed on the gate and has not voted
    yet. The person who started the run counts: they may still reject it."""
    return (who in {identity(a) for a in request.approvers}
            and all(identity(v.approver) != who for v in request.votes))


def apply_vote(request: ApprovalRequest, *, approver: str, approved: bool,
               comment: str | None, now: dt.datetime) -> ApprovalRequest:
    """``request`` with one more vote.

    Raises:
        ApprovalError: The voter is not a listed approver, already voted, started the run
            (without ``allow_self_approval``), or the gate is no longer pending.
    """
    who = identity(approver)
    state = status_of(request, now)
    aid = request.approval_id
    if state.state == "Expired":
        raise ApprovalError(f"approval {aid} is no longer open: its deadline "
                            f"{request.expires_at.isoformat()} has passed", approval_id=aid)
    if state.state != "Pending":
        raise ApprovalError(f"approval {aid} is already {state.state.lower()}",
                            approval_id=aid)
    allowed = {identity(a) for a in request.approvers}
    if who not in allowed:
        raise ApprovalError(
            f"{approver.strip()!r} may not decide approval {aid}: only "
            f"{', '.join(sorted(allowed))} may", approval_id=aid)
    if any(identity(v.approver) == who for v in request.votes):
        raise ApprovalError(f"{approver.strip()!r} has already voted on approval {aid}",
                            approval_id=aid)
    requester = identity(request.context.get("requested_by", ""))
    if (approved and requester and who == requester
            and request.context.get("allow_self_approval") != "true"):
        raise ApprovalError(
            f"{approver.strip()!r} started this run and may not approve it "
            "(set allow_self_approval: true on the gate to allow it)", approval_id=aid)
    vote = ApprovalVote(approver.strip(), approved, now, comment)
    return attrs.evolve(request, votes=(*request.votes, vote))
