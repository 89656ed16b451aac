"""The default DagBuilder: levels, batches, implicit edges, cycles and critical paths."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dagflow
from dagflow import (
    Command,
    Conditional,
    CycleDetected,
    DefaultDagBuilder,
    TaskDefinition,
    WorkflowDag,
    WorkflowDefinition,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deploy-with-approval.yaml"

#: The seed example's levels, worked out by hand from its depends_on lists.
SEED_BATCHES = (
    ("validate-manifest", "run-tests"),
    ("build-image",),
    ("push-image",),
    ("request-approval",),
    ("deploy",),
    ("health-check",),
    ("smoke-tests",),
    ("notify-success",),
)


def workflow(*tasks: tuple[str, Sequence[str]]) -> WorkflowDefinition:
    """A workflow of Command tasks ``(id, depends_on)`` in the given order."""
    return WorkflowDefinition(
        id="w",
        tasks=tuple(
            TaskDefinition(id=task_id, type=Command(command="true"), depends_on=tuple(deps))
            for task_id, deps in tasks
        ),
    )


def build(*tasks: tuple[str, Sequence[str]]) -> WorkflowDag:
    return DefaultDagBuilder().build_dag(workflow(*tasks))


def levels(dag: WorkflowDag) -> dict[str, int]:
    return {task_id: dag.level[i] for i, task_id in enumerate(dag.ids)}


DIAMOND = (("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]))


@pytest.fixture(scope="module")
def seed() -> WorkflowDag:
    return DefaultDagBuilder().build_dag(dagflow.load(EXAMPLE))


# --------------------------------------------------------------------------- levels


def test_seed_example_batches_are_its_levels(seed: WorkflowDag) -> None:
    """The seed example runs in the eight batches its dependencies imply."""
    assert seed.execution_batches == SEED_BATCHES
    assert DefaultDagBuilder().topological_sort(seed) == [list(b) for b in SEED_BATCHES]
    for depth, batch in enumerate(SEED_BATCHES):
        for task_id in batch:
            assert seed.nodes[task_id].level == depth
            assert seed.level[seed.index[task_id]] == depth


def test_seed_example_edges_are_its_dependencies(seed: WorkflowDag) -> None:
    """Every depends_on entry of the seed is an edge, and there are no others."""
    expected = {
        (dep, task.id) for task in seed.definition.tasks for dep in task.depends_on
    }
    assert {(e.from_task, e.to_task) for e in seed.edges} == expected
    assert seed.dependencies("request-approval") == ("validate-manifest", "push-image")
    assert seed.dependents("run-tests") == ("build-image",)
    assert seed.max_parallelism == 2


def test_seed_example_upstream(seed: WorkflowDag) -> None:
    """``upstream`` is every task a task transitively waits for."""
    assert seed.upstream("deploy") == {
        "validate-manifest", "run-tests", "build-image", "push-image", "request-approval",
    }
    assert seed.upstream("run-tests") == set()


def test_diamond_has_three_levels() -> None:
    """a, then b and c together, then d."""
    dag = build(*DIAMOND)
    assert dag.execution_batches == (("a",), ("b", "c"), ("d",))
    assert dag.max_parallelism == 2
    assert dag.dependencies("d") == ("b", "c")
    assert dag.dependents("a") == ("b", "c")
    assert dag.upstream("d") == {"a", "b", "c"}


def test_level_is_the_longest_path_from_a_source() -> None:
    """A task is one level below its deepest dependency, not its shallowest."""
    dag = build(("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["a", "c"]))
    assert levels(dag) == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_tasks_within_a_level_keep_definition_order() -> None:
    """Independent tasks are batched in the order they are written, not sorted by id."""
    dag = build(("zeta", []), ("alpha", []), ("mid", []), ("x", ["zeta", "alpha"]))
    assert dag.execution_batches == (("zeta", "alpha", "mid"), ("x",))


def test_definition_order_is_kept_when_dependencies_come_later() -> None:
    """Dependencies written after their dependents still give definition-ordered batches."""
    dag = build(
        ("late", ["mid", "src2"]), ("z", []), ("mid", ["src1"]), ("src2", []), ("src1", []),
        ("a", ["src2"]),
    )
    assert dag.execution_batches == (("z", "src2", "src1"), ("mid", "a"), ("late",))


def test_building_twice_gives_the_same_graph() -> None:
    """The builder is deterministic: same definition, same batches and levels."""
    tasks = [("c", ["a"]), ("b", []), ("a", []), ("d", ["c", "b"])]
    first, second = build(*tasks), build(*tasks)
    assert first.execution_batches == second.execution_batches == (("b", "a"), ("c",), ("d",))
    assert list(first.level) == list(second.level)


def test_conditional_branches_depend_on_the_conditional() -> None:
    """Tasks named in a Conditional's branches wait for it, even if written before it."""
    wf = WorkflowDefinition(
        id="w",
        tasks=(
            TaskDefinition(id="yes", type=Command(command="true")),
            TaskDefinition(
                id="check",
                type=Conditional(condition="true", true_branch=("yes",), false_branch=("no",)),
            ),
            TaskDefinition(id="no", type=Command(command="true")),
            TaskDefinition(id="join", type=Command(command="true"), depends_on=("yes", "no")),
        ),
    )
    dag = DefaultDagBuilder().build_dag(wf)
    assert dag.execution_batches == (("check",), ("yes", "no"), ("join",))
    assert dag.dependencies("yes") == ("check",)
    assert dag.dependencies("no") == ("check",)
    assert set(dag.dependents("check")) == {"yes", "no"}
    assert {(e.from_task, e.to_task) for e in dag.edges} >= {("check", "yes"), ("check", "no")}


