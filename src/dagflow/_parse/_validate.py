"""Everything about a workflow that can be checked before it runs, in one pass.

Problems carry a path into the document (``("tasks", 3, "depends_on", 0)``); the loader
turns paths into ``file:line:col``. Ranges and id patterns come from the model's field
metadata, the same numbers the JSON Schema shows.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import attrs

from .._dag import analyze
from .._errors import Problem
from .._expr import ExprError, Ref, parse_condition, parse_template
from .._models import (
    DEFAULT_TASK_CONFIG,
    DEFAULT_WORKFLOW_CONFIG,
    ID_PATTERN,
    Approval,
    Command,
    Conditional,
    Deploy,
    Http,
    JoinRule,
    Loop,
    Plugin,
    Query,
    Scale,
    TaskDefinition,
    WorkflowDefinition,
)
from .._serde import suggest

__all__ = ["Report", "check"]

Path = tuple[str | int, ...]
_ID = re.compile(ID_PATTERN)
_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_K8S_RESOURCE = re.compile(r"(?:[a-z0-9][a-z0-9.-]*/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z")
_ID_HELP = ("use ASCII letters, digits, '-', '_' and '.', starting with a letter, digit or "
            "'_', at most 128 characters")
# fields whose strings are not interpolated at run time (ids, or checked on their own)
_NOT_TEMPLATES = {
    (Conditional, "condition"), (Conditional, "true_branch"), (Conditional, "false_branch"),
    (Loop, "items"), (Loop, "task_template"), (Plugin, "plugin_name"), (Query, "query"),
}


@attrs.define
class Report:
    """What :func:`check` found: errors stop a run, warnings do not."""

    errors: list[Problem] = attrs.Factory(list)
    warnings: list[Problem] = attrs.Factory(list)
    cycle: tuple[str, ...] | None = None

    def error(self, path: Path, message: str) -> None:
        self.errors.append(Problem(message, path=path))

    def warn(self, path: Path, message: str) -> None:
        self.warnings.append(Problem(message, path=path))


# --------------------------------------------------------------------------- field plans


@functools.cache
def _plan(cls: Any) -> tuple[tuple[tuple[str, Mapping[str, Any]], ...], tuple[str, ...],
                                   tuple[str, ...]]:
    """Per class: fields with range/pattern metadata, nested attrs fields, template fields."""
    hints = typing.get_type_hints(cls)
    ranged, nested, templates = [], [], []
    for field in attrs.fields(cls):
        if field.metadata.get("internal") or not field.init:
            continue  # not written in files (WorkflowDefinition.source_path)
        if field.metadata:
            ranged.append((field.name, field.metadata))
        hint = hints.get(field.name, Any)
        text = repr(hint)
        if any(attrs.has(a) for a in _leaves(hint)) or "TaskType" in text:
            nested.append(field.name)
        elif (cls, field.name) not in _NOT_TEMPLATES and (
            hint is Any or any(a is str for a in _leaves(hint))
        ):
            templates.append(field.name)
    return tuple(ranged), tuple(nested), tuple(templates)


def _leaves(hint: Any) -> Iterator[Any]:
    args = typing.get_args(hint)
    if not args:
        yield hint
        return
    for arg in args:
        yield from _leaves(arg)


def _check_fields(obj: Any, path: Path, report: Report) -> None:
    """Apply the metadata rules (range, pattern, length, enum) of ``obj``'s own fields."""
    for name, meta, ok in _predicates(obj.__class__):
        value = getattr(obj, name)
        if value is None or ok(value):
            continue
        _field_problems(name, meta, value, (*path, name), report)


@functools.cache
def _predicates(cls: Any) -> tuple[tuple[str, Mapping[str, Any], Callable[[Any], bool]], ...]:
    """Per field with rules: a quick test that passes every valid value."""
    return tuple((name, meta, _predicate(meta)) for name, meta in _plan(cls)[0])


