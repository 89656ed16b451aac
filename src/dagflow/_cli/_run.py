"""``dagflow run``: create an instance, run it with live progress, map the end to an exit
code. Ctrl-C interrupts: running tasks are stopped and the instance is left Paused, so
``dagflow resume ID`` continues it."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .._models import WorkflowDefinition, WorkflowInstance, WorkflowState
from ._common import Store, execute, exit_code_for, instance_json
from ._follow import Follower, showing
from ._progress import progress_for

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = ["run_workflow"]


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

        async def run() -> WorkflowInstance:
            await engine.start_workflow(instance.id)
            return await engine.wait(instance.id)

        final = await showing(Follower(engine, instance.id), progress, run, out=out)
        progress.close(final)
        if final.state == WorkflowState.PAUSED:
            click.echo(f"instance {final.id} is paused; continue it with:  dagflow resume "
                       f"{final.id}{store.flag}", file=out)
        if as_json:
            click.echo(instance_json(final))
        return exit_code_for(final)

    execute(store, body, **options)