def test_conditional_edge_is_not_doubled_by_an_explicit_dependency() -> None:
    """A branch task that also lists the Conditional in depends_on has it once."""
    wf = WorkflowDefinition(
        id="w",
        tasks=(
            TaskDefinition(id="check", type=Conditional(condition="true", true_branch=("t",))),
            TaskDefinition(id="t", type=Command(command="true"), depends_on=("check",)),
        ),
    )
    dag = DefaultDagBuilder().build_dag(wf)
    assert dag.dependencies("t") == ("check",)
    assert len(dag.edges) == 1


def test_loaded_conditional_gets_its_implicit_edges() -> None:
    """The implicit branch edges also come from a loaded YAML file."""
    wf = dagflow.loads(
        "id: w\n"
        "tasks:\n"
        "  - id: check\n"
        "    type: {type: Conditional, condition: 'true', true_branch: [yes], "
        "false_branch: [no]}\n"
        "  - {id: 'yes', type: {type: Command, command: echo}}\n"
        "  - {id: 'no', type: {type: Command, command: echo}}\n"
    )
    dag = DefaultDagBuilder().build_dag(wf)
    assert dag.execution_batches == (("check",), ("yes", "no"))


# --------------------------------------------------------------------------- critical path


def test_critical_path_without_durations_counts_steps(seed: WorkflowDag) -> None:
    """Without durations every task weighs 1: the seed's longest chain has 8 tasks."""
    length, path = seed.critical_path()
    assert length == 8
    assert path == (
        "run-tests", "build-image", "push-image", "request-approval", "deploy",
        "health-check", "smoke-tests", "notify-success",
    )


def test_critical_path_follows_durations(seed: WorkflowDag) -> None:
    """A slow task moves the critical path onto its branch."""
    durations = dict.fromkeys(seed.ids, 1.0)
    durations["validate-manifest"] = 1000.0
    length, path = seed.critical_path(durations)
    assert length == 1005.0
    assert path == (
        "validate-manifest", "request-approval", "deploy", "health-check", "smoke-tests",
        "notify-success",
    )


@pytest.mark.parametrize(
    ("durations", "length", "path"),
    [
        (None, 3.0, None),
        ({"a": 1, "b": 5, "c": 1, "d": 1}, 7.0, ("a", "b", "d")),
        ({"a": 1, "b": 1, "c": 5, "d": 1}, 7.0, ("a", "c", "d")),
        ({"a": 0.5, "b": 0.25, "c": 0.125, "d": 2}, 2.75, ("a", "b", "d")),
    ],
)
def test_diamond_critical_path(
    durations: dict[str, float] | None, length: float, path: tuple[str, ...] | None
) -> None:
    """In a diamond the critical path runs through the slower middle task."""
    got_length, got_path = build(*DIAMOND).critical_path(durations)
    assert got_length == length
    if path is None:
        assert got_path in (("a", "b", "d"), ("a", "c", "d"))
    else:
        assert got_path == path


