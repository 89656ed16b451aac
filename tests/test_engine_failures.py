"""Failure actions, retries and their backoff, task and workflow timeouts."""

from __future__ import annotations

import time
from typing import Any

import pytest

import dagflow
from dagflow import TaskRetrying, TaskStatus, WorkflowState
from dagflow.testing import FakeClock, RecordingHandler, fail

pytestmark = pytest.mark.anyio
HOUR_MS = 3_600_000


async def run(wf: Any, rec: RecordingHandler, **options: Any) -> tuple[Any, list[Any]]:
    async with dagflow.Engine(plugins={"rec": rec}, **options) as engine:
        inst = await engine.run(wf)
        events = [e async for e in engine.stream_events(inst.id)]
    return inst, events


async def test_fail_stops_the_workflow(make_workflow: Any) -> None:
    """on_failure Fail: the workflow fails, a running sibling is cancelled, nothing
    downstream starts, and the error names the task."""
    rec = RecordingHandler(results={"bad": fail("disk full", retryable=False)},
                           seconds={"sibling": 60})
    wf = make_workflow({"id": "bad"}, {"id": "sibling"}, {"id": "after", "depends_on": ["bad"]})
    inst, _ = await run(wf, rec, clock=FakeClock())
    assert inst.state == WorkflowState.FAILED
    assert "bad" in inst.error and "disk full" in inst.error
    assert inst.task_states["bad"].state == TaskStatus.FAILED
    assert inst.task_states["sibling"].state == TaskStatus.CANCELLED
    assert inst.task_states["after"].state == TaskStatus.CANCELLED
    assert "after" not in rec.task_ids()


async def test_continue_marks_failed_and_goes_on(make_workflow: Any) -> None:
    """on_failure Continue: the task is Failed, its dependents run, the workflow completes."""
    rec = RecordingHandler(results={"notify": fail("slack down", retryable=False)})
    wf = make_workflow({"id": "notify", "config": {"on_failure": "Continue"}},
                       {"id": "next", "depends_on": ["notify"]})
    inst, _ = await run(wf, rec)
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["notify"].state == TaskStatus.FAILED
    assert inst.task_states["notify"].error == "slack down"
    assert inst.task_states["next"].state == TaskStatus.COMPLETED


async def test_rollback_undoes_completed_tasks_newest_first(make_workflow: Any) -> None:
    """on_failure Rollback: the workflow fails, then every completed task's rollback runs in
    reverse completion order, and the instance ends RolledBack."""
    rec = RecordingHandler(results={"c": fail("health check failed", retryable=False)})
    undo = {"type": "Plugin", "plugin_name": "rec"}
    wf = make_workflow(
        {"id": "a", "rollback": {**undo, "config": {"undo": "a"}}},
        {"id": "b", "depends_on": ["a"], "rollback": {**undo, "config": {"undo": "b"}}},
        {"id": "c", "depends_on": ["b"], "config": {"on_failure": "Rollback"}})
    inst, events = await run(wf, rec)
    assert inst.state == WorkflowState.ROLLED_BACK
    undone = [c.spec.config["undo"] for c in rec.calls if isinstance(c.spec.config, dict)
              and "undo" in c.spec.config]
    assert undone == ["b", "a"]
    names = [type(e).__name__ for e in events]
    assert names[-4:] == ["RollbackStarted", "RollbackTaskCompleted", "RollbackTaskCompleted",
                          "RollbackCompleted"]
    assert [t.to_state for t in inst.state_history][-2:] == [WorkflowState.FAILED,
                                                             WorkflowState.ROLLED_BACK]


async def test_failed_rollback_step_leaves_failed_and_says_which(make_workflow: Any) -> None:
    """When undoing a task fails, the instance stays Failed and its error names that task."""
    def answer(ctx: Any) -> Any:
        if isinstance(ctx.spec.config, dict) and ctx.spec.config.get("undo") == "b":
            raise dagflow.TaskExecutionFailed(reason="cannot restore the snapshot")
        return None

    rec = RecordingHandler(results={"c": fail("broken", retryable=False)}, default=answer)
    undo = {"type": "Plugin", "plugin_name": "rec"}
    wf = make_workflow(
        {"id": "a", "rollback": {**undo, "config": {"undo": "a"}}},
        {"id": "b", "depends_on": ["a"], "rollback": {**undo, "config": {"undo": "b"}}},
        {"id": "c", "depends_on": ["b"], "config": {"on_failure": "Rollback"}})
    inst, events = await run(wf, rec)
    assert inst.state == WorkflowState.FAILED
    assert "rollback of 'b' failed" in inst.error and "snapshot" in inst.error
    assert type(events[-1]).__name__ == "RollbackFailed"


async def test_on_failure_retry_uses_the_default_policy(make_workflow: Any) -> None:
    """on_failure Retry without a retry_policy makes 3 attempts, then fails the workflow."""
    rec = RecordingHandler(results={"flaky": fail("503")})
    wf = make_workflow({"id": "flaky", "config": {"on_failure": "Retry"}})
    inst, events = await run(wf, rec, clock=FakeClock())
    assert rec.attempts("flaky") == 3
    assert inst.state == WorkflowState.FAILED
    assert inst.task_states["flaky"].attempts == 3
    assert [e.delay_seconds for e in events if isinstance(e, TaskRetrying)] == [1.0, 2.0]