def _predicate(meta: Mapping[str, Any]) -> Callable[[Any], bool]:
    low = meta.get("minimum", meta.get("exclusive_minimum"))
    high = meta.get("maximum")
    strict = "exclusive_minimum" in meta
    if "pattern" in meta:
        return lambda v: isinstance(v, str) and _ID.match(v) is not None
    if "enum" in meta:
        allowed = frozenset(meta["enum"])
        return lambda v: v in allowed
    if "min_length" in meta:
        return lambda v: isinstance(v, str) and bool(v.strip())
    if "min_items" in meta:
        return bool
    if low is None and high is None:  # pragma: no cover - every rule is handled above
        return lambda v: True

    def in_range(v: Any) -> bool:
        number = v.total_seconds() if hasattr(v, "total_seconds") else v
        if isinstance(number, bool) or not isinstance(number, int | float):
            return True
        if low is not None and (number <= low if strict else number < low):
            return False
        return high is None or number <= high

    return in_range


def _field_problems(name: str, meta: Mapping[str, Any], value: Any, where: Path,
                    report: Report) -> None:
    """The messages for a field that failed its quick test."""
    if "pattern" in meta and isinstance(value, str) and not _ID.match(value):
        report.error(where, f"invalid {name.replace('_', ' ')} {value!r}: {_ID_HELP}")
    if "min_length" in meta and isinstance(value, str) and not value.strip():
        report.error(where, f"{name} must not be empty")
    if "min_items" in meta and not value:
        report.error(where, f"{name} must not be empty")
    if "enum" in meta and isinstance(value, str) and value not in meta["enum"]:
        hint = f" (did you mean {value.upper()!r}?)" if value.upper() in meta["enum"] else ""
        report.error(where, f"{name} {value!r} is not one of {', '.join(meta['enum'])}{hint}")
    number = value.total_seconds() if hasattr(value, "total_seconds") else value
    if isinstance(number, int | float) and not isinstance(number, bool):
        low, high = meta.get("minimum"), meta.get("maximum")
        above = meta.get("exclusive_minimum")
        if low is not None and number < low:
            report.error(where, f"{name} must be at least {low}, got {value!r}")
        elif above is not None and number <= above:
            report.error(where, f"{name} must be more than {above}, got {_show(value)}")
        elif high is not None and number > high:
            report.error(where, f"{name} must be at most {high}, got {_show(value)}")


def _check_tree(obj: Any, path: Path, report: Report) -> None:
    """:func:`_check_fields` on ``obj`` and every attrs value nested in it."""
    _check_fields(obj, path, report)
    for name in _plan(obj.__class__)[1]:
        value = getattr(obj, name)
        if isinstance(value, tuple):
            for i, item in enumerate(value):
                if attrs.has(type(item)):
                    _check_tree(item, (*path, name, i), report)
        elif value is not None and attrs.has(type(value)):
            _check_tree(value, (*path, name), report)


def _show(value: Any) -> str:
    return f"{value.total_seconds():g}s" if hasattr(value, "total_seconds") else repr(value)


def _has_ref(obj: Any) -> bool:
    """Whether any interpolated field of a task type holds ``${`` (cheap, no paths)."""
    for name in _plan(obj.__class__)[2]:
        value = getattr(obj, name)
        if not value:
            continue
        if type(value) is str:
            text = value
        elif type(value) is tuple and set(map(type, value)) <= _ONLY_STR:
            text = "\x00".join(value)
        elif type(value) is dict and set(map(type, value.values())) <= _ONLY_STR:
            text = "\x00".join(value.values())
        else:
            if any(True for _ in _strings(value, ())):
                return True
            continue
        if "${" in text:
            return True
    return False


_ONLY_STR = frozenset({str})


def _template_strings(obj: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """Every string holding ``${`` in the interpolated fields of a task type."""
    _, _, templates = _plan(obj.__class__)
    for name in templates:
        yield from _strings(getattr(obj, name), (*path, name))


def _strings(value: Any, path: Path, depth: int = 0) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        if "${" in value:
            yield path, value
    elif depth > 64:
        return
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key), depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i), depth + 1)


