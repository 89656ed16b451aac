"""``dagflow run``: create an instance, run it with live progress, map the end to an exit
code. Ctrl-C interrupts: running tasks are stopped and the instance is left Paused, so
``dagflow resume ID`` continues it."""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import click

from .._events import WorkflowEvent
from .._models import WorkflowDefinition, WorkflowState
from ._common import Store, execute, exit_code_for, instance_json

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
    from ._progress import LiveProgress, PlainProgress

    out = sys.stderr if as_json else sys.stdout

    async def body(engine: Engine) -> int:
        # an invalid --var raises ValidationError: execute() prints its problems, exit 2
        instance = await engine.create_workflow(definition, user, variables)
        if out.isatty():
            from rich.console import Console

            progress: Any = LiveProgress(Console(file=out), definition, store.flag)
        else:
            progress = PlainProgress(out, store.flag)
        click.echo(f"instance {instance.id} of {definition.id}", file=out)
        last = 0

        async def follow() -> None:
            nonlocal last
            async for event in engine.stream_events(instance.id):
                progress(event)
                last = event.seq

        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, engine, instance.id, out)
            await engine.start_workflow(instance.id)
            tg.start_soon(follow)
            final = await engine.wait(instance.id)
            tg.cancel_scope.cancel()
        rest: list[WorkflowEvent] = [
            e async for e in engine.stream_events(instance.id, after=last, follow=False)]
        for event in rest:
            progress(event)
        progress.close(final)
        if final.state == WorkflowState.PAUSED:
            click.echo(f"instance {final.id} is paused; continue it with:  dagflow resume "
                       f"{final.id}{store.flag}", file=out)
        if as_json:
            click.echo(instance_json(final))
        return exit_code_for(final)

    execute(store, body, **options)


async def _watch_signals(engine: Any, instance_id: str, out: Any) -> None:
    """First Ctrl-C (or SIGTERM): interrupt cleanly. Second: give up at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for _ in signals:
            count += 1
            if count == 1:
                click.echo("\ninterrupting: stopping running tasks (Ctrl-C again to quit "
                           "at once)", file=out)
                await engine.interrupt_workflow(instance_id, "interrupted (Ctrl-C)")
            else:
                raise KeyboardInterrupt
