"""``dagflow approvals``, ``approve`` and ``reject``: decide gates from any terminal.

A decision is written to the store; the process running the workflow notices it within
``approval_poll_seconds`` (half a second) and carries on.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click

from .._errors import ApprovalError, StorageError
from ._common import Store, fail, open_store, run_async

__all__ = ["register"]

T = TypeVar("T")

_STORE_HELP = ("Where instances live (default: $DAGFLOW_STORE, else "
               "sqlite:///.dagflow/dagflow.db).")


_JSON_HELP = ("Print the gate after the vote as JSON: its state (Pending, Approved, "
              "Rejected), approvers, min_approvals and votes.")


def _run(work: Callable[[Any], Awaitable[T]], store: Store) -> T:
    """Run ``work(system)`` with the store opened for this command, closing it after.

    A refusal (an unknown id, a vote the gate does not take, a bad store URL) exits 2.
    """
    async def main() -> T:
        from .._approval.store import DefaultApprovalSystem

        opened = open_store(store)
        system = DefaultApprovalSystem(opened)
        try:
            return await work(system)
        finally:
            with anyio.CancelScope(shield=True):
                await opened.close()

    try:
        return run_async(main)
    except (ApprovalError, StorageError) as exc:
        fail(str(exc))


def _left(expires_at: dt.datetime) -> str:
    """The time left until ``expires_at``: ``1h05m left``, ``4m30s left`` or ``expired``."""
    seconds = (expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m left" if hours else f"{rest // 60}m{rest % 60:02d}s left"


@click.command()
@click.option("--approver", metavar="EMAIL", help="Only gates this person may decide.")
@click.option("--store", metavar="URL", help=_STORE_HELP)
@click.option("--json", "as_json", is_flag=True,
              help="Print the gates as a JSON list (approval_id, instance_id, task_id, "
                   "approvers, expires_at, votes ...).")
def approvals(approver: str | None, store: str | None, as_json: bool) -> None:
    """List the approval gates waiting for a decision, earliest deadline first.

    \b
    Examples:
      dagflow approvals
      dagflow approvals --approver alice@example.com
      dagflow approvals --json | jq -r '.[].approval_id'
    """
    from .._serde import make_converter

    where = Store.of(store)
    if where.missing_file() is not None:  # nothing to list, and nothing to create
        click.echo("[]" if as_json else f"no approval is waiting (no store yet: {where.url})")
        return

    async def work(system: Any) -> list[Any]:
        return await system.list_pending_approvals(approver)  # type: ignore[no-any-return]

    pending = _run(work, where)
    if as_json:
        converter = make_converter()
        click.echo(json.dumps([converter.unstructure(r) for r in pending], indent=2))
        return
    if not pending:
        click.echo("no approval is waiting" + (f" for {approver}" if approver else ""))
        return
    for request in pending:
        granted = sum(1 for v in request.votes if v.approved)
        click.echo(f"{request.approval_id}  {request.workflow_id}/{request.task_id}  "
                   f"instance {request.instance_id}")
        click.echo(f"    approvers: {', '.join(request.approvers)}  "
                   f"({granted} of {request.min_approvals} granted)  "
                   f"{_left(request.expires_at)}")
        click.echo(f"    dagflow approve {request.approval_id} --as EMAIL")


@click.command()
@click.argument("approval_id")
@click.option("--as", "approver", required=True, metavar="EMAIL",
              help="Who approves: must be one of the gate's approvers.")
@click.option("--comment", help="Recorded with the vote.")
@click.option("--store", metavar="URL", help=_STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def approve(approval_id: str, approver: str, comment: str | None, store: str | None,
            as_json: bool) -> None:
    """Grant APPROVAL_ID as EMAIL.

    Only an address listed in the gate's approvers may grant, once; the person who started
    the run may not approve it unless the gate allows it. With min_approvals > 1 the gate
    opens when enough different approvers have granted.

    \b
    Examples:
      dagflow approve apr_3Xb... --as alice@example.com
      dagflow approve apr_3Xb... --as alice@example.com --comment "canary looks good"
    """
    async def work(system: Any) -> Any:
        await system.grant_approval(approval_id, approver, comment)
        return await _decided(system, approval_id)

    status, request = _run(work, Store.of(store))
    gate = f"gate {request.task_id!r} of {request.workflow_id}"
    if as_json:
        _print_gate(status, request)
    elif status.state == "Approved":
        click.echo(f"approved: {gate} is open; the workflow continues")
    else:
        granted = sum(1 for v in request.votes if v.approved)
        click.echo(f"granted as {approver.strip()}: {gate} has {granted} of the "
                   f"{request.min_approvals} approvals it needs")


@click.command()
@click.argument("approval_id")
@click.option("--as", "approver", required=True, metavar="EMAIL",
              help="Who rejects: must be one of the gate's approvers.")
@click.option("--reason", required=True, help="Why (recorded, and shown in the run).")
@click.option("--store", metavar="URL", help=_STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def reject(approval_id: str, approver: str, reason: str, store: str | None,
           as_json: bool) -> None:
    """Reject APPROVAL_ID as EMAIL: one rejection fails the gate.

    \b
    Example:
      dagflow reject apr_3Xb... --as bob@example.com --reason "change freeze"
    """
    async def work(system: Any) -> Any:
        await system.reject_approval(approval_id, approver, reason)
        return await _decided(system, approval_id)

    status, request = _run(work, Store.of(store))
    if as_json:
        _print_gate(status, request)
    else:
        click.echo(f"rejected: gate {request.task_id!r} of {request.workflow_id}, by "
                   f"{approver.strip()}; the task fails")


async def _decided(system: Any, approval_id: str) -> tuple[Any, Any]:
    """The gate's status and the gate with its votes, after a vote."""
    return (await system.check_approval_status(approval_id),
            await system.get_approval(approval_id))


def _print_gate(status: Any, request: Any) -> None:
    """The gate with its votes and its state, as JSON (``--json``)."""
    from .._serde import make_converter

    converter = make_converter()
    click.echo(json.dumps({**converter.unstructure(request), "state": status.state},
                          indent=2))


def register(group: click.Group) -> None:
    """Add the approval commands to ``group``."""
    for command in (approvals, approve, reject):
        group.add_command(command)