# --------------------------------------------------------------------------- the checks


def check(
    wf: WorkflowDefinition,
    *,
    plugins: Collection[str] | None = None,
) -> Report:
    """Check ``wf``; return every error and warning found.

    Args:
        wf: The definition to check.
        plugins: Names of the plugins that exist; ``None`` skips the check (the CLI warns
            instead, since host applications register plugins in code).
    """
    report = Report()
    tasks = wf.tasks
    _check_fields(wf, (), report)
    if wf.config is not DEFAULT_WORKFLOW_CONFIG:
        _check_tree(wf.config, ("config",), report)
    graph = analyze(wf)
    index, parents = graph.index, graph.parents
    for i, first in graph.duplicates:
        report.error(("tasks", i, "id"),
                     f"duplicate task id {tasks[i].id!r} (first used by tasks[{first}])")
    for i in graph.repeated:
        report.warn(("tasks", i, "depends_on"),
                    f"task {tasks[i].id!r} lists a dependency twice")
    for problem in graph.unknown:
        dep = tasks[problem.path[1]].depends_on[problem.path[3]]  # type: ignore[index]
        report.error(problem.path, problem.message + suggest(dep, index))
    _check_variables(wf, report)
    branch_of: dict[str, tuple[int, bool]] = {}
    upstream_cache: dict[int, set[int]] = {}

    def upstream(i: int) -> set[int]:
        got = upstream_cache.get(i)
        if got is None:
            got = set()
            stack = list(parents[i])
            while stack:
                node = stack.pop()
                if node not in got:
                    got.add(node)
                    stack.extend(parents[node])
            upstream_cache[i] = got
        return got

    id_ok = _ID.match
    quick = _QUICK.get
    for i, task in enumerate(tasks):
        kind = task.type
        # the common task (a valid id, defaults, a simple type with no reference) passes
        # one cheap test per field; everything else gets the full checks and messages
        ok = quick(kind.__class__)
        if (ok is not None and ok(kind) and id_ok(task.id) and task.timeout is None
                and task.config is DEFAULT_TASK_CONFIG and task.retry_policy is None
                and task.condition is None and task.rollback is None
                and task.id not in task.depends_on):
            continue
        path: Path = ("tasks", i)
        if not id_ok(task.id) or task.timeout is not None:
            _check_fields(task, path, report)
        if task.config is not DEFAULT_TASK_CONFIG:
            _check_tree(task.config, (*path, "config"), report)
        if task.retry_policy is not None:
            _check_tree(task.retry_policy, (*path, "retry_policy"), report)
        deps = task.depends_on
        if deps and task.id in deps:
            report.error((*path, "depends_on", deps.index(task.id)),
                         f"task {task.id!r} depends on itself")
        if isinstance(kind, Conditional):
            _check_conditional(kind, i, task, index, branch_of, report)
        elif isinstance(kind, Loop):
            _check_loop(kind, path, report)
        _check_type(kind, (*path, "type"), report, plugins)
        if task.rollback is not None:
            _check_type(task.rollback, (*path, "rollback"), report, plugins)
        if task.condition is not None or _has_ref(kind) or type(kind) is Loop or (
            task.rollback is not None and _has_ref(task.rollback)
        ):
            _check_task_refs(task, i, path, index, upstream, report, wf.variables)
    if graph.cycle:
        cycle = graph.cycle
        if cycle:
            names = [tasks[n].id for n in cycle]
            report.cycle = tuple(names)
            last = tasks[cycle[-1]]
            where: Path = ("tasks", cycle[-1])
            if names[-2] in last.depends_on:
                where = (*where, "depends_on", last.depends_on.index(names[-2]))
            report.error(where, f"dependency cycle: {' -> '.join(names)}")
    _warn_exclusive_joins(wf, index, branch_of, report)
    return report


