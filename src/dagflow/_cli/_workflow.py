"""``dagflow validate``, ``plan`` and ``schema``: workflow files, before anything runs;
and loading a file for the commands that run or draw it (``run``, ``graph``).

A file with problems prints each one as ``FILE:LINE:COL: message`` on stderr and exits 2.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from .._errors import ParseError, Problem, ValidationError
from ._common import EXIT_BAD_INPUT, EXIT_OK, fail

__all__ = ["VAR_HELP", "load", "parse_vars", "print_problems", "register"]


def print_problems(problems: Sequence[Problem], *, kind: str = "") -> None:
    """One line each on stderr, ``FILE:LINE:COL: kind: message`` when ``kind`` is given."""
    for problem in problems:
        text = str(problem)
        if kind and problem.line is not None:
            head, _, rest = text.partition(": ")
            text = f"{head}: {kind}: {rest}"
        elif kind:
            text = f"{kind}: {text}"
        click.echo(text, err=True)


_UNDECLARED = object()
VAR_HELP = ("Set a variable, NAME=VALUE. Repeatable. VALUE stays text when the workflow's "
            "default for NAME is text; otherwise it is read as JSON when it is JSON "
            "(5, true, [1, 2]), else kept as text.")


def _parse_var(text: str, declared: Mapping[str, Any]) -> tuple[str, Any]:
    """``NAME=VALUE``, VALUE typed like the workflow's default for NAME (see VAR_HELP)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        fail(f"--var {text!r}: write NAME=VALUE (for example --var version=1.2.0)")
    default = declared.get(name, _UNDECLARED)
    if isinstance(default, str):
        return name, raw  # "1.10" stays "1.10", not the number 1.1
    try:
        value = json.loads(raw)
    except ValueError:
        return name, raw
    if (default is _UNDECLARED and isinstance(value, int | float)
            and not isinstance(value, bool) and json.dumps(value) != raw.strip()):
        return name, raw  # "1.10" or "1e3" for a variable the file does not declare
    return name, value


def parse_vars(values: Sequence[str], declared: Mapping[str, Any]) -> dict[str, Any]:
    """The ``--var`` values, each typed as VAR_HELP says."""
    return dict(_parse_var(v, declared) for v in values)


def _count(n: int, word: str) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def load(path: str) -> tuple[Any, list[Problem]]:
    """Load ``path``, returning the definition and its warnings (exit 2 on problems)."""
    from .._parse import DefaultWorkflowParser, _format_for, read_file

    parser = DefaultWorkflowParser()
    try:
        data = read_file(path, parser.limits)
        wf, warnings = parser.parse(data, format=_format_for(path), filename=path,
                                    source_path=os.path.abspath(path))
        return wf, warnings
    except (ParseError, ValidationError) as exc:
        print_problems(exc.problems)
        print_problems(getattr(exc, "warnings", ()), kind="warning")
        sys.exit(EXIT_BAD_INPUT)


def _plugin_warnings(wf: Any, filename: str) -> list[Problem]:
    """Plugins named by the file but not installed as ``dagflow.plugins`` entry points.

    Only a warning: host applications register plugins in code, which the CLI cannot see.
    """
    from importlib.metadata import entry_points

    from .._models import Loop, Plugin

    installed = {ep.name for ep in entry_points(group="dagflow.plugins")}
    out = []
    for task in wf.tasks:
        kind = task.type.task_template.type if isinstance(task.type, Loop) else task.type
        if isinstance(kind, Plugin) and kind.plugin_name not in installed:
            out.append(Problem(
                f"task {task.id!r}: plugin {kind.plugin_name!r} is not installed as a "
                "'dagflow.plugins' entry point (fine if your application registers it with "
                "Engine(plugins=...))", filename,
            ))
    return out


# --------------------------------------------------------------------------- commands


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout.")
def validate(files: tuple[str, ...], as_json: bool) -> None:
    """Check workflow FILES without running anything.

    Prints one line per problem (FILE:LINE:COL: message) on stderr, and reports every
    problem of a file at once. Exit code 0 when every file is valid, 2 otherwise.

    \b
    Examples:
      dagflow validate deploy.yaml
      dagflow validate workflows/*.yaml --json
    """
    from .._parse import DefaultWorkflowParser, _format_for, read_file

    parser = DefaultWorkflowParser()
    report = []
    bad = 0
    for path in files:
        entry: dict[str, Any] = {"file": path, "valid": True, "problems": [], "warnings": []}
        try:
            wf, warnings = parser.parse(read_file(path, parser.limits),
                                        format=_format_for(path), filename=path)
            warnings = [*warnings, *_plugin_warnings(wf, path)]
            entry["tasks"] = len(wf.tasks)
        except (ParseError, ValidationError) as exc:
            bad += 1
            entry["valid"] = False
            entry["error"] = type(exc).__name__
            entry["problems"] = [_problem_json(p) for p in exc.problems]
            warnings = list(getattr(exc, "warnings", ()))
            if not as_json:
                print_problems(exc.problems)
        entry["warnings"] = [_problem_json(p) for p in warnings]
        if not as_json:
            print_problems(warnings, kind="warning")
            if entry["valid"]:
                click.echo(f"{path}: valid ({_count(entry['tasks'], 'task')})")
        report.append(entry)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif len(files) > 1:
        click.echo(f"{len(files) - bad} valid, {bad} invalid", err=bool(bad))
    sys.exit(EXIT_BAD_INPUT if bad else EXIT_OK)


