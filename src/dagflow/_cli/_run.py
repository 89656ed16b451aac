"""``dagflow run``: create an instance, run it with live progress, map the end to an exit
code. Ctrl-C interrupts: running tasks are stopped and the instance is left Paused, so
``dagflow resume ID`` continues it."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import click

from .._errors import ValidationError
from .._events import WorkflowEvent
from .._models import WorkflowDefinition, WorkflowInstance, WorkflowState

__all__ = ["run_workflow"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def instance_json(instance: WorkflowInstance) -> str:
    """The instance as the seed serialises it, field for field."""
    from .._serde import make_converter

    return json.dumps(make_converter().unstructure(instance), indent=2, default=str)


def exit_code_for(instance: WorkflowInstance) -> int:
    """0 Completed; 130 left Paused by an interrupt; 1 anything else."""
    if instance.state == WorkflowState.COMPLETED:
        return EXIT_OK
    if instance.state == WorkflowState.PAUSED:
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def run_workflow(
    definition: WorkflowDefinition,
    *,
    variables: Mapping[str, Any],
    store: str,
    store_flag: str,
    as_json: bool,
    engine_options: Mapping[str, Any],
    user: str,
) -> int:
    """Run ``definition`` to its end (or an interrupt) and return the exit code."""
    from ._instances import _engine, _Store
    from ._progress import LiveProgress, PlainProgress

    out = sys.stderr if as_json else sys.stdout

    engine = _engine(_Store(store), **engine_options)  # a URL it cannot use: exit 2

    async def main() -> int:
        async with engine:
            try:
                instance = await engine.create_workflow(definition, user, variables)
            except ValidationError as exc:
                for problem in exc.problems:
                    click.echo(f"dagflow: error: {problem}", err=True)
                return EXIT_BAD_INPUT
            if out.isatty():
                from rich.console import Console

                progress: Any = LiveProgress(Console(file=out), definition, store_flag)
            else:
                progress = PlainProgress(out, store_flag)
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
                           f"{final.id}{store_flag}", file=out)
            if as_json:
                click.echo(instance_json(final))
            return exit_code_for(final)

    return anyio.run(main)


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
