"""YAML/JSON -> :class:`WorkflowDefinition`, with every problem reported at its line."""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal

import attrs
from cattrs.errors import BaseValidationError

from .._errors import CycleDetected, ParseError, Problem, ValidationError
from .._gc import building
from .._models import JoinRule, RetryPolicy, TaskDefinition, WorkflowDefinition
from .._serde import make_converter, struct_errors
from ._load import DEFAULT_LIMITS, ParseLimits, Positions, load_data, positions_for, relocate
from ._validate import Report, check

__all__ = [
    "DefaultWorkflowParser",
    "ParseLimits",
    "dump",
    "load",
    "loads",
    "with_source",
]

logger = logging.getLogger("dagflow")
# files this large hold about 10,000 tasks or more (PROMOTE_AT): promote what they build
_PROMOTE_BYTES = 1_000_000
Format = Literal["yaml", "json"]


def _format_for(path: str | os.PathLike[str]) -> Format:
    return "json" if str(path).lower().endswith(".json") else "yaml"


@attrs.define
class DefaultWorkflowParser:
    """The default :class:`~dagflow.WorkflowParser`: strict, bounded, all problems at once.

    Args:
        task_types: Custom task types, ``{"Name": AttrsClass}``, on top of the built-ins.
        plugins: Plugin names that exist; ``None`` skips checking ``plugin_name``.
        limits: Size, depth and count limits for untrusted files.
    """

    task_types: Mapping[str, type[Any]] = attrs.field(factory=dict)
    plugins: Collection[str] | None = None
    limits: ParseLimits = DEFAULT_LIMITS

    # ------------------------------------------------------------------ protocol

    def parse_yaml(self, text: str | bytes, *, filename: str | None = None) -> WorkflowDefinition:
        """Parse and validate a YAML workflow.

        Raises:
            ParseError: Not YAML, unsafe, or the wrong shape/types.
            ValidationError: Well-formed but wrong (every problem listed).
        """
        return self.parse(text, format="yaml", filename=filename)[0]

    def parse_json(self, text: str | bytes, *, filename: str | None = None) -> WorkflowDefinition:
        """Parse and validate a JSON workflow (see :meth:`parse_yaml`)."""
        return self.parse(text, format="json", filename=filename)[0]

    def validate(self, workflow: WorkflowDefinition) -> None:
        """Check a definition built in Python (files are checked when parsed).

        Raises:
            ValidationError: Listing every problem, each with its path in the document.
        """
        report = check(workflow, plugins=self.plugins)
        _raise_for(report, None, None)
        if self.plugins is None:
            workflow._derived["valid"] = True

    def normalize(self, workflow: WorkflowDefinition) -> WorkflowDefinition:
        """The canonical form: defaults explicit, ``on_failure: Retry`` given the default
        retry policy, duplicate dependencies dropped, approvers trimmed and case-folded."""
        return attrs.evolve(workflow, tasks=tuple(_normalize_task(t) for t in workflow.tasks))

    # ------------------------------------------------------------------ the work

    def parse(
        self,
        data: str | bytes,
        *,
        format: Format = "yaml",
        filename: str | None = None,
        source_path: str | None = None,
    ) -> tuple[WorkflowDefinition, list[Problem]]:
        """Parse and validate; return the definition and the warnings.

        ``filename`` is how messages name the text; ``source_path`` is the file it was
        read from (``WorkflowDefinition.source_path``), if any.

        Raises:
            ParseError: Not YAML/JSON, unsafe, or the wrong shape/types.
            ValidationError: Well-formed but wrong.
        """
        # the cyclic GC would traverse what is being built over and over (40% of the
        # time at 100k tasks, and superlinear): see _gc.py
        with building(self.limits.max_tasks if len(data) > _PROMOTE_BYTES else 0):
            raw, text = load_data(data, format=format, filename=filename, limits=self.limits)
            wf = self._structure(raw, text, filename, format)
            if source_path is not None:
                wf = attrs.evolve(wf, source_path=source_path)
            del raw
            report = check(wf, plugins=self.plugins)
        if report.errors:
            _raise_for(report, _positions(text, self.limits), filename)
        if self.plugins is None:  # valid in any engine (plugins are checked at creation)
            wf._derived["valid"] = True
        warnings = _place(report.warnings, _positions(text, self.limits)
                          if report.warnings else None, filename)
        return wf, warnings

    def _structure(self, raw: Any, text: str, filename: str | None,
                   format: Format) -> WorkflowDefinition:
        if not isinstance(raw, dict):
            positions = _positions(text, self.limits)
            where = (positions.locate(()) if positions else None) or (1, 1)
            raise ParseError([Problem(
                "a workflow file must be a mapping with 'id' and 'tasks' at the top level",
                filename, *where,
            )])
        tasks = raw.get("tasks")
        if isinstance(tasks, list) and len(tasks) > self.limits.max_tasks:
            raise ParseError([Problem(
                f"{len(tasks)} tasks is over the limit of {self.limits.max_tasks} "
                "(raise ParseLimits.max_tasks to allow it)", filename,
            )])
        if format == "json":  # the YAML reader enforces max_depth as it goes
            _check_depth(raw, self.limits, text, filename)
        converter = make_converter(self.task_types)
        try:
            return converter.structure(raw, WorkflowDefinition)
        except BaseValidationError as exc:
            found = struct_errors(exc)
        except (TypeError, ValueError, KeyError) as exc:  # a hook failed outside a field
            found = [((), "type", str(exc))]
        except RecursionError:
            raise ParseError([Problem("document nests too deeply", filename)]) from None
        positions = _positions(text, self.limits)
        # "missing key 'tasks'" says nothing new next to "unknown key 'taks' (did you mean
        # 'tasks'?)" in the same mapping
        suggested = {(path[:-1], m.rsplit("'", 2)[-2]) for path, kind, m in found
                     if kind == "unknown" and "did you mean" in m}
        problems = []
        for path, kind, message in found:
            if kind == "missing" and path and (path[:-1], path[-1]) in suggested:
                continue
            spot = positions.locate(path, key=kind == "unknown") if positions else None
            line, col = spot or (None, None)
            problems.append(Problem(message, filename, line, col, path))
        if all(kind != "missing" and path and isinstance(path[-1], str)
               for path, kind, _ in found):
            # each problem is one key's (misspelt, or a wrong value): without those keys
            # the file may still have a shape, so check the rest too and report every
            # problem at once (a misspelt key, a bad duration and an unknown dependency)
            problems.extend(self._check_without(raw, [p for p, _, _ in found],
                                                positions, filename))
        problems.sort(key=_order)
        # wrong shapes and types are parse errors; right types with wrong values (an
        # unknown task type, a bad duration) are validation errors
        if all(kind == "value" for _, kind, _ in found):
            raise ValidationError(problems)
        raise ParseError(problems)

    def _check_without(self, raw: dict[str, Any], at_fault: list[tuple[Any, ...]],
                       positions: Positions | None, filename: str | None) -> list[Problem]:
        """The validation errors of ``raw`` with the keys at ``at_fault`` taken out (none
        when it has no shape without them)."""
        salvaged = copy.deepcopy(raw)
        try:
            for path in at_fault:
                node: Any = salvaged
                for part in path[:-1]:
                    node = node[part]
                node.pop(path[-1], None)
            wf = make_converter(self.task_types).structure(salvaged, WorkflowDefinition)
        except (BaseValidationError, TypeError, ValueError, KeyError, RecursionError):
            return []
        return _place(check(wf, plugins=self.plugins).errors, positions, filename)


