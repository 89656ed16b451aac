"""The default DagBuilder: adjacency, levels, cycle paths and critical paths in O(V+E).

Tasks are numbered in definition order and the graph is kept as index lists, so the
scheduler can count dependencies without hashing ids. A Conditional's branch tasks get an
implicit edge from the Conditional (they run after it decides).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from itertools import accumulate, chain
from typing import Any

import attrs

from ._errors import CycleDetected, Problem, ValidationError
from ._models import Conditional, TaskDefinition, WorkflowDefinition

__all__ = ["Analysis", "DagEdge", "DagNode", "DefaultDagBuilder", "WorkflowDag", "analyze",
           "find_cycle"]


@attrs.frozen
class DagNode:
    """A task in the graph with its topological level (sources are level 0)."""

    task_id: str
    task_def: TaskDefinition
    level: int


@attrs.frozen
class DagEdge:
    """``from_task`` must finish before ``to_task`` starts."""

    from_task: str
    to_task: str


@attrs.frozen(eq=False)
class WorkflowDag:
    """A workflow's dependency graph.

    Attributes:
        ids: Task ids in definition order; everything else refers to tasks by index here.
        parents: For each task, the indexes of the tasks it waits for.
        children: For each task, the indexes of the tasks waiting for it (built on
            first use).
        level: Each task's topological level.
        execution_batches: The seed's batches: tasks by level, in definition order.
    """

    definition: WorkflowDefinition
    ids: tuple[str, ...]
    index: Mapping[str, int]
    parents: Sequence[Sequence[int]]
    level: Sequence[int]
    execution_batches: tuple[tuple[str, ...], ...]

    @functools.cached_property
    def children(self) -> Sequence[Sequence[int]]:
        """For each task, the indexes of the tasks waiting for it."""
        children: list[list[int]] = [[] for _ in self.ids]
        for c, ps in enumerate(self.parents):
            for p in ps:
                children[p].append(c)
        return children

    @functools.cached_property
    def nodes(self) -> dict[str, DagNode]:
        """The seed's ``nodes`` map (built on first use)."""
        tasks = self.definition.tasks
        return {t.id: DagNode(t.id, t, self.level[i]) for i, t in enumerate(tasks)}

    @functools.cached_property
    def edges(self) -> tuple[DagEdge, ...]:
        """The seed's edge list (built on first use)."""
        ids = self.ids
        return tuple(DagEdge(ids[p], ids[c]) for c, ps in enumerate(self.parents) for p in ps)

    def dependencies(self, task_id: str) -> tuple[str, ...]:
        """Tasks that must finish before ``task_id`` (explicit and implicit)."""
        return tuple(self.ids[p] for p in self.parents[self.index[task_id]])

    def dependents(self, task_id: str) -> tuple[str, ...]:
        """Tasks that wait for ``task_id``."""
        return tuple(self.ids[c] for c in self.children[self.index[task_id]])

    def upstream(self, task_id: str) -> set[str]:
        """Every task ``task_id`` transitively depends on."""
        seen: set[int] = set()
        stack = list(self.parents[self.index[task_id]])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.parents[node])
        return {self.ids[i] for i in seen}

    def _weights(self, durations: Mapping[str, float] | None) -> list[float]:
        if durations is None:
            return [1.0] * len(self.ids)
        return [float(durations.get(task_id, 0.0)) for task_id in self.ids]

    def _order(self) -> list[int]:
        return [self.index[t] for batch in self.execution_batches for t in batch]

    def critical_path(
        self, durations: Mapping[str, float] | None = None
    ) -> tuple[float, tuple[str, ...]]:
        """The longest path through the graph, weighted by ``durations`` (seconds).

        Without durations every task weighs 1, so the length is the number of steps.

        Returns:
            The path's total duration and its task ids, first to last.
        """
        if not self.ids:
            return 0.0, ()
        weight = self._weights(durations)
        finish = [0.0] * len(self.ids)
        via = [-1] * len(self.ids)
        for node in self._order():
            best, arg = 0.0, -1
            for p in self.parents[node]:
                if finish[p] > best or arg < 0:
                    best, arg = finish[p], p
            finish[node] = best + weight[node]
            via[node] = arg
        # among equal finishes take the last in topological order, so a path runs on
        # through zero-weight tasks to the end of the workflow
        order = self._order()
        end = max(reversed(order), key=finish.__getitem__)
        path = [end]
        while via[path[-1]] >= 0:
            path.append(via[path[-1]])
        return finish[end], tuple(self.ids[i] for i in reversed(path))

    def remaining_path(self, durations: Mapping[str, float] | None = None) -> list[float]:
        """For each task, the longest path from its start to the end of the workflow.

        The scheduler starts the ready task with the largest value first.
        """
        weight = self._weights(durations)
        rest = [0.0] * len(self.ids)
        children = self.children  # once: a cached property of a slotted class is not free
        get = rest.__getitem__
        for node in reversed(self._order()):
            below = children[node]
            rest[node] = weight[node] + (max(map(get, below)) if below else 0.0)
        return rest

    @property
    def max_parallelism(self) -> int:
        """The widest level: how many tasks could run at once with unlimited slots."""
        return max((len(b) for b in self.execution_batches), default=0)


