"""A host application that embeds dagflow: one engine for the whole process.

    python examples/host_app.py [STATE_DIR]

It keeps its instances in a SQLite file (in STATE_DIR, else a temporary directory),
starts two workflows in the background, follows both event streams at the same time,
approves a gate from "another part of the app" (what a web handler would do), waits for
both runs and prints a summary. Everything runs on this machine in about a second.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import anyio

import dagflow

NIGHTLY = dagflow.loads("""
id: nightly-report
tasks:
  - id: extract
    type: {type: Command, command: sh, args: ["-c", "echo 42 rows"]}
  - id: transform
    depends_on: [extract]
    type: {type: Command, command: echo, args: ["cleaned ${tasks.extract.stdout}"]}
""")

DEPLOY = dagflow.loads("""
id: deploy
variables: {version: 0.0.0}
tasks:
  - id: build
    type: {type: Command, command: echo, args: ["app-${version}.tar.gz"]}
  - id: approve
    depends_on: [build]
    type: {type: Approval, approvers: [lead@example.com], timeout_seconds: 600}
  - id: ship
    depends_on: [approve]
    type: {type: Command, command: echo, args: ["shipped ${tasks.build.stdout}"]}
""")

# the events worth a line in this app's log (there are more: TaskStarted, checkpoints ...)
NOTABLE = (dagflow.WorkflowStarted, dagflow.TaskCompleted, dagflow.TaskFailed,
           dagflow.ApprovalRequired, dagflow.ApprovalGranted, dagflow.WorkflowCompleted,
           dagflow.WorkflowFailed, dagflow.WorkflowCancelled)


async def follow(engine: dagflow.Engine, instance_id: str, label: str) -> None:
    """Print one line per notable event of one instance, until it finishes."""
    async for event in engine.stream_events(instance_id):  # history first, then live
        if isinstance(event, NOTABLE):
            task = getattr(event, "task_id", "")
            print(f"[{label}] #{event.seq} {event.type_name} {task}".rstrip())


async def approval_desk(engine: dagflow.Engine, approver: str) -> None:
    """Another part of the app (say, a web handler): grant the first gate ``approver``
    may decide. Gates live in the store, so this could as well be another process."""
    while True:
        pending = await engine.approvals.list_pending_approvals(approver=approver)
        if pending:
            gate = pending[0]
            await engine.approvals.grant_approval(gate.approval_id, approver, "ship it")
            print(f"[desk] {approver} granted {gate.task_id!r} of {gate.workflow_id}")
            return
        await anyio.sleep(0.1)


async def serve(state_dir: Path) -> int:
    """Run both workflows on one engine; 0 when both completed."""
    store = f"sqlite:///{state_dir / 'dagflow.db'}"
    async with dagflow.Engine(store=store) as engine:
        # create (validated and stored), then start in the engine's background task group
        nightly = await engine.create_workflow(NIGHTLY, user_id="scheduler")
        deploy = await engine.create_workflow(DEPLOY, user_id="ci@example.com",
                                              variables={"version": "2.0.1"})
        for instance in (nightly, deploy):
            await engine.start_workflow(instance.id)

        with anyio.fail_after(30):  # a safety net: an example should never hang
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow, engine, nightly.id, "nightly")
                tg.start_soon(follow, engine, deploy.id, "deploy")
                tg.start_soon(approval_desk, engine, "lead@example.com")

        finals = [await engine.wait(instance.id) for instance in (nightly, deploy)]

    print("summary:")
    for final in finals:
        done = sum(t.state == dagflow.TaskStatus.COMPLETED for t in final.task_states.values())
        print(f"  {final.workflow_id}: {final.state.value} "
              f"({done}/{len(final.task_states)} tasks completed)")
    # a task's output: stdout for a Command, data for an Approval (who approved, comments)
    gate, ship = (finals[1].task_states[t].output for t in ("approve", "ship"))
    if gate is not None and ship is not None and ship.stdout is not None:
        print(f"  approved by {', '.join(gate.data['approvers'])}: {gate.data['comments']}")
        print(f"  deploy said: {ship.stdout.strip()}")
    ok = all(final.state == dagflow.WorkflowState.COMPLETED for final in finals)
    return 0 if ok else 1


def main() -> int:
    """Use the directory given on the command line, else a temporary one."""
    if len(sys.argv) > 1:
        return anyio.run(serve, Path(sys.argv[1]))
    with tempfile.TemporaryDirectory() as state_dir:
        return anyio.run(serve, Path(state_dir))


if __name__ == "__main__":
    sys.exit(main())