def _check_variables(wf: WorkflowDefinition, report: Report) -> None:
    names = wf.variables
    graph: dict[str, list[str]] = {}
    for name, value in names.items():
        path: Path = ("variables", name)
        if not _VAR.match(name):
            report.error(path, f"invalid variable name {name!r}: use letters, digits, '_' and "
                         "'-', starting with a letter or '_'")
        for where, text in _strings(value, path):
            for ref in _refs_in(text, where, report):
                if ref.kind in ("tasks", "item", "item_index"):
                    report.error(where, f"variable {name!r} cannot use '${{{ref.text}}}': "
                                 "variables are resolved before any task runs")
                elif ref.kind == "var" and ref.parts[0] in names:
                    graph.setdefault(name, []).append(ref.parts[0])
    # variables may reference each other, but not in a loop
    state: dict[str, int] = {}
    for start in graph:
        stack = [(start, iter(graph.get(start, ())))]
        trail = [start]
        state[start] = state.get(start, 0) or 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                trail.pop()
            elif state.get(nxt) == 1:
                loop = [*trail[trail.index(nxt):], nxt]
                report.error(("variables", start),
                             f"variables reference each other in a loop: {' -> '.join(loop)}")
                return
            elif not state.get(nxt):
                state[nxt] = 1
                trail.append(nxt)
                stack.append((nxt, iter(graph.get(nxt, ()))))


def _refs_in(text: str, path: Path, report: Report) -> list[Ref]:
    try:
        return [p for p in parse_template(text) if isinstance(p, Ref)]
    except ExprError as exc:
        report.error(path, f"{exc.message} (at character {exc.offset + 1} of {text!r})"
                     if len(text) <= 80 else f"{exc.message} (at character {exc.offset + 1})")
        return []


def _check_conditional(kind: Conditional, i: int, task: TaskDefinition, index: Mapping[str, int],
                       branch_of: dict[str, tuple[int, bool]], report: Report) -> None:
    path: Path = ("tasks", i, "type")
    seen: dict[str, str] = {}
    for branch_name, branch, flag in (("true_branch", kind.true_branch, True),
                                      ("false_branch", kind.false_branch, False)):
        for j, target in enumerate(branch):
            where = (*path, branch_name, j)
            if target == task.id:
                report.error(where, f"conditional {task.id!r} names itself in {branch_name}")
            elif target not in index:
                report.error(where, f"{branch_name} names unknown task {target!r}"
                             + suggest(target, index))
            elif target in seen:
                report.error(where, f"task {target!r} is in both branches of {task.id!r}"
                             if seen[target] != branch_name else
                             f"task {target!r} is listed twice in {branch_name}")
            else:
                seen[target] = branch_name
                branch_of[target] = (i, flag)


def _check_loop(kind: Loop, path: Path, report: Report) -> None:
    items = kind.items
    where = (*path, "type", "items")
    if isinstance(items, str):
        stripped = items.strip()
        if "${" in stripped:
            parts = _template_parts(stripped, where, report)
            if parts is not None and (len(parts) != 1 or not isinstance(parts[0], Ref)):
                report.error(where, "items must be a list, a variable name, or a single "
                             "'${...}' reference")
        elif not _VAR.match(stripped):
            report.error(where, f"items {items!r} is not a list, a variable name or a "
                         "'${...}' reference")
    template = kind.task_template
    tpath = (*path, "type", "task_template")
    if template.depends_on:
        report.error((*tpath, "depends_on"), "a loop's task_template cannot have depends_on: "
                     "put the dependencies on the Loop task")


def _template_parts(text: str, path: Path, report: Report) -> tuple[str | Ref, ...] | None:
    try:
        return parse_template(text)
    except ExprError as exc:
        report.error(path, f"{exc.message} (at character {exc.offset + 1})")
        return None


def _check_type(kind: Any, path: Path, report: Report, plugins: Collection[str] | None) -> None:
    """Field rules and the per-type checks of one task type value."""
    if attrs.has(kind.__class__):
        _check_fields(kind, path, report)
    special = _TYPE_CHECKS.get(kind.__class__)
    if special is not None:
        special(kind, path, report, plugins)