@attrs.frozen
class Analysis:
    """One pass over a definition's dependencies, shared by the validator and the builder.

    Attributes:
        index: Task id -> position (first occurrence wins).
        parents: For each task, the indexes it waits for (explicit and implicit).
        duplicates: ``(index, first index)`` for every repeated task id.
        repeated: Tasks that list a dependency more than once (kept once in ``parents``).
        unknown: Problems for dependencies that name no task.
        cycle: Task indexes around a cycle, upstream first and closed, or ``()``.
        dag: The graph, when there is no unknown dependency and no cycle.
    """

    index: dict[str, int]
    parents: list[list[int]]
    duplicates: list[tuple[int, int]]
    repeated: list[int]
    unknown: list[Problem]
    cycle: list[int]
    dag: WorkflowDag | None


def analyze(workflow: WorkflowDefinition) -> Analysis:
    """Index the tasks, resolve dependencies, order them by level, find a cycle."""
    tasks = workflow.tasks
    n = len(tasks)
    ids = tuple([t.id for t in tasks])
    # reversed, so that the first of repeated ids wins
    index = dict(zip(reversed(ids), range(n - 1, -1, -1), strict=True))
    duplicates: list[tuple[int, int]] = []
    if len(index) != n:
        duplicates = [(i, index[t]) for i, t in enumerate(ids) if index[t] != i]
    unknown: list[Problem] = []
    repeated: list[int] = []
    lookup = index.get
    # all dependencies at once, so the common case runs in C-level maps: look every id
    # up, then cut the flat list back into one list per task
    dep_lists = [t.depends_on for t in tasks]
    flat = list(chain.from_iterable(dep_lists))
    found = list(map(lookup, flat))
    ends = list(accumulate(map(len, dep_lists)))
    cut: Any = found.__getitem__  # typed loosely: mypy cannot pick the slice overload
    parents: list[list[int]] = list(map(cut, map(slice, [0, *ends], ends)))
    if None in found:
        parents = [[] for _ in range(n)]  # rebuilt below, reporting each unknown id
        for i, task in enumerate(tasks):
            if task.depends_on:
                _add_dep(parents[i], i, task, index, unknown)
    elif sum(map(len, map(set, parents))) != len(flat):  # a task lists a dependency twice
        for i, ps in enumerate(parents):
            if len(set(ps)) != len(ps):
                repeated.append(i)
                parents[i] = list(dict.fromkeys(ps))
    kinds = [t.type for t in tasks]
    if any(issubclass(k, Conditional) for k in set(map(type, kinds))):
        for i, kind in enumerate(kinds):
            if isinstance(kind, Conditional):
                for branch in (kind.true_branch, kind.false_branch):
                    for target in branch:
                        t = lookup(target)
                        if t is not None and t != i and i not in parents[t]:
                            parents[t].append(i)
    cycle: list[int] = []
    # when every dependency is written before its dependent (the usual way), levels take
    # one pass and no cycle is possible; otherwise Kahn's algorithm sorts it out
    level = [0] * n
    get = level.__getitem__
    in_order = True
    for i, ps in enumerate(parents):
        if ps:
            if max(ps) >= i:
                in_order = False
                break
            level[i] = max(map(get, ps)) + 1
    if in_order:
        buckets: list[list[str]] = [[] for _ in range(max(level, default=-1) + 1)]
        for task_id, lv in zip(ids, level, strict=True):
            buckets[lv].append(task_id)
        batches = [tuple(b) for b in buckets]
    else:
        for i, ps in enumerate(parents):
            if i in ps:  # reported as "depends on itself", not as a cycle
                ps.remove(i)
        level, batches, left = _kahn(parents, ids)
        if left:
            cycle = find_cycle(parents, left)
    dag = None
    if not cycle and not unknown:
        dag = WorkflowDag(
            definition=workflow,
            ids=ids,
            index=index,
            parents=parents,
            level=level,
            execution_batches=tuple(batches),
        )
        # kept on the value, for DefaultDagBuilder: validating built it already
        workflow._derived.setdefault("dag", dag)
    return Analysis(index, parents, duplicates, repeated, unknown, cycle, dag)


