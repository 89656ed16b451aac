"""``check_dag_builder``: the contract of a :class:`~dagflow.DagBuilder`, as a kit.

The engine schedules a run by the graph ``optimize_parallelism(build_dag(definition))``
returns, and refers to tasks by their position in the definition (``dag.ids``,
``dag.index``, ``dag.parents``), so a graph must list the tasks in definition order and
keep every dependency: a missing edge starts a task before what it needs. An optimizer
may add edges (to serialise work), never remove one, and never make a cycle.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from .._dag import WorkflowDag
from .._errors import CycleDetected
from .._models import Command, Conditional, TaskDefinition, WorkflowDefinition
from .._protocols import DagBuilder
from ._common import named, short

__all__ = ["check_dag_builder"]

#: Task id -> the ids it waits for, written out.
Graph = Mapping[str, Sequence[str]]


def check_dag_builder(builder: DagBuilder) -> None:
    """Run the :class:`~dagflow.DagBuilder` contract against ``builder``.

    On sample definitions (a chain, a diamond, independent tasks, a Conditional with
    branches, tasks written before their dependencies, a wide fan-out and fan-in, a
    2,000-task chain), ``build_dag`` returns a :class:`~dagflow.WorkflowDag` of the
    definition whose ``ids`` are the task ids in definition order, ``index`` maps each id
    to its position, ``parents`` are exactly each task's ``depends_on`` plus the implicit
    edge from a Conditional to the tasks of its branches (each once), ``children`` are the
    reverse, every edge goes from a lower ``level`` to a higher one, and
    ``execution_batches`` holds each task once, in the batch of its level.
    ``optimize_parallelism`` of that graph returns a graph of the same tasks, in the same
    order, that keeps every edge (it may add some) and has no cycle. Definitions with a
    cycle (two tasks; three tasks below a source; a Conditional that depends on its own
    branch) raise :class:`~dagflow.CycleDetected` whose ``path`` walks a real cycle and
    ends where it starts. The kit stops at the first violation.

    Args:
        builder: The builder to check. It only builds graphs, so it may be the one an
            engine uses.

    Raises:
        AssertionError: The builder broke the contract; the message names the sample and
            what was wrong (``"check_dag_builder: a diamond: build_dag: task 'd' waits
            for ['b'], expected ['b', 'c']"``).
    """
    kit = "check_dag_builder"
    for name, workflow in _samples():
        with named(kit, name):
            dag = builder.build_dag(workflow)
            edges = _edges(workflow)
            _check_graph("build_dag", dag, workflow, edges, exact=True)
            optimized = builder.optimize_parallelism(dag)
            _check_graph("optimize_parallelism", optimized, workflow, edges, exact=False)
    for name, workflow in _cyclic():
        with named(kit, name):
            _check_cycle(builder, workflow)


# --------------------------------------------------------------------------- samples


def _task(task_id: str, *depends_on: str) -> TaskDefinition:
    return TaskDefinition(task_id, Command("true"), depends_on=depends_on)


def _workflow(name: str, tasks: Sequence[TaskDefinition]) -> WorkflowDefinition:
    return WorkflowDefinition(f"kit-{name}", tuple(tasks))


def _from(graph: Graph) -> list[TaskDefinition]:
    return [_task(task_id, *deps) for task_id, deps in graph.items()]


def _branches() -> list[TaskDefinition]:
    """A Conditional whose branch tasks run after it; one of them also says so."""
    decide = TaskDefinition("decide", Conditional("${stage} == 'prod'", ("deploy", "smoke"),
                                                  ("notify",)), depends_on=("build",))
    return [_task("build"), decide, _task("deploy"), _task("smoke", "deploy"),
            _task("notify", "decide"), _task("report", "smoke", "notify")]


def _samples() -> list[tuple[str, WorkflowDefinition]]:
    wide = [f"w{i:03}" for i in range(300)]
    chain = [f"c{i:04}" for i in range(2000)]
    return [
        ("a chain", _workflow("chain", _from({"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}))),
        ("a diamond", _workflow("diamond", _from(
            {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}))),
        ("independent tasks", _workflow("independent", _from({"a": [], "b": [], "c": []}))),
        ("a Conditional with branches", _workflow("conditional", _branches())),
        ("tasks written before their dependencies", _workflow("out-of-order", _from(
            {"d": ["c", "b"], "c": ["a"], "b": ["a"], "a": [], "e": ["d"]}))),
        ("a wide fan-out and fan-in", _workflow("wide", [
            _task("root"), *(_task(w, "root") for w in wide), _task("join", *wide)])),
        ("a 2,000-task chain", _workflow("long", [
            _task(c, *chain[i - 1:i]) for i, c in enumerate(chain)])),
    ]


def _cyclic() -> list[tuple[str, WorkflowDefinition]]:
    loop = TaskDefinition("decide", Conditional("${go}", ("again",)), depends_on=("again",))
    return [
        ("a cycle of two tasks", _workflow("cycle-2", _from({"a": ["b"], "b": ["a"]}))),
        ("a cycle of three tasks below a source", _workflow("cycle-3", _from(
            {"root": [], "a": ["root", "c"], "b": ["a"], "c": ["b"], "tail": ["c"]}))),
        ("a Conditional that depends on its own branch", _workflow(
            "cycle-branch", [_task("start"), _task("again", "start"), loop])),
    ]


def _edges(workflow: WorkflowDefinition) -> set[tuple[str, str]]:
    """Every ``(before, after)`` pair: ``depends_on``, and a Conditional before each task
    of its branches."""
    edges = {(dep, task.id) for task in workflow.tasks for dep in task.depends_on}
    for task in workflow.tasks:
        if isinstance(task.type, Conditional):
            for target in (*task.type.true_branch, *task.type.false_branch):
                if target != task.id:
                    edges.add((task.id, target))
    return edges


# --------------------------------------------------------------------------- checks


def _check_graph(method: str, dag: Any, workflow: WorkflowDefinition,
                 edges: set[tuple[str, str]], *, exact: bool) -> None:
    """``dag`` is a graph of ``workflow`` with every edge (and, if ``exact``, no other)."""
    assert isinstance(dag, WorkflowDag), \
        f"{method} returned {short(dag)}, not a WorkflowDag"
    ids = tuple(task.id for task in workflow.tasks)
    assert dag.definition == workflow, f"{method}: the graph's definition is another workflow"
    assert tuple(dag.ids) == ids, (f"{method}: ids {short(tuple(dag.ids))}, expected the "
                                   f"task ids in definition order {short(ids)}")
    want_index = {task_id: i for i, task_id in enumerate(ids)}
    assert dict(dag.index) == want_index, \
        f"{method}: index {short(dict(dag.index))}, expected {short(want_index)}"
    n = len(ids)
    for field in ("parents", "children", "level"):
        assert len(getattr(dag, field)) == n, \
            f"{method}: {field} has {len(getattr(dag, field))} entries for {n} tasks"
    got: set[tuple[str, str]] = set()
    for c, parents in enumerate(dag.parents):
        assert all(isinstance(p, int) and 0 <= p < n for p in parents), \
            f"{method}: parents of {ids[c]!r} are {short(parents)}, not task indexes"
        assert len(set(parents)) == len(parents), \
            f"{method}: task {ids[c]!r} lists a parent twice: {[ids[p] for p in parents]}"
        got |= {(ids[p], ids[c]) for p in parents}
    missing = sorted(edges - got)
    for before, after in missing[:1]:
        waits = sorted(p for p, c in got if c == after)
        need = sorted(p for p, c in edges if c == after)
        raise AssertionError(f"{method}: task {after!r} waits for {waits}, expected {need} "
                             f"(the edge {before} -> {after} is missing)")
    extra = sorted(got - edges)
    if exact and extra:
        before, after = extra[0]
        raise AssertionError(f"{method}: task {after!r} waits for {before!r}, which it does "
                             "not depend on")
    children = {(ids[p], ids[c]) for p, cs in enumerate(dag.children) for c in cs}
    assert children == got, (f"{method}: children are not the reverse of parents: "
                             f"{short(sorted(children ^ got)[:3])} differ")
    for before, after in sorted(got):
        lb, la = dag.level[want_index[before]], dag.level[want_index[after]]
        assert la > lb, (f"{method}: {before!r} (level {lb}) must finish before {after!r} "
                         f"(level {la}), but the levels do not say so")
    batches = [task_id for batch in dag.execution_batches for task_id in batch]
    assert sorted(batches) == sorted(ids), (
        f"{method}: execution_batches hold {len(batches)} entries for {n} tasks (each "
        "task must be in exactly one batch)")
    for number, batch in enumerate(dag.execution_batches):
        for task_id in batch:
            level = dag.level[want_index[task_id]]
            assert level == number, (f"{method}: {task_id!r} is in batch {number} but has "
                                     f"level {level}")


def _check_cycle(builder: DagBuilder, workflow: WorkflowDefinition) -> None:
    try:
        dag = builder.build_dag(workflow)
    except CycleDetected as exc:
        path = tuple(exc.path)
    except Exception as exc:
        raise AssertionError(f"build_dag raised {type(exc).__name__} ({exc}), expected "
                             "CycleDetected") from exc
    else:
        raise AssertionError(f"build_dag returned {short(dag)} for a definition with a "
                             "cycle, expected CycleDetected")
    edges = _edges(workflow)
    assert len(path) >= 3 and path[0] == path[-1], (
        f"CycleDetected.path is {path}: it must walk around the cycle and end where it "
        "starts, like ('a', 'b', 'a')")
    assert len(set(path[:-1])) == len(path) - 1, \
        f"CycleDetected.path {path} passes a task twice"
    steps = list(itertools.pairwise(path))
    forward = all(step in edges for step in steps)
    backward = all((b, a) in edges for a, b in steps)
    assert forward or backward, (
        f"CycleDetected.path {path} is not a cycle of the definition: "
        f"{next(f'{a} -> {b}' for a, b in steps if (a, b) not in edges)} is no dependency")
