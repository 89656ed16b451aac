"""``dagflow graph``: draw a workflow (Mermaid, Graphviz DOT or one HTML page), or a run
of it with ``--instance``.

The drawing itself lives in ``dagflow._graph``; this module loads the file or the
instance, picks the format and writes the result.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .._errors import StorageError, WorkflowNotFound
from .._models import WorkflowInstance
from ._common import EXIT_BAD_INPUT, Store, fail, stdout_closed, with_engine
from ._workflow import load, print_problems

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = ["register"]


def _load_instance(instance_id: str, store: str | None) -> WorkflowInstance:
    """The stored instance, or exit 2 with ``workflow instance not found: ID``."""
    where = Store.of(store)
    path = where.missing_file()
    if path is not None:  # reading must not create an empty database as a side effect
        click.echo(f"dagflow: error: workflow instance not found: {instance_id}", err=True)
        click.echo(f"  (no store at {path}: pass --store URL or set DAGFLOW_STORE)", err=True)
        sys.exit(EXIT_BAD_INPUT)

    async def body(engine: Engine) -> WorkflowInstance:
        return await engine.get_status(instance_id)

    return with_engine(where, body, explain=_explain)


def _explain(error: BaseException) -> None:
    """graph's own words: the error's, and a store that fails is bad input too."""
    if isinstance(error, WorkflowNotFound | StorageError):
        fail(str(error))


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "html"]),
              default="mermaid", show_default=True,
              help="mermaid: paste into Markdown (GitHub renders it); dot: Graphviz; "
                   "html: one self-contained page (no network needed).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write to this file instead of stdout.")
@click.option("--instance", "instance_id", metavar="ID",
              help="Draw this run: nodes coloured by task state; with --format html also "
                   "a summary, a timeline and a task table. FILE may then be omitted "
                   "(the run's stored definition is used).")
@click.option("--store", metavar="URL",
              help="Where instances live, for --instance (default: $DAGFLOW_STORE, else "
                   "sqlite:///.dagflow/dagflow.db).")
def graph(file: str | None, fmt: str, output: str | None, instance_id: str | None,
          store: str | None) -> None:
    """Draw workflow FILE as a graph, or a run of it with --instance ID.

    Nodes are tasks (id and type), arrows run from a dependency to the task that waits
    for it, and dashed arrows labelled true/false lead to a Conditional's branches.
    Approval gates are hexagons, Conditionals diamonds, Loops and Subworkflows
    double-sided boxes. The HTML page lays the tasks out by level (as 'dagflow plan'
    lists them), highlights the critical path and, for a run, adds the run's summary
    and a timeline with one bar per task and per loop iteration.

    \b
    Examples:
      dagflow graph deploy.yaml > deploy.mmd
      dagflow graph deploy.yaml --format dot | dot -Tsvg -o deploy.svg
      dagflow graph deploy.yaml --format html -o deploy.html
      dagflow graph --instance 6f1c... --format html -o run.html
      dagflow graph deploy.yaml --instance 6f1c... --store sqlite:///runs.db

    Exit codes: 0 drawn · 2 bad input (invalid FILE, unknown instance, unwritable -o).
    """
    from .._graph import render

    if file is None and instance_id is None:
        fail("give a workflow FILE, or --instance ID to draw a run "
              "(see 'dagflow graph --help')")
    instance = _load_instance(instance_id, store) if instance_id is not None else None
    if file is not None:
        definition, warnings = load(file)
        print_problems(warnings, kind="warning")
        if instance is not None and instance.workflow_id != definition.id:
            click.echo(f"warning: instance {instance.id} ran workflow {instance.workflow_id!r},"
                       f" not {definition.id!r}; tasks are matched by id", err=True)
    else:
        assert instance is not None  # checked above: FILE or --instance
        definition = instance.definition
    text = render(definition, fmt, instance)
    if output:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
        return
    try:
        click.echo(text, nl=False)
        sys.stdout.flush()
    except BrokenPipeError:  # `dagflow graph ... | head`
        stdout_closed()


def register(group: click.Group) -> None:
    """Add ``graph`` to ``group``."""
    group.add_command(graph)