def _check_approval(kind: Approval, path: Path, report: Report, _: Any) -> None:
    people = [a.strip().casefold() for a in kind.approvers]
    if not kind.auto_approve and not people:
        report.error((*path, "approvers"),
                     "an Approval needs at least one approver (or auto_approve: true)")
    for j, person in enumerate(people):
        if not person:
            report.error((*path, "approvers", j), "approver must not be empty")
        elif person in people[:j]:
            report.error((*path, "approvers", j), f"approver {person!r} is listed twice")
    if people and kind.min_approvals > len(set(people)):
        report.error((*path, "min_approvals"),
                     f"min_approvals is {kind.min_approvals} but only {len(set(people))} "
                     "approvers are listed")


def _check_http(kind: Http, path: Path, report: Report, _: Any) -> None:
    if "${" not in kind.url and not kind.url.lower().startswith(("http://", "https://")):
        report.error((*path, "url"), f"url {kind.url!r} must start with http:// or https://")


def _check_query(kind: Query, path: Path, report: Report, _: Any) -> None:
    if "${" in kind.query:
        report.error((*path, "query"), "'${...}' is not allowed in SQL text: pass values "
                     "through 'parameters' and refer to them as bound parameters (e.g. :name)")


def _check_cluster(kind: Deploy | Scale, path: Path, report: Report, _: Any) -> None:
    namespace = kind.namespace
    if "${" not in namespace and not (_K8S_NAME.match(namespace) and len(namespace) <= 63):
        report.error((*path, "namespace"), f"namespace {namespace!r} is not a valid "
                     "Kubernetes name (lowercase letters, digits and '-', at most 63)")
    if isinstance(kind, Scale) and "${" not in kind.resource and not (
        _K8S_RESOURCE.match(kind.resource) and len(kind.resource) <= 253
    ):
        report.error((*path, "resource"), f"resource {kind.resource!r} is not a valid "
                     "Kubernetes resource name (like 'deployment/app')")
    if isinstance(kind, Deploy) and kind.manifest.startswith("-"):
        report.error((*path, "manifest"), "manifest must not start with '-'")


def _check_command(kind: Command, path: Path, report: Report, _: Any) -> None:
    if kind.command.startswith("-"):
        report.error((*path, "command"), "command must not start with '-'")


def _check_plugin(kind: Plugin, path: Path, report: Report,
                  plugins: Collection[str] | None) -> None:
    if plugins is not None and kind.plugin_name not in plugins:
        known = ", ".join(sorted(plugins)) or "none"
        report.error((*path, "plugin_name"),
                     f"unknown plugin {kind.plugin_name!r}{suggest(kind.plugin_name, plugins)}"
                     f" (registered: {known})")


def _check_loop_type(kind: Loop, path: Path, report: Report,
                     plugins: Collection[str] | None) -> None:
    template = kind.task_template
    _check_fields(template, (*path, "task_template"), report)
    if template.retry_policy is not None:
        _check_tree(template.retry_policy, (*path, "task_template", "retry_policy"), report)
    _check_type(template.type, (*path, "task_template", "type"), report, plugins)


def _quick_command(kind: Command) -> bool:
    """A Command with a plain program name and no ``${`` anywhere: nothing to report."""
    command = kind.command
    return (command[:1] != "-" and bool(command.strip()) and "${" not in command
            and not kind.env and kind.working_dir is None
            and (not kind.args or "${" not in "\x00".join(kind.args)))


#: Per built-in type, a cheap test that passes only values with nothing to report;
#: types without one (and values that fail it) get the full checks.
_QUICK: dict[type[Any], Callable[[Any], bool]] = {Command: _quick_command}


_TYPE_CHECKS: dict[type[Any], Callable[[Any, Path, Report, Any], None]] = {
    Approval: _check_approval,
    Http: _check_http,
    Query: _check_query,
    Deploy: _check_cluster,
    Scale: _check_cluster,
    Command: _check_command,
    Plugin: _check_plugin,
    Loop: _check_loop_type,
}