def _check_depth(raw: dict[str, Any], limits: ParseLimits, text: str,
                 filename: str | None) -> None:
    """JSON has no depth limit of its own below the recursion limit; free-form values
    (variables, plugin config) are the only places deep nesting can hide."""
    stack: list[tuple[Any, int]] = [(raw.get("variables"), 1)]
    tasks = raw.get("tasks")
    if isinstance(tasks, list) and '"config"' in text:  # plugin configs are free-form
        for task in tasks:
            if isinstance(task, dict) and isinstance(task.get("type"), dict):
                config = task["type"].get("config")
                if isinstance(config, dict | list) and config:
                    stack.append((config, 4))
    limit = limits.max_depth
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            where = relocate(text, limits, filename)
            raise ParseError([where or Problem(f"nesting deeper than {limit} levels", filename)])
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))


def _positions(text: str, limits: ParseLimits) -> Positions | None:
    return positions_for(text, limits)


def _order(problem: Problem) -> tuple[int, int]:
    return (problem.line or 0, problem.col or 0)


def _place(problems: Iterable[Problem], positions: Positions | None,
           filename: str | None) -> list[Problem]:
    out = []
    for p in problems:
        line, col = (positions.locate(p.path) if positions else None) or (None, None)
        out.append(attrs.evolve(p, file=filename, line=line, col=col))
    out.sort(key=_order)
    return out


def _raise_for(report: Report, positions: Positions | None, filename: str | None) -> None:
    if not report.errors:
        return
    errors = _place(report.errors, positions, filename)
    warnings = _place(report.warnings, positions, filename)
    if report.cycle is not None:
        raise CycleDetected(errors, path=report.cycle, warnings=warnings)
    raise ValidationError(errors, warnings=warnings)