def test_critical_path_is_a_real_path() -> None:
    """Consecutive tasks of the critical path are joined by edges and the sum matches."""
    dag = build(("a", []), ("b", []), ("c", ["a"]), ("d", ["b", "c"]), ("e", ["b"]))
    durations = {"a": 2, "b": 3, "c": 2, "d": 1, "e": 1}
    length, path = dag.critical_path(durations)
    assert path == ("a", "c", "d")
    assert length == sum(durations[t] for t in path) == 5
    for up, down in itertools.pairwise(path):
        assert up in dag.dependencies(down)


def test_remaining_path_without_durations(seed: WorkflowDag) -> None:
    """Each task's remaining path is the number of tasks on its longest way to the end."""
    rest = dict(zip(seed.ids, seed.remaining_path(), strict=True))
    assert rest == {
        "validate-manifest": 6, "run-tests": 8, "build-image": 7, "push-image": 6,
        "request-approval": 5, "deploy": 4, "health-check": 3, "smoke-tests": 2,
        "notify-success": 1,
    }


def test_remaining_path_with_durations() -> None:
    """With durations the remaining path sums the slowest way to the end."""
    dag = build(*DIAMOND)
    rest = dict(zip(dag.ids, dag.remaining_path({"a": 1, "b": 5, "c": 2, "d": 3}),
                    strict=True))
    assert rest == {"a": 9, "b": 8, "c": 5, "d": 3}


# --------------------------------------------------------------------------- properties


# valid ids of different shapes, dotted ones included; the number keeps them unique
_PREFIXES = st.sampled_from(["t", "T", "_", "build.", "a.b-", "x_y."])


