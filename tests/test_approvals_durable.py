"""Approval gates kept in the store: decided from other processes, authorised, surviving a
SIGKILL with their deadline, on SQLite and PostgreSQL (G6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import dagflow
from dagflow import TaskStatus, WorkflowState
from dagflow.testing import FakeClock, RecordingHandler, approve_when_pending

APPROVERS = ["alice@example.com", "bob@example.com", "carol@example.com"]
PG = os.environ.get("DAGFLOW_TEST_POSTGRES")


def postgres_or_skip() -> str:
    if PG:
        return PG
    if os.environ.get("DAGFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail("DAGFLOW_REQUIRE_SERVICES=1 but DAGFLOW_TEST_POSTGRES is not set")
    pytest.skip("PostgreSQL tests need DAGFLOW_TEST_POSTGRES=postgresql://USER@HOST:PORT/DB")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, or a PostgreSQL schema of its own (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/approvals.db"
        return
    base = postgres_or_skip()
    schema = f"dagflow_test_{uuid.uuid4().hex[:10]}"
    yield f"{base}?schema={schema}"
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def gate(**extra: Any) -> dict[str, Any]:
    return {"id": "approve", "type": {"type": "Approval", "approvers": APPROVERS,
                                      "timeout_seconds": 86_400, **extra}}


async def run_deciding(engine: dagflow.Engine, wf: Any, decide: Any, user: str = "dave@x.io"
                       ) -> Any:
    result: dict[str, Any] = {}

    async def runner() -> None:
        result["instance"] = await engine.run(wf, user_id=user)

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await decide(engine)
    return result["instance"]


async def open_gate(engine: dagflow.Engine) -> str:
    while not (pending := await engine.approvals.list_pending_approvals()):
        await engine.approvals.wait_for_any_change()
    return pending[0].approval_id


@pytest.mark.anyio
async def test_the_task_at_an_open_gate_is_waiting_approval(store_url: str,
                                                             make_workflow: Any) -> None:
    """While the gate is open its task is WaitingApproval, for this process and for another
    one reading the store; once granted it is Completed."""
    wf = make_workflow(gate(), timeout_seconds=172_800)
    seen: dict[str, Any] = {}

    async def decide(engine: dagflow.Engine) -> None:
        aid = await open_gate(engine)
        request = await engine.approvals.get_approval(aid)
        seen["here"] = (await engine.get_status(request.instance_id)).task_states["approve"]
        async with dagflow.Engine(store=store_url) as other:
            seen["there"] = (await other.get_status(request.instance_id)
                             ).task_states["approve"]
        await engine.approvals.grant_approval(aid, "alice@example.com")

    # the real clock: a fake one would jump to the deadline while the other engine connects
    async with dagflow.Engine(store=store_url) as engine:
        inst = await run_deciding(engine, wf, decide)
    for where in ("here", "there"):
        assert seen[where].state == TaskStatus.WAITING_APPROVAL, where
        assert seen[where].attempts == 1 and seen[where].started_at is not None
    assert inst.task_states["approve"].state == TaskStatus.COMPLETED


@pytest.mark.anyio
async def test_reject_fails_the_workflow(store_url: str, make_workflow: Any) -> None:
    """A rejection fails the gate, naming who and why, and is stored with the gate."""
    wf = make_workflow(gate(), {"id": "deploy", "depends_on": ["approve"]},
                       timeout_seconds=172_800)
    rec = RecordingHandler()
    async with dagflow.Engine(store=store_url, clock=FakeClock(),
                              plugins={"rec": rec}) as engine:
        inst = await run_deciding(engine, wf, lambda e: approve_when_pending(
            e, "bob@example.com", reject=True, comment="change freeze"))
        [stored] = await engine.approvals.list_instance_approvals(inst.id)
    assert inst.state == WorkflowState.FAILED
    assert "rejected by bob@example.com: change freeze" in inst.task_states["approve"].error
    assert [(v.approver, v.approved, v.comment) for v in stored.votes] == [
        ("bob@example.com", False, "change freeze")]
    assert rec.calls == []


@pytest.mark.anyio
@pytest.mark.parametrize("on_timeout", ["cancel", "reject"])
async def test_a_day_long_deadline_passes_in_under_a_second(
        store_url: str, make_workflow: Any, on_timeout: str) -> None:
    """With the FakeClock, a 24-hour gate nobody decides ends the run in under a second:
    Cancelled with ApprovalTimeout, or Failed with on_timeout: reject."""
    wf = make_workflow(gate(on_timeout=on_timeout), timeout_seconds=172_800)
    start = time.perf_counter()
    async with dagflow.Engine(store=store_url, clock=FakeClock()) as engine:
        inst = await engine.run(wf)
        events = [type(e).__name__ async for e in engine.stream_events(inst.id)]
    assert time.perf_counter() - start < 1.0
    if on_timeout == "cancel":
        assert inst.state == WorkflowState.CANCELLED
        assert inst.error.startswith("ApprovalTimeout")
    else:
        assert inst.state == WorkflowState.FAILED
        assert inst.task_states["approve"].state == TaskStatus.FAILED
    assert "ApprovalExpired" in events


@pytest.mark.anyio
async def test_auto_approve(store_url: str, make_workflow: Any) -> None:
    """auto_approve: true opens the gate at once as system."""
    async with dagflow.Engine(store=store_url) as engine:
        inst = await engine.run(make_workflow(gate(auto_approve=True)))
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["approve"].output.data["approvers"] == ["system"]


@pytest.mark.anyio
async def test_two_of_three_quorum_with_a_refused_repeat_vote(store_url: str,
                                                              make_workflow: Any) -> None:
    """min_approvals 2: a second vote by the same person (in another spelling) is refused,
    a second approver opens the gate, and both votes are recorded."""
    wf = make_workflow(gate(min_approvals=2), timeout_seconds=172_800)

    async def decide(engine: dagflow.Engine) -> None:
        aid = await open_gate(engine)
        await engine.approvals.grant_approval(aid, "alice@example.com", "lgtm")
        with pytest.raises(dagflow.ApprovalError, match="already voted"):
            await engine.approvals.grant_approval(aid, " ALICE@example.com")
        assert (await engine.approvals.check_approval_status(aid)).state == "Pending"
        # alice has voted: the gate is no longer on her list, and still on carol's
        assert await engine.approvals.list_pending_approvals("alice@example.com") == []
        [waiting] = await engine.approvals.list_pending_approvals(" Carol@example.com")
        assert waiting.approval_id == aid
        await engine.approvals.grant_approval(aid, "carol@example.com")

    async with dagflow.Engine(store=store_url, clock=FakeClock()) as engine:
        inst = await run_deciding(engine, wf, decide)
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["approve"].output.data["approvers"] == [
        "alice@example.com", "carol@example.com"]


@pytest.mark.anyio
async def test_one_veto_after_a_grant_fails_the_gate(store_url: str,
                                                     make_workflow: Any) -> None:
    """With a quorum of 2, one grant then one rejection fails the gate."""
    wf = make_workflow(gate(min_approvals=2), timeout_seconds=172_800)

    async def decide(engine: dagflow.Engine) -> None:
        aid = await open_gate(engine)
        await engine.approvals.grant_approval(aid, "alice@example.com")
        await engine.approvals.reject_approval(aid, "bob@example.com", "not today")

    async with dagflow.Engine(store=store_url, clock=FakeClock()) as engine:
        inst = await run_deciding(engine, wf, decide)
    assert inst.state == WorkflowState.FAILED


@pytest.mark.anyio
async def test_self_approval_is_refused(store_url: str, make_workflow: Any) -> None:
    """The person who started the run may not approve it, even when listed; another
    approver can, and allow_self_approval lifts the rule."""
    wf = make_workflow(gate(), timeout_seconds=172_800)

    async def decide(engine: dagflow.Engine) -> None:
        aid = await open_gate(engine)
        with pytest.raises(dagflow.ApprovalError, match="started this run"):
            await engine.approvals.grant_approval(aid, "Alice@example.com")
        await engine.approvals.grant_approval(aid, "bob@example.com")

    async with dagflow.Engine(store=store_url, clock=FakeClock()) as engine:
        inst = await run_deciding(engine, wf, decide, user="alice@example.com")
        assert inst.state == WorkflowState.COMPLETED
        allowed = make_workflow(gate(allow_self_approval=True), timeout_seconds=172_800)
        inst = await run_deciding(engine, allowed, lambda e: approve_when_pending(
            e, "alice@example.com"), user="alice@example.com")
    assert inst.state == WorkflowState.COMPLETED


# --------------------------------------------------------------------------- processes

DAGFLOW = [sys.executable, "-m", "dagflow"]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DAGFLOW, *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def pending(url: str, env: dict[str, str], wait: float = 20) -> list[dict[str, Any]]:
    """The open gates, waiting until there is one."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        result = cli("approvals", "--json", "--store", url, env=env)
        assert result.returncode == 0, result.stderr
        found: list[dict[str, Any]] = json.loads(result.stdout)
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("no approval gate opened")


