"""The scheduler: dynamic start, the parallelism bound, priorities, joins and branches."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest

import dagflow
from dagflow import JoinRule, TaskStatus, WorkflowState
from dagflow.testing import RecordingHandler, fail

pytestmark = pytest.mark.anyio


async def run(wf: Any, rec: RecordingHandler, **options: Any) -> dagflow.WorkflowInstance:
    async with dagflow.Engine(plugins={"rec": rec}, **options) as engine:
        return await engine.run(wf)


async def test_dependent_starts_while_an_earlier_level_still_runs(make_workflow: Any) -> None:
    """b starts once a completes, while slow (same level as a) is still running."""
    rec = RecordingHandler(seconds={"slow": 0.3})
    wf = make_workflow({"id": "a"}, {"id": "slow"}, {"id": "b", "depends_on": ["a"]})
    async with dagflow.Engine(plugins={"rec": rec}) as engine:
        inst = await engine.run(wf)
        events = [e async for e in engine.stream_events(inst.id)]
    assert inst.state == WorkflowState.COMPLETED
    seq = {(type(e).__name__, getattr(e, "task_id", "")): e.seq for e in events}
    assert seq["TaskStarted", "b"] < seq["TaskCompleted", "slow"]


async def test_parallelism_never_exceeds_max_parallel_tasks(make_workflow: Any) -> None:
    """With 12 independent tasks and max_parallel_tasks 3, at most 3 run at once."""
    running = 0
    peak = 0

    async def handler(config: Any, ctx: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1

    wf = make_workflow(*({"id": f"t{i}"} for i in range(12)), max_parallel_tasks=3)
    async with dagflow.Engine(plugins={"rec": handler}) as engine:
        inst = await engine.run(wf)
    assert inst.state == WorkflowState.COMPLETED
    assert peak == 3


async def test_longest_remaining_path_goes_first(make_workflow: Any) -> None:
    """With one slot, the head of the longest chain starts before an isolated task."""
    rec = RecordingHandler()
    wf = make_workflow({"id": "lonely"}, {"id": "a"}, {"id": "b", "depends_on": ["a"]},
                       {"id": "c", "depends_on": ["b"]}, max_parallel_tasks=1)
    inst = await run(wf, rec)
    assert inst.state == WorkflowState.COMPLETED
    assert rec.task_ids()[0] == "a"
    assert rec.task_ids().index("lonely") > 0


async def test_outputs_flow_to_dependents(make_workflow: Any) -> None:
    """A dependent reads an upstream task's data through ${tasks.X.data.key}."""
    rec = RecordingHandler(results={"a": {"region": "eu-west-1", "n": 3}})
    wf = make_workflow(
        {"id": "a"},
        {"id": "b", "depends_on": ["a"],
         "type": {"type": "Plugin", "plugin_name": "rec",
                  "config": {"where": "${tasks.a.data.region}", "count": "${tasks.a.data.n}",
                             "text": "n=${tasks.a.data.n}"}}})
    inst = await run(wf, rec)
    assert inst.state == WorkflowState.COMPLETED
    assert rec.calls[1].spec.config == {"where": "eu-west-1", "count": 3, "text": "n=3"}


# --------------------------------------------------------------------------- join rules

OUTCOMES = ("Completed", "Failed", "FailedContinue", "Skipped")


def _parent(task_id: str, outcome: str) -> dict[str, Any]:
    task: dict[str, Any] = {"id": task_id}
    if outcome == "FailedContinue":
        task["config"] = {"on_failure": "Continue"}
    if outcome == "Skipped":
        task["condition"] = "false"
    return task


def _expected(join: str, outcomes: tuple[str, str]) -> TaskStatus:
    if join == "all_done":
        return TaskStatus.COMPLETED
    if "Failed" in outcomes:  # on_failure: Fail stops the workflow: the join never runs
        return TaskStatus.CANCELLED
    if join == "all_success":
        return TaskStatus.COMPLETED if all(o == "Completed" for o in outcomes) \
            else TaskStatus.SKIPPED
    if join == "one_success":
        return TaskStatus.COMPLETED if "Completed" in outcomes else TaskStatus.SKIPPED
    # default: a Failed-with-Continue dependency counts as done; not all may be skipped
    return TaskStatus.SKIPPED if all(o == "Skipped" for o in outcomes) \
        else TaskStatus.COMPLETED


@pytest.mark.parametrize("join", [j.value for j in JoinRule])
@pytest.mark.parametrize("outcomes", list(itertools.product(OUTCOMES, repeat=2)),
                         ids=lambda o: "-".join(o))
async def test_join_truth_table(make_workflow: Any, join: str,
                                outcomes: tuple[str, str]) -> None:
    """The downstream task runs, is skipped or is cancelled exactly as its join rule says."""
    results = {f"p{k}": fail("boom", retryable=False)
               for k, o in enumerate(outcomes) if o.startswith("Failed")}
    rec = RecordingHandler(results=results)
    wf = make_workflow(_parent("p0", outcomes[0]), _parent("p1", outcomes[1]),
                       {"id": "down", "depends_on": ["p0", "p1"], "join": join})
    inst = await run(wf, rec)
    assert inst.task_states["down"].state == _expected(join, outcomes)
    failed = "Failed" in outcomes
    assert inst.state == (WorkflowState.FAILED if failed else WorkflowState.COMPLETED)


async def test_conditional_runs_one_branch_and_a_join_after_both(make_workflow: Any) -> None:
    """The branch not taken is Skipped, and a default join after both branches runs."""
    rec = RecordingHandler()
    wf = make_workflow(
        {"id": "check", "type": {"type": "Conditional", "condition": "${env_name} == 'prod'",
                                 "true_branch": ["slow-rollout"],
                                 "false_branch": ["fast-rollout"]}},
        {"id": "slow-rollout"}, {"id": "fast-rollout"},
        {"id": "verify", "depends_on": ["slow-rollout", "fast-rollout"]},
        variables={"env_name": "prod"})
    inst = await run(wf, rec)
    states = {k: v.state for k, v in inst.task_states.items()}
    assert states == {"check": TaskStatus.COMPLETED, "slow-rollout": TaskStatus.COMPLETED,
                      "fast-rollout": TaskStatus.SKIPPED, "verify": TaskStatus.COMPLETED}
    assert inst.task_states["check"].output.data == {"result": True, "branch": "true_branch"}


async def test_false_condition_skips_and_skips_propagate(make_workflow: Any) -> None:
    """A false condition skips the task; a dependent whose only dependency was skipped is
    skipped too, while the workflow completes."""
    rec = RecordingHandler()
    wf = make_workflow({"id": "a", "condition": "${n} > 5"},
                       {"id": "b", "depends_on": ["a"]}, variables={"n": 2})
    inst = await run(wf, rec)
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["a"].state == TaskStatus.SKIPPED
    assert inst.task_states["b"].state == TaskStatus.SKIPPED
    assert rec.calls == []


async def test_long_chain_of_skips_does_not_recurse(make_workflow: Any) -> None:
    """5,000 tasks skipped one after another resolve without a deep recursion."""
    tasks = [{"id": "t0", "condition": "false"}]
    tasks += [{"id": f"t{i}", "depends_on": [f"t{i - 1}"]} for i in range(1, 5000)]
    inst = await run(make_workflow(*tasks), RecordingHandler())
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["t4999"].state == TaskStatus.SKIPPED