@st.composite
def acyclic_graphs(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    """Tasks whose dependencies point only at earlier tasks, then written in random order."""
    n = draw(st.integers(1, 40))
    numbers = draw(st.lists(st.integers(0, 999), min_size=n, max_size=n, unique=True))
    ids = [draw(_PREFIXES) + str(k) for k in numbers]
    tasks = []
    for i, task_id in enumerate(ids):
        deps = draw(st.lists(st.sampled_from(ids[:i]), unique=True, max_size=4)) if i else []
        tasks.append((task_id, deps))
    return draw(st.permutations(tasks))


@given(acyclic_graphs())
@settings(max_examples=200, deadline=None)
def test_levels_respect_every_edge(tasks: list[tuple[str, list[str]]]) -> None:
    """Every dependency sits on a lower level, and the batches hold each task once."""
    dag = build(*tasks)
    level = levels(dag)
    for task_id, deps in tasks:
        for dep in deps:
            assert level[dep] < level[task_id]
        # exactly one below the deepest dependency (the seed's Kahn levels)
        assert level[task_id] == max((level[d] + 1 for d in deps), default=0)
    flat = [t for batch in dag.execution_batches for t in batch]
    assert sorted(flat) == sorted(t for t, _ in tasks)
    assert len(flat) == len(set(flat))
    position = {t: i for i, (t, _) in enumerate(tasks)}
    for depth, batch in enumerate(dag.execution_batches):
        assert batch, "no empty batch"
        assert all(level[t] == depth for t in batch)
        assert list(batch) == sorted(batch, key=position.__getitem__)


@given(acyclic_graphs())
@settings(max_examples=100, deadline=None)
def test_remaining_path_bounds_the_critical_path(tasks: list[tuple[str, list[str]]]) -> None:
    """The critical path's length is the largest remaining path, and it follows edges."""
    dag = build(*tasks)
    length, path = dag.critical_path()
    assert length == max(dag.remaining_path()) == len(path)
    assert length == len(dag.execution_batches)
    for up, down in itertools.pairwise(path):
        assert up in dag.dependencies(down)


@st.composite
def cyclic_graphs(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    """An acyclic graph plus a chain of 2+ existing tasks closed into a loop."""
    tasks = [(t, list(deps)) for t, deps in draw(acyclic_graphs())]
    known = {t for t, _ in tasks}
    tasks += [(f"cyc{k}", []) for k in range(draw(st.integers(2, 5))) if f"cyc{k}" not in known]
    names = [t for t, _ in tasks]
    ring = draw(st.lists(st.sampled_from(names), min_size=2, max_size=6, unique=True))
    deps = dict(tasks)
    for up, down in zip(ring, [*ring[1:], ring[0]], strict=True):
        if up not in deps[down]:
            deps[down].append(up)
    ordered = draw(st.permutations(names))
    return [(t, deps[t]) for t in ordered]


def assert_real_cycle(path: tuple[str, ...], deps: dict[str, list[str]]) -> None:
    assert len(path) >= 3, path
    assert path[0] == path[-1]
    assert len(set(path[:-1])) == len(path) - 1, "each task appears once"
    for up, down in itertools.pairwise(path):
        assert up in deps[down], f"{down} does not depend on {up}"


@given(cyclic_graphs())
@settings(max_examples=200, deadline=None)
def test_cycle_path_is_a_real_cycle(tasks: list[tuple[str, list[str]]]) -> None:
    """A cyclic graph raises CycleDetected whose path follows dependency edges back to its start."""
    with pytest.raises(CycleDetected) as info:
        build(*tasks)
    assert_real_cycle(info.value.path, dict(tasks))


@given(cyclic_graphs())
@settings(max_examples=50, deadline=None)
def test_loading_a_cyclic_file_reports_a_real_cycle(tasks: list[tuple[str, list[str]]]) -> None:
    """Loading a cyclic workflow raises CycleDetected naming a real cycle in its message."""
    doc = {
        "id": "w",
        "tasks": [
            {"id": t, "type": {"type": "Command", "command": "true"}, "depends_on": deps}
            for t, deps in tasks
        ],
    }
    with pytest.raises(CycleDetected) as info:
        dagflow.loads(json.dumps(doc), format="json")
    path = info.value.path
    assert_real_cycle(path, dict(tasks))
    assert " -> ".join(path) in str(info.value)


def test_three_cycle_message_names_the_path() -> None:
    """``a -> b -> c -> a`` is reported as exactly that loop."""
    with pytest.raises(CycleDetected) as info:
        build(("a", ["c"]), ("b", ["a"]), ("c", ["b"]))
    path = info.value.path
    assert_real_cycle(path, {"a": ["c"], "b": ["a"], "c": ["b"]})
    assert set(path) == {"a", "b", "c"}
    assert " -> ".join(path) in str(info.value)


def test_unknown_dependency_is_a_validation_error() -> None:
    """Depending on a task that does not exist is a ValidationError naming it."""
    with pytest.raises(dagflow.ValidationError, match="ghost"):
        build(("a", ["ghost"]))


# --------------------------------------------------------------------------- scale


N = 10_000


def test_long_chain_in_order_builds_without_recursion() -> None:
    """A 10,000-task chain written top-down has 10,000 levels and a full critical path."""
    dag = build(*[(f"t{i}", [f"t{i - 1}"] if i else []) for i in range(N)])
    assert len(dag.execution_batches) == N
    assert dag.level[-1] == N - 1
    length, path = dag.critical_path()
    assert length == N and path[0] == "t0" and path[-1] == f"t{N - 1}"
    assert dag.remaining_path()[0] == N
    assert len(dag.upstream(f"t{N - 1}")) == N - 1


def test_long_chain_written_backwards_builds_without_recursion() -> None:
    """A 10,000-task chain written bottom-up (every dependency later) also builds."""
    dag = build(*[(f"t{i}", [f"t{i - 1}"] if i else []) for i in reversed(range(N))])
    assert dag.execution_batches[0] == ("t0",)
    assert dag.execution_batches[-1] == (f"t{N - 1}",)
    assert dag.critical_path()[0] == N


def test_long_cycle_is_found_without_recursion() -> None:
    """A 10,000-task loop raises CycleDetected with the whole loop as its path."""
    tasks = [(f"t{i}", [f"t{(i - 1) % N}"]) for i in range(N)]
    with pytest.raises(CycleDetected) as info:
        build(*tasks)
    assert len(info.value.path) == N + 1
    assert_real_cycle(info.value.path, dict(tasks))


def test_long_chain_loads_from_json() -> None:
    """Loading a 10,000-task chain file (dependencies written later) works end to end."""
    doc = {
        "id": "chain",
        "tasks": [
            {"id": f"t{i}", "type": {"type": "Command", "command": "true"},
             "depends_on": [f"t{i - 1}"] if i else []}
            for i in reversed(range(N))
        ],
    }
    wf = dagflow.loads(json.dumps(doc), format="json")
    dag = DefaultDagBuilder().build_dag(wf)
    assert len(dag.execution_batches) == N
