"""``dagflow run``: create an instance, run it with live progress, map the end to an exit
code. Ctrl-C interrupts: running tasks are stopped and the instance is left Paused, so
``dagflow resume ID`` continues it."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .._models import WorkflowDefinition, WorkflowInstance, WorkflowState
from ._common import (
    Store,
    current_user,
    engine_options,
    execute,
    exit_code_for,
    instance_json,
)
from ._follow import Follower, showing
from ._progress import progress_for
from ._workflow import VAR_HELP, load, parse_vars, print_problems

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = ["register", "run_workflow"]


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help=VAR_HELP)
@click.option("--store", metavar="URL", default=None,
              help="Where instances live: sqlite:///path.db, postgresql://..., memory:// "
                   "(default: $DAGFLOW_STORE, else sqlite:///.dagflow/dagflow.db).")
@click.option("--connection", "connections", multiple=True, metavar="NAME=URL",
              help="A database for Query tasks with query_type NAME. Repeatable.")
@click.option("--auto-approve", is_flag=True,
              help="Approve every approval gate at once, as 'system'.")
@click.option("--user", default=current_user, show_default="$USER, else your account name",
              help="Who runs it (recorded; may not approve its own gates).")
@click.option("--json", "as_json", is_flag=True,
              help="Print only the final instance as JSON on stdout (progress on stderr).")
def run(file: str, variables: tuple[str, ...], store: str | None,
        connections: tuple[str, ...], auto_approve: bool, user: str, as_json: bool) -> None:
    """Run workflow FILE to the end, showing progress.

    A task starts as soon as its dependencies finish. At an approval gate the run prints
    the approval id and the exact command that approves it, and keeps waiting.

    \b
    Exit codes: 0 Completed · 1 Failed, Cancelled or RolledBack · 2 bad input
                130 interrupted (Ctrl-C: running tasks stop, the instance is left Paused
                and 'dagflow resume ID' continues it)

    \b
    Examples:
      dagflow run deploy.yaml --var image_tag=abc123
      dagflow run etl.yaml --connection warehouse=postgresql://etl@db/warehouse
      dagflow run deploy.yaml --auto-approve --json > result.json
    """
    wf, warnings = load(file)
    print_problems(warnings, kind="warning")
    options = engine_options(connections, auto_approve)  # a bad --connection before a bad --var
    run_workflow(wf, variables=parse_vars(variables, wf.variables), store=Store.of(store),
                 as_json=as_json, options=options, user=user)


def run_workflow(
    definition: WorkflowDefinition,
    *,
    variables: Mapping[str, Any],
    store: Store,
    as_json: bool,
    options: Mapping[str, Any],
    user: str,
) -> NoReturn:
    """Run ``definition`` to its end (or an interrupt) and exit with the end's code."""
    out = sys.stderr if as_json else sys.stdout

    async def body(engine: Engine) -> int:
        # an invalid --var raises ValidationError: execute() prints its problems, exit 2
        instance = await engine.create_workflow(definition, user, variables)
        progress = progress_for(out, instance, store.flag)  # a new instance: all Pending
        click.echo(f"instance {instance.id} of {definition.id}", file=out)

        async def start_and_wait() -> WorkflowInstance:
            await engine.start_workflow(instance.id)
            return await engine.wait(instance.id)

        final = await showing(Follower(engine, instance.id), progress, start_and_wait, out=out)
        progress.close(final)
        if final.state == WorkflowState.PAUSED:
            click.echo(f"instance {final.id} is paused; continue it with:  dagflow resume "
                       f"{final.id}{store.flag}", file=out)
        if as_json:
            click.echo(instance_json(final))
        return exit_code_for(final)

    execute(store, body, **options)


def register(group: click.Group) -> None:
    """Add ``run`` to ``group``."""
    group.add_command(run)