def _check_task_refs(task: TaskDefinition, i: int, path: Path, index: Mapping[str, int],
                     upstream: Callable[[int], set[int]], report: Report,
                     variables: Collection[str] = ()) -> None:
    """Reference syntax everywhere in the task, ``tasks.X`` only for upstream X, and a
    warning for a name that is no variable of the file (it may still come from --var or
    the environment when the workflow runs)."""
    found: list[tuple[Path, Ref, bool]] = []  # (where, ref, inside a loop template)
    for where, text, in_loop in _task_texts(task, path):
        found.extend((where, ref, in_loop) for ref in _refs_in(text, where, report))
    for where, text, in_loop in _task_conditions(task, path):
        try:
            condition = parse_condition(text)
        except ExprError as exc:
            report.error(where, f"invalid condition: {exc.message} (at character "
                         f"{exc.offset + 1} of {text!r})")
            continue
        found.extend((where, ref, in_loop) for ref in condition.refs)
    for where, ref, in_loop in found:
        if ref.kind in ("item", "item_index") and not in_loop:
            report.error(where, f"'${{{ref.text}}}' is only available inside a Loop's "
                         "task_template")
        elif ref.kind == "tasks":
            try:
                target, _, _ = ref.task_target(index.__contains__)
            except ExprError as exc:
                report.error(where, exc.message)
                continue
            if index[target] == i or index[target] not in upstream(i):
                report.error(where, f"'${{{ref.text}}}' refers to task {target!r}, which is not "
                             f"upstream of {task.id!r}: add it to depends_on")
        elif ref.kind == "var" and ref.parts[0] not in variables:
            hint = suggest(ref.parts[0], variables) or (
                f" (write ${{env.{ref.parts[0]}}} for an environment variable)"
                if len(ref.parts) == 1 else "")
            report.warn(where, f"'${{{ref.text}}}' is not a variable of this workflow: it must "
                        f"come from --var or the environment when it runs{hint}")


def _task_texts(task: TaskDefinition, path: Path,
                in_loop: bool = False) -> Iterator[tuple[Path, str, bool]]:
    for where, text in _template_strings(task.type, (*path, "type")):
        yield where, text, in_loop
    if task.rollback is not None:
        for where, text in _template_strings(task.rollback, (*path, "rollback")):
            yield where, text, in_loop
    kind = task.type
    if isinstance(kind, Loop):
        if isinstance(kind.items, str) and "${" in kind.items:
            yield (*path, "type", "items"), kind.items, in_loop
        yield from _task_texts(kind.task_template, (*path, "type", "task_template"), True)


def _task_conditions(task: TaskDefinition, path: Path,
                     in_loop: bool = False) -> Iterator[tuple[Path, str, bool]]:
    if task.condition is not None:
        yield (*path, "condition"), task.condition, in_loop
    kind = task.type
    if isinstance(kind, Conditional):
        yield (*path, "type", "condition"), kind.condition, in_loop
    elif isinstance(kind, Loop):
        yield from _task_conditions(kind.task_template, (*path, "type", "task_template"), True)


def _warn_exclusive_joins(wf: WorkflowDefinition, index: Mapping[str, int],
                          branch_of: Mapping[str, tuple[int, bool]], report: Report) -> None:
    if not branch_of:
        return
    for i, task in enumerate(wf.tasks):
        if task.join is not JoinRule.ALL_SUCCESS:
            continue
        sides: dict[int, set[bool]] = {}
        for dep in task.depends_on:
            if dep in branch_of:
                cond, flag = branch_of[dep]
                sides.setdefault(cond, set()).add(flag)
        for cond, flags in sides.items():
            if len(flags) == 2:
                report.warn(("tasks", i, "join"),
                            f"task {task.id!r} has join all_success but depends on both "
                            f"branches of {wf.tasks[cond].id!r}: one branch is always skipped, "
                            "so it never runs (use join: default or one_success)")