def _normalize_task(task: TaskDefinition) -> TaskDefinition:
    changes: dict[str, Any] = {}
    if task.config.on_failure == "Retry" and task.retry_policy is None:
        changes["retry_policy"] = RetryPolicy()
    deps = tuple(dict.fromkeys(task.depends_on))
    if deps != task.depends_on:
        changes["depends_on"] = deps
    approvers = getattr(task.type, "approvers", None)
    if approvers:
        clean = tuple(dict.fromkeys(a.strip().casefold() for a in approvers))
        if clean != approvers:
            changes["type"] = attrs.evolve(task.type, approvers=clean)  # type: ignore[call-arg]
    if task.join is None:  # pragma: no cover - defensive for hand-built objects
        changes["join"] = JoinRule.DEFAULT
    return attrs.evolve(task, **changes) if changes else task


# --------------------------------------------------------------------------- functions


def loads(
    text: str | bytes,
    *,
    format: Format = "yaml",
    filename: str | None = None,
    task_types: Mapping[str, type[Any]] | None = None,
    plugins: Collection[str] | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> WorkflowDefinition:
    """Parse and validate a workflow from text.

    Args:
        text: YAML or JSON text (or UTF-8 bytes).
        format: ``"yaml"`` or ``"json"``.
        filename: Shown in error messages.
        task_types: Custom task types, ``{"Name": AttrsClass}``.
        plugins: Plugin names that exist; ``None`` skips that check.
        limits: Size, depth and count limits.

    Raises:
        ParseError: Not YAML/JSON, unsafe, or the wrong shape/types.
        ValidationError: Well-formed but wrong; ``.problems`` lists every problem.

    Example:
        >>> wf = loads("id: hello\\ntasks: [{id: hi, type: {type: Command, command: echo}}]")
        >>> wf.tasks[0].name
        'hi'
    """
    parser = DefaultWorkflowParser(task_types=task_types or {}, plugins=plugins, limits=limits)
    wf, warnings = parser.parse(text, format=format, filename=filename)
    for warning in warnings:
        logger.warning("%s", warning)
    return wf


def load(
    path: str | os.PathLike[str],
    *,
    task_types: Mapping[str, type[Any]] | None = None,
    plugins: Collection[str] | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> WorkflowDefinition:
    """Read, parse and validate a workflow file (``.json`` as JSON, anything else as YAML).

    Raises:
        ParseError: Unreadable, not YAML/JSON, unsafe, or the wrong shape/types.
        ValidationError: Well-formed but wrong.
    """
    data = read_file(path, limits)
    parser = DefaultWorkflowParser(task_types=task_types or {}, plugins=plugins, limits=limits)
    wf, warnings = parser.parse(data, format=_format_for(path), filename=str(path),
                                source_path=os.path.abspath(path))
    for warning in warnings:
        logger.warning("%s", warning)
    return wf


def with_source(workflow: WorkflowDefinition, path: str) -> WorkflowDefinition:
    """``workflow`` as read from the file at ``path`` (``source_path``), keeping what was
    derived from it (its graph, that it was validated): the path changes neither."""
    moved = attrs.evolve(workflow, source_path=path)
    moved._derived.update(workflow._derived)
    return moved


def read_file(path: str | os.PathLike[str], limits: ParseLimits = DEFAULT_LIMITS) -> bytes:
    """Read at most ``limits.max_bytes + 1`` bytes (so a huge file is refused cheaply).

    Raises:
        ParseError: The file cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            return fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise ParseError([Problem(f"cannot read file: {exc.strerror or exc}", str(path))]) from None


_FOLDED = frozenset("\x85\u2028\u2029")


def _represent_str(representer: Any, value: str) -> Any:
    """Strings holding NEL/LS/PS are double-quoted, where YAML escapes them: ruamel would
    write them raw in single quotes, and every reader folds them into a space there."""
    style = '"' if not _FOLDED.isdisjoint(value) else None
    return representer.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def dump(workflow: WorkflowDefinition, *, format: Format = "json",
         task_types: Mapping[str, type[Any]] | None = None) -> str:
    """Write a definition as JSON or YAML; ``loads(dump(wf)) == wf``."""
    data = make_converter(task_types).unstructure(workflow)
    if format == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)  # "rt" keeps the model's field order
    yaml.default_flow_style = False
    yaml.representer.add_representer(str, _represent_str)
    out = io.StringIO()
    yaml.dump(json.loads(json.dumps(data)), out)  # plain types only (StrEnum -> str)
    return out.getvalue()