async def test_hour_long_backoffs_take_no_real_time(make_workflow: Any) -> None:
    """Backoff delays follow min(initial * multiplier^(n-1), max); with the FakeClock a
    workflow with 1-hour backoffs finishes in under a second."""
    rec = RecordingHandler(results={"flaky": [fail("1"), fail("2"), fail("3"), fail("4"),
                                              {"ok": True}]})
    policy = {"max_attempts": 5, "initial_delay_ms": HOUR_MS, "backoff_multiplier": 2.0,
              "max_delay_ms": 5 * HOUR_MS}
    wf = make_workflow({"id": "flaky", "retry_policy": policy}, timeout_seconds=86_400)
    clock = FakeClock()
    start_real, start_fake = time.perf_counter(), clock.now()
    inst, events = await run(wf, rec, clock=clock)
    assert time.perf_counter() - start_real < 1.0
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["flaky"].attempts == 5
    delays = [e.delay_seconds for e in events if isinstance(e, TaskRetrying)]
    assert delays == [3600.0, 7200.0, 14400.0, 18000.0]  # the 4th is capped at max
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(rec.calls, rec.calls[1:],
                                                            strict=False)]
    assert gaps == delays
    assert (clock.now() - start_fake).total_seconds() == sum(delays)


async def test_retryable_errors_filter(make_workflow: Any) -> None:
    """With retryable_errors, only failures whose kind or message matches are retried."""
    rec = RecordingHandler(results={"a": fail("connection reset"),
                                    "b": fail("permission denied")})
    policy = {"max_attempts": 3, "initial_delay_ms": 0, "retryable_errors": ["connection"]}
    wf = make_workflow({"id": "a", "retry_policy": policy, "config": {"on_failure": "Continue"}},
                       {"id": "b", "retry_policy": policy, "config": {"on_failure": "Continue"}})
    await run(wf, rec)
    assert rec.attempts("a") == 3
    assert rec.attempts("b") == 1


async def test_non_retryable_failure_is_not_retried(make_workflow: Any) -> None:
    """A failure marked not retryable ends the task at once despite a retry policy."""
    rec = RecordingHandler(results={"a": fail("404", retryable=False)})
    wf = make_workflow({"id": "a", "retry_policy": {"max_attempts": 5, "initial_delay_ms": 0}})
    inst, _ = await run(wf, rec)
    assert rec.attempts("a") == 1
    assert inst.state == WorkflowState.FAILED


async def test_task_timeout_fails_the_attempt_and_is_retried(make_workflow: Any) -> None:
    """A task running past its timeout fails that attempt ("timed out") and is retried."""
    rec = RecordingHandler(seconds={"slow": 3600})
    wf = make_workflow({"id": "slow", "timeout": "PT10M",
                        "retry_policy": {"max_attempts": 2, "initial_delay_ms": 1000}})
    clock = FakeClock()
    inst, _ = await run(wf, rec, clock=clock)
    assert inst.state == WorkflowState.FAILED
    assert rec.attempts("slow") == 2
    assert "timed out after 600s" in inst.task_states["slow"].error


async def test_workflow_timeout_cancels_the_run(make_workflow: Any) -> None:
    """config.timeout_seconds cancels the whole run: state Cancelled, reason given."""
    rec = RecordingHandler(seconds={"long": 7200})
    wf = make_workflow({"id": "long"}, {"id": "after", "depends_on": ["long"]},
                       timeout_seconds=3600)
    inst, _ = await run(wf, rec, clock=FakeClock())
    assert inst.state == WorkflowState.CANCELLED
    assert "timed out after 3600s" in inst.error
    assert inst.task_states["long"].state == TaskStatus.CANCELLED
    assert inst.task_states["after"].state == TaskStatus.CANCELLED


async def test_cleanup_task_runs_while_failing(make_workflow: Any) -> None:
    """An all_done task after a failed one still runs (like finally)."""
    rec = RecordingHandler(results={"deploy": fail("boom", retryable=False)})
    wf = make_workflow({"id": "deploy"}, {"id": "other"},
                       {"id": "cleanup", "depends_on": ["deploy", "other"], "join": "all_done"})
    inst, _ = await run(wf, rec)
    assert inst.state == WorkflowState.FAILED
    assert inst.task_states["cleanup"].state == TaskStatus.COMPLETED
    assert "cleanup" in rec.task_ids()


async def test_condition_that_cannot_be_evaluated_fails_the_task(make_workflow: Any) -> None:
    """Comparing a string with a number fails the task with a clear message."""
    rec = RecordingHandler(results={"a": {"n": "three"}})
    wf = make_workflow({"id": "a"}, {"id": "b", "depends_on": ["a"],
                                     "condition": "${tasks.a.data.n} > 2"})
    inst, _ = await run(wf, rec)
    assert inst.state == WorkflowState.FAILED
    assert "cannot evaluate condition" in inst.task_states["b"].error