def _kahn(parents: list[list[int]], ids: tuple[str, ...]
          ) -> tuple[list[int], list[tuple[str, ...]], list[int]]:
    """Levels by Kahn's algorithm; also returns the tasks left over by a cycle."""
    n = len(parents)
    children: list[list[int]] = [[] for _ in range(n)]
    waiting = [0] * n
    for c in range(n):
        ps = parents[c]
        waiting[c] = len(ps)
        for p in ps:
            children[p].append(c)
    level = [0] * n
    current = [i for i in range(n) if not waiting[i]]
    batches: list[tuple[str, ...]] = []
    depth = 0
    while current:
        batches.append(tuple([ids[i] for i in current]))
        nxt: list[int] = []
        for node in current:
            level[node] = depth
            for c in children[node]:
                waiting[c] -= 1
                if not waiting[c]:
                    nxt.append(c)
        nxt.sort()
        current = nxt
        depth += 1
    return level, batches, [i for i in range(n) if waiting[i]]


def _add_dep(mine: list[int], i: int, task: TaskDefinition, index: Mapping[str, int],
             unknown: list[Problem]) -> None:
    for j, dep in enumerate(task.depends_on):
        p = index.get(dep)
        if p is None:
            unknown.append(Problem(f"task {task.id!r} depends on unknown task {dep!r}",
                                   path=("tasks", i, "depends_on", j)))
        elif p != i and p not in mine:
            mine.append(p)


def find_cycle(parents: Sequence[Sequence[int]], candidates: Sequence[int]) -> list[int]:
    """A cycle among ``candidates`` (nodes Kahn's algorithm could not order), upstream first.

    Iterative DFS along parent edges, so deep graphs cannot overflow the stack.
    """
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done
    for start in candidates:
        if start in state:
            continue
        path: list[int] = [start]
        its: list[Any] = [iter(parents[start])]
        state[start] = 1
        while path:
            nxt = next(its[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                its.pop()
                continue
            mark = state.get(nxt)
            if mark == 1:  # back edge: the cycle is path[from nxt:]
                cycle = path[path.index(nxt):]
                # path follows "depends on" edges; report upstream -> downstream
                ordered = list(reversed(cycle))
                first = ordered.index(min(ordered))  # start at the earliest-defined task
                ordered = ordered[first:] + ordered[:first]
                return [*ordered, ordered[0]]
            if mark is None:
                state[nxt] = 1
                path.append(nxt)
                its.append(iter(parents[nxt]))
    return []


@attrs.define
class DefaultDagBuilder:
    """Builds :class:`WorkflowDag` s; the default :class:`~dagflow.DagBuilder`."""

    def build_dag(self, workflow: WorkflowDefinition) -> WorkflowDag:
        """Build the graph of ``workflow`` (reusing the one built while it was validated).

        Raises:
            ValidationError: A dependency names no task.
            CycleDetected: The dependencies form a cycle (``.path`` names it).
        """
        built: WorkflowDag | None = workflow._derived.get("dag")
        if built is not None:  # built from this value while it was validated
            return built
        graph = analyze(workflow)
        if graph.unknown:
            raise ValidationError(graph.unknown)
        if graph.cycle:
            raise _cycle_error(workflow.tasks, graph.cycle)
        assert graph.dag is not None
        return graph.dag

    def detect_cycles(self, dag: WorkflowDag) -> None:
        """Raise :class:`CycleDetected` if ``dag`` has a cycle (a built DAG never does)."""
        self.build_dag(dag.definition)

    def topological_sort(self, dag: WorkflowDag) -> list[list[str]]:
        """The seed's batches: ids by level, each level in definition order."""
        return [list(batch) for batch in dag.execution_batches]

    def optimize_parallelism(self, dag: WorkflowDag) -> WorkflowDag:
        """Return ``dag`` unchanged: the scheduler already starts each task when it is ready
        and orders ready tasks by their remaining critical path."""
        return dag


def _cycle_error(tasks: Sequence[TaskDefinition], cycle: list[int]) -> CycleDetected:
    names = tuple(tasks[i].id for i in cycle)
    # point at the dependency that closes the loop: the last task waits for the one before
    last = tasks[cycle[-1]]
    path: tuple[str | int, ...] = ("tasks", cycle[-1])
    if names[-2] in last.depends_on:
        path = (*path, "depends_on", last.depends_on.index(names[-2]))
    message = f"dependency cycle: {' -> '.join(names)}"
    return CycleDetected([Problem(message, path=path)], path=names)