def _problem_json(problem: Problem) -> dict[str, Any]:
    """A problem as ``validate --json`` reports it."""
    return {"file": problem.file, "line": problem.line, "col": problem.col,
            "message": problem.message, "path": list(problem.path)}


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help=VAR_HELP)
@click.option("--durations", type=click.Path(dir_okay=False, exists=True),
              help="JSON file {task_id: seconds} to weigh the critical path.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
def plan(file: str, variables: tuple[str, ...], durations: str | None, as_json: bool) -> None:
    """Show how FILE would run: levels, critical path and parallelism.

    A task's level is one more than its deepest dependency's; at run time each task
    starts as soon as its own dependencies finish, whatever its level.
    The critical path counts steps, or seconds with --durations.

    \b
    Examples:
      dagflow plan deploy.yaml
      dagflow plan deploy.yaml --var image_tag=abc123 --json
    """
    from .._dag import DefaultDagBuilder
    from .._expr import ExprError, resolve_variables

    wf, warnings = load(file)
    print_problems([*warnings, *_plugin_warnings(wf, file)], kind="warning")
    dag = DefaultDagBuilder().build_dag(wf)
    weights = None
    if durations:
        try:
            with open(durations, encoding="utf-8") as fh:
                weights = {str(k): float(v) for k, v in json.load(fh).items()}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            fail(f"--durations {durations}: expected a JSON object of numbers ({exc})")
    length, path = dag.critical_path(weights)
    names = {"id": wf.id, "name": wf.name}
    overrides = parse_vars(variables, wf.variables)
    unresolved = None
    try:
        resolved = resolve_variables(wf.variables, overrides, os.environ, names)
    except ExprError as exc:
        unresolved = str(exc)
        try:
            resolved = resolve_variables(wf.variables, overrides, os.environ, names,
                                         partial=True)
        except ExprError:
            resolved = {}
    limit = wf.config.max_parallel_tasks
    result = {
        "workflow": wf.id,
        "tasks": len(wf.tasks),
        "levels": [list(batch) for batch in dag.execution_batches],
        "critical_path": {"tasks": list(path), "length": length,
                          "unit": "seconds" if weights else "steps"},
        "max_parallelism": min(dag.max_parallelism, limit),
        "max_parallel_tasks": limit,
        "variables": resolved,
        "unresolved": unresolved,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(f"{wf.id}: {_count(len(wf.tasks), 'task')} in "
               f"{_count(len(dag.execution_batches), 'level')}")
    for number, batch in enumerate(dag.execution_batches, 1):
        click.echo(f"  level {number}: {', '.join(batch)}")
    size = f"{length:g}s" if weights else _count(int(length), "step")
    click.echo(f"critical path ({size}): {' -> '.join(path)}")
    click.echo(f"max parallelism: {result['max_parallelism']} (the widest level has "
               f"{_count(dag.max_parallelism, 'task')}; max_parallel_tasks {limit})")
    if resolved:
        click.echo("variables:")
        for name, value in resolved.items():
            click.echo(f"  {name} = {json.dumps(value, default=str)}")
    if unresolved:
        click.echo(f"warning: {unresolved}", err=True)


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of stdout.")
def schema(output: str | None) -> None:
    """Print the JSON Schema (Draft 2020-12) of workflow files.

    Point your editor at it for completion and inline errors, e.g. with the YAML
    language server, put this first line in a workflow file:

    \b
      # yaml-language-server: $schema=./workflow.schema.json

    \b
    Examples:
      dagflow schema > workflow.schema.json
      dagflow schema -o .vscode/dagflow.schema.json
    """
    from .._schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    else:
        click.echo(text, nl=False)


def register(group: click.Group) -> None:
    """Add the commands on workflow files to ``group``."""
    for command in (validate, plan, schema):
        group.add_command(command)