def run_release(where: Path, url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``dagflow run --json`` of a release gated by alice or bob, in the background."""
    wf = where / "wf.yaml"
    wf.write_text(textwrap.dedent("""
        id: release
        tasks:
          - id: approve
            type: {type: Approval, approvers: [alice@example.com, bob@example.com],
                   timeout_seconds: 600}
          - id: ship
            type: {type: Command, command: echo, args: [shipped]}
            depends_on: [approve]
    """))
    return subprocess.Popen([*DAGFLOW, "run", str(wf), "--store", url, "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_approved_from_another_process(tmp_path: Path) -> None:
    """`dagflow run` waits at a gate; a second process lists it, is refused as an outsider
    (gate unchanged), approves as a listed approver, and the run exits 0."""
    url = f"sqlite:///{tmp_path}/s.db"
    env = {**os.environ, "USER": "ci"}
    with run_release(tmp_path, url, env) as run:
        [request] = pending(url, env)
        assert request["instance_id"] and request["task_id"] == "approve"
        refused = cli("approve", request["approval_id"], "--as", "mallory@example.com",
                      "--store", url, env=env)
        assert refused.returncode == 2
        assert "may not decide" in refused.stderr and "Traceback" not in refused.stderr
        [still] = pending(url, env)
        assert still["votes"] == []
        ok = cli("approve", request["approval_id"], "--as", "bob@example.com", "--comment",
                 "ship it", "--store", url, "--json", env=env)
        assert ok.returncode == 0, ok.stderr
        gate = json.loads(ok.stdout)
        assert gate["state"] == "Approved"
        assert [(v["approver"], v["approved"], v["comment"]) for v in gate["votes"]] == [
            ("bob@example.com", True, "ship it")]
        out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    instance = json.loads(out)
    assert instance["state"] == "Completed"
    assert instance["task_states"]["approve"]["output"]["data"]["approvers"] == [
        "bob@example.com"]


def test_rejected_from_another_process(tmp_path: Path) -> None:
    """`dagflow reject` needs a reason, then fails the gate: the run exits 1 naming who
    rejected and why, the task after the gate never runs, and the gate takes no more votes."""
    url = f"sqlite:///{tmp_path}/s.db"
    env = {**os.environ, "USER": "ci"}
    with run_release(tmp_path, url, env) as run:
        [request] = pending(url, env)
        aid = request["approval_id"]
        no_reason = cli("reject", aid, "--as", "alice@example.com", "--store", url, env=env)
        assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
        rejected = cli("reject", aid, "--as", "alice@example.com", "--reason",
                       "change freeze", "--store", url, "--json", env=env)
        assert rejected.returncode == 0, rejected.stderr
        gate = json.loads(rejected.stdout)
        assert (gate["approval_id"], gate["state"]) == (aid, "Rejected")
        assert gate["votes"][0]["comment"] == "change freeze"
        out, err = run.communicate(timeout=30)
    assert run.returncode == 1, err
    instance = json.loads(out)
    assert instance["state"] == "Failed"
    assert "rejected by alice@example.com: change freeze" in (
        instance["task_states"]["approve"]["error"])
    assert instance["task_states"]["ship"]["state"] == "Cancelled"  # never started
    late = cli("approve", aid, "--as", "bob@example.com", "--store", url, env=env)
    assert late.returncode == 2 and "Traceback" not in late.stderr

CHILD = textwrap.dedent("""
    import sys, anyio, dagflow
    url, path, mode = sys.argv[1:4]
    settings = dagflow.EngineSettings(lease_seconds=1.0)
    async def main():
        async with dagflow.Engine(store=url, settings=settings) as engine:
            if mode == "run":
                instance = await engine.create_workflow(dagflow.load(path), "ci")
                print(instance.id, flush=True)
                await engine.start_workflow(instance.id)
                await engine.wait(instance.id)
            else:
                await engine.resume_workflow(mode)
                final = await engine.wait(mode)
                print(final.state, flush=True)
    anyio.run(main)
""")


def test_pending_gate_survives_sigkill_with_its_deadline(tmp_path: Path) -> None:
    """A gate pending when its process is SIGKILLed is still pending after resume in a
    new process, with the same id and the same deadline, and its approval counts."""
    url = f"sqlite:///{tmp_path}/s.db"
    wf = tmp_path / "wf.yaml"
    wf.write_text("id: g\ntasks:\n  - {id: approve, type: {type: Approval, approvers: "
                  "[alice@example.com], timeout_seconds: 900}}\n"
                  "  - {id: after, type: {type: Command, command: 'true'}, "
                  "depends_on: [approve]}\n")
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    env = dict(os.environ)
    first = subprocess.Popen([sys.executable, str(child), url, str(wf), "run"], env=env,
                             stdout=subprocess.PIPE, text=True)
    assert first.stdout is not None
    instance_id = first.stdout.readline().strip()
    [before] = pending(url, env)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    first.stdout.close()
    time.sleep(1.2)  # the dead process's lease expires
    with subprocess.Popen([sys.executable, str(child), url, str(wf), instance_id], env=env,
                          stdout=subprocess.PIPE, text=True) as second:
        time.sleep(1.0)
        [after] = pending(url, env)
        assert after["approval_id"] == before["approval_id"]
        assert after["expires_at"] == before["expires_at"]
        ok = cli("approve", after["approval_id"], "--as", "alice@example.com", "--store",
                 url, env=env)
        assert ok.returncode == 0, ok.stderr
        out, _ = second.communicate(timeout=30)
    assert out.strip() == "Completed"
