"""Approval gates through the engine with the in-memory ApprovalSystem (the persistent,
cross-process one has its own tests)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

import dagflow
from dagflow import TaskStatus, WorkflowState
from dagflow.testing import FakeClock, RecordingHandler, approve_when_pending

pytestmark = pytest.mark.anyio
APPROVERS = ["alice@example.com", "bob@example.com", "carol@example.com"]


def gate(**extra: Any) -> dict[str, Any]:
    return {"id": "approve", "type": {"type": "Approval", "approvers": APPROVERS,
                                      "timeout_seconds": 86_400, **extra}}


async def run_with(engine: dagflow.Engine, wf: Any, decide: Any) -> Any:
    result: dict[str, Any] = {}

    async def runner() -> None:
        result["inst"] = await engine.run(wf, user_id="dave@example.com")

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await decide(engine)
    return result["inst"]


async def test_grant_opens_the_gate(make_workflow: Any) -> None:
    """A listed approver's grant completes the gate (its data names them and the comment)
    and the deploy after it runs; the instance waited in WaitingApproval."""
    rec = RecordingHandler()
    wf = make_workflow(gate(), {"id": "deploy", "depends_on": ["approve"]},
                       timeout_seconds=172_800)
    async with dagflow.Engine(plugins={"rec": rec}, clock=FakeClock()) as engine:
        inst = await run_with(engine, wf, lambda e: approve_when_pending(
            e, " Alice@Example.com ", comment="ship it"))
        events = [type(e).__name__ async for e in engine.stream_events(inst.id)]
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["approve"].output.data["approvers"] == ["Alice@Example.com"]
    assert inst.task_states["approve"].output.data["comments"] == ["ship it"]
    assert WorkflowState.WAITING_APPROVAL in [t.to_state for t in inst.state_history]
    assert events.index("ApprovalRequired") < events.index("ApprovalGranted")
    assert "WorkflowWaitingApproval" in events


async def test_reject_fails_the_gate(make_workflow: Any) -> None:
    """A rejection fails the gate with the approver and reason; nothing after it runs."""
    rec = RecordingHandler()
    wf = make_workflow(gate(), {"id": "deploy", "depends_on": ["approve"]})
    async with dagflow.Engine(plugins={"rec": rec}, clock=FakeClock()) as engine:
        inst = await run_with(engine, wf, lambda e: approve_when_pending(
            e, "bob@example.com", reject=True, comment="not on a Friday"))
    assert inst.state == WorkflowState.FAILED
    assert "rejected by bob@example.com: not on a Friday" in inst.task_states["approve"].error
    assert "deploy" not in rec.task_ids()


async def test_deadline_cancels_the_workflow_in_fake_time(make_workflow: Any) -> None:
    """With nobody deciding, the 24-hour deadline cancels the workflow with ApprovalTimeout,
    in well under a second of real time."""
    wf = make_workflow(gate(), {"id": "deploy", "depends_on": ["approve"]},
                       timeout_seconds=172_800)
    clock = FakeClock()
    start = time.perf_counter()
    async with dagflow.Engine(plugins={"rec": RecordingHandler()}, clock=clock) as engine:
        inst = await engine.run(wf)
        pending = await engine.approvals.list_pending_approvals()
    assert time.perf_counter() - start < 1.0
    assert inst.state == WorkflowState.CANCELLED
    assert inst.error.startswith("ApprovalTimeout")
    assert (clock.now() - inst.started_at).total_seconds() >= 86_400
    assert pending == []


async def test_on_timeout_reject_fails_instead(make_workflow: Any) -> None:
    """on_timeout: reject turns the deadline into a failed gate (the workflow Fails)."""
    wf = make_workflow(gate(on_timeout="reject"), timeout_seconds=172_800)
    async with dagflow.Engine(clock=FakeClock()) as engine:
        inst = await engine.run(wf)
    assert inst.state == WorkflowState.FAILED
    assert inst.task_states["approve"].state == TaskStatus.FAILED


async def test_auto_approve_passes_at_once(make_workflow: Any) -> None:
    """auto_approve: true approves as 'system' without waiting."""
    wf = make_workflow(gate(auto_approve=True))
    async with dagflow.Engine() as engine:
        inst = await engine.run(wf)
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["approve"].output.data["approvers"] == ["system"]


async def test_engine_auto_approve_setting(make_workflow: Any) -> None:
    """EngineSettings(auto_approve=True) (dagflow run --auto-approve) passes every gate."""
    async with dagflow.Engine(settings=dagflow.EngineSettings(auto_approve=True)) as engine:
        inst = await engine.run(make_workflow(gate()))
    assert inst.state == WorkflowState.COMPLETED


async def test_outsider_is_refused_and_gate_stays_pending(make_workflow: Any) -> None:
    """Someone not in approvers gets an ApprovalError and the gate is unchanged; the run
    creator may not approve their own run; a listed approver then can."""
    wf = make_workflow(gate(), timeout_seconds=172_800)

    async def decide(engine: dagflow.Engine) -> None:
        while not (pending := await engine.approvals.list_pending_approvals()):
            await engine.approvals.wait_for_any_change()
        aid = pending[0].approval_id
        with pytest.raises(dagflow.ApprovalError, match="may not decide"):
            await engine.approvals.grant_approval(aid, "mallory@example.com")
        with pytest.raises(dagflow.ApprovalError, match="may not decide"):
            await engine.approvals.grant_approval(aid, "alice@example.com.evil.org")
        status = await engine.approvals.check_approval_status(aid)
        assert status.state == "Pending"
        await engine.approvals.grant_approval(aid, "carol@example.com")

    async with dagflow.Engine(clock=FakeClock()) as engine:
        inst = await run_with(engine, wf, decide)
    assert inst.state == WorkflowState.COMPLETED


async def test_quorum_needs_distinct_approvers_and_one_veto_wins(make_workflow: Any) -> None:
    """min_approvals 2: a second vote by the same person is refused; a rejection after one
    grant vetoes the gate."""
    wf = make_workflow(gate(min_approvals=2), timeout_seconds=172_800)

    async def decide(engine: dagflow.Engine) -> None:
        while not (pending := await engine.approvals.list_pending_approvals()):
            await engine.approvals.wait_for_any_change()
        aid = pending[0].approval_id
        await engine.approvals.grant_approval(aid, "alice@example.com")
        with pytest.raises(dagflow.ApprovalError, match="already voted"):
            await engine.approvals.grant_approval(aid, "ALICE@example.com")
        assert (await engine.approvals.check_approval_status(aid)).state == "Pending"
        await engine.approvals.reject_approval(aid, "bob@example.com", "change freeze")

    async with dagflow.Engine(clock=FakeClock()) as engine:
        inst = await run_with(engine, wf, decide)
    assert inst.state == WorkflowState.FAILED
    assert "change freeze" in inst.task_states["approve"].error
