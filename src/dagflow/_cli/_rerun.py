"""``dagflow resume``, ``retry``, ``restore`` and ``recover``: running a stored instance
on, in this process, with the same progress as ``dagflow run``.

Each takes ``--connection`` and ``--auto-approve`` (they are not kept with the instance)
and exits like ``run``: 0 Completed, 1 Failed/Cancelled/RolledBack, 130 interrupted
(the instance is left Paused).
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Any

import anyio
import click

from .._errors import WorkflowError
from .._events import WorkflowEvent
from .._models import WorkflowFilters, WorkflowInstance, WorkflowState
from .._state import TERMINAL_STATES
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Store,
    engine_options,
    execute,
    exit_code_for,
    fail,
    held_elsewhere,
    instance_json,
    run_options,
    store_option,
)
from ._follow import Follower, interrupt_all_on_signal, run_here, showing, stopped_on_error
from ._format import json_list
from ._progress import PlainProgress, progress_for, summary

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = ["register"]

S = WorkflowState


@click.command()
@click.argument("instance_id", metavar="ID")
@store_option
@run_options
@click.option("--json", "as_json", is_flag=True,
              help="Print only the final instance as JSON on stdout (progress on stderr).")
def resume(instance_id: str, store: str | None, connections: tuple[str, ...],
           auto_approve: bool, as_json: bool) -> None:
    """Continue a paused (or orphaned) instance and follow it.

    It runs here to the end, showing progress like 'dagflow run'.
    Resumes a Paused instance, or a Running one whose process died (completed tasks
    are not run again; tasks that were running run again, their attempts counted).
    A Paused instance whose process is still alive (paused with 'dagflow pause') is
    resumed by that process, and this command follows it.

    \b
    Exit codes: 0 Completed · 1 Failed/Cancelled/RolledBack, or another live process
                runs it · 2 unknown id or it cannot be resumed · 130 interrupted

    \b
    Examples:
      dagflow resume 3f2c9a7e-...
      dagflow resume 3f2c9a7e-... --connection warehouse=postgresql://etl@db/warehouse
    """
    where = Store.of(store)
    where.require(instance_id)
    out = sys.stderr if as_json else sys.stdout

    async def body(engine: Engine) -> int:
        instance = await engine.get_status(instance_id)
        if instance.state in TERMINAL_STATES:
            again = (f"; run it again with  dagflow retry {instance_id}{where.flag}"
                     if instance.state in (S.FAILED, S.CANCELLED) else "")
            fail(f"instance {instance_id} already ended ({instance.state}): nothing to "
                  f"resume{again}")
        if instance.state == S.PENDING:
            fail(f"instance {instance_id} is Pending: it never started, so there is "
                  "nothing to resume")
        holder = await held_elsewhere(engine, instance_id)
        seq = await engine.store.last_event_seq(instance_id)
        await engine.resume_workflow(instance_id)  # raises if a live process runs it
        if holder is not None:  # paused by request: its own process carries on
            click.echo(f"resume requested: {holder} runs instance {instance_id}; following it",
                       file=out)
        else:
            click.echo(f"resuming instance {instance_id} of {instance.workflow_id}", file=out)
        progress = progress_for(out, instance, where.flag)
        follower = Follower(engine, instance_id, seq)
        with stopped_on_error(progress):
            if holder is not None:
                final = await follower.until_idle(progress)
            else:
                final = await showing(follower, progress,
                                      lambda: _wait_resumed(engine, instance_id), out=out)
        return _report(final, progress, where, as_json, out)

    execute(where, body, **engine_options(connections, auto_approve))


async def _wait_resumed(engine: Engine, instance_id: str) -> WorkflowInstance:
    """Wait for a run that ``resume_workflow`` started in the background to stop here.

    ``Engine.wait`` takes a Paused instance that is not running here for the end of it,
    so first wait for the run to record its resumption (or end: its lease is let go).
    """
    while (await engine.get_status(instance_id)).state == S.PAUSED:
        holder, _ = await engine.store.lease_of(instance_id)
        if holder != engine.owner:
            break
        await anyio.sleep(0.05)
    return await engine.wait(instance_id)


@click.command()
@click.argument("instance_id", metavar="ID")
@click.option("--from", "from_task", metavar="TASK",
              help="Also run TASK and everything downstream of it again, even if completed.")
@store_option
@run_options
@click.option("--json", "as_json", is_flag=True,
              help="Print only the final instance as JSON on stdout (progress on stderr).")
def retry(instance_id: str, from_task: str | None, store: str | None,
          connections: tuple[str, ...], auto_approve: bool, as_json: bool) -> None:
    """Run a failed or cancelled instance again, under the same id.

    It runs with the definition it started with. Failed, cancelled and skipped tasks
    run again; completed tasks keep their outputs and are not run again (with --from
    TASK, TASK and its downstream tasks run again too).

    \b
    Exit codes: 0 Completed · 1 Failed/Cancelled/RolledBack · 2 unknown id or TASK,
                or not Failed/Cancelled · 130 interrupted (left Paused)

    \b
    Examples:
      dagflow retry 3f2c9a7e-...
      dagflow retry 3f2c9a7e-... --from build
    """
    where = Store.of(store)
    where.require(instance_id)
    out = sys.stderr if as_json else sys.stdout

    async def body(engine: Engine) -> int:
        instance = await engine.get_status(instance_id)
        if instance.state not in (S.FAILED, S.CANCELLED):
            fail(f"instance {instance_id} is {instance.state}: only Failed or Cancelled "
                  "instances can be retried")
        ids = [task.id for task in instance.definition.tasks]
        if from_task is not None and from_task not in ids:
            fail(f"--from {from_task!r}: no task {from_task!r} in {instance.workflow_id} "
                  f"(tasks: {', '.join(ids[:10])}{', ...' if len(ids) > 10 else ''})")
        progress = progress_for(out, instance, where.flag)
        again = f" from {from_task}" if from_task else ""
        click.echo(f"retrying instance {instance_id} of {instance.workflow_id}{again}",
                   file=out)
        final = await run_here(engine, instance,
                               lambda: engine.retry(instance_id, from_task=from_task),
                               progress=progress, out=out)
        return _report(final, progress, where, as_json, out)

    execute(where, body, **engine_options(connections, auto_approve))


@click.command()
@click.argument("instance_id", metavar="ID")
@click.argument("checkpoint_id", metavar="CHECKPOINT_ID")
@store_option
@run_options
@click.option("--json", "as_json", is_flag=True,
              help="Print only the final instance as JSON on stdout (progress on stderr).")
def restore(instance_id: str, checkpoint_id: str, store: str | None,
            connections: tuple[str, ...], auto_approve: bool, as_json: bool) -> None:
    """Rewind an instance to a checkpoint and run it on from there.

    Tasks that finished after the checkpoint run again. The instance must not be
    running, Completed, Archived or RolledBack. 'dagflow checkpoints ID' lists them.

    \b
    Exit codes: 0 Completed · 1 Failed/Cancelled/RolledBack · 2 unknown id or
                checkpoint, or it cannot be restored · 130 interrupted (left Paused)

    \b
    Examples:
      dagflow restore 3f2c9a7e-... 7d1e0b42-...
    """
    where = Store.of(store)
    where.require(instance_id)
    out = sys.stderr if as_json else sys.stdout

    async def body(engine: Engine) -> int:
        instance = await engine.get_status(instance_id)
        known = [c.id for c in await engine.checkpoints.list_checkpoints(instance_id)]
        if checkpoint_id not in known:
            fail(f"instance {instance_id} has no checkpoint {checkpoint_id} (it has "
                  f"{len(known)}: dagflow checkpoints {instance_id}{where.flag})")
        if instance.state in (S.COMPLETED, S.ARCHIVED, S.ROLLED_BACK):
            fail(f"instance {instance_id} is {instance.state}: it cannot be restored")
        holder = await held_elsewhere(engine, instance_id)
        if holder is not None:
            raise WorkflowError(f"instance {instance_id} is being run by {holder}: pause or "
                                "cancel it there first")
        progress = progress_for(out, instance, where.flag)
        click.echo(f"restoring instance {instance_id} to checkpoint {checkpoint_id}",
                   file=out)
        final = await run_here(engine, instance,
                               lambda: engine.restore(instance_id, checkpoint_id),
                               progress=progress, out=out)
        return _report(final, progress, where, as_json, out)

    execute(where, body, **engine_options(connections, auto_approve))


@click.command()
@store_option
@run_options
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of the recovered instances when they end.")
def recover(store: str | None, connections: tuple[str, ...], auto_approve: bool,
            as_json: bool) -> None:
    """Resume every instance whose process died; wait for them all.

    An instance counts once its process's lease has expired (30 s after the process
    died); instances run by live processes are left alone. Completed tasks are not
    run again. Prints one summary line per instance as it ends.

    \b
    Exit codes: 0 all Completed, or nothing to recover · 1 any other end
                130 interrupted (left Paused)

    \b
    Examples:
      dagflow recover
      dagflow recover --store postgresql://dagflow@db/dagflow
    """
    where = Store.of(store)
    if where.missing_file() is not None:
        click.echo("[]" if as_json else f"nothing to recover: no store at {where.url}")
        sys.exit(EXIT_OK)
    out = sys.stderr if as_json else sys.stdout

    async def body(engine: Engine) -> int:
        # where each candidate's history ends now, so that its progress shows in full
        seqs = {}
        for state in (S.RUNNING, S.WAITING_APPROVAL):
            for instance in await engine.list_workflows(WorkflowFilters(state=state)):
                if not instance.parent_id:
                    seqs[instance.id] = await engine.store.last_event_seq(instance.id)
        ids = await engine.recover()
        for other in seqs.keys() - set(ids):
            holder = await held_elsewhere(engine, other)
            if holder is not None:
                click.echo(f"skipped {other}: {holder} holds it (a live process, or one "
                           "that died less than a lease ago)", file=out)
        if not ids:
            click.echo("[]" if as_json else "nothing to recover: no instance was left "
                       "running by a process that died")
            return EXIT_OK
        click.echo(f"recovering {len(ids)} instance(s): {', '.join(ids)}", file=out)
        finals: dict[str, WorkflowInstance] = {}

        async def follow(one: str) -> None:
            lines = PlainProgress(out, where.flag)

            def emit(event: WorkflowEvent) -> None:
                line = lines.line(event)
                if line:
                    click.echo(f"{one[:8]}  {line}", file=out)

            seq = seqs.get(one)
            follower = Follower(engine, one, await engine.store.last_event_seq(one)
                                if seq is None else seq)
            async def ended(instance: WorkflowInstance) -> bool:
                # Paused counts as an end: that run stops when we exit, resumable later
                return instance.state in TERMINAL_STATES or instance.state == S.PAUSED

            finals[one] = final = await follower.until(ended, emit)
            click.echo(f"{one}  {summary(final)}", file=out)

        async with anyio.create_task_group() as tg:
            tg.start_soon(interrupt_all_on_signal, engine, ids, out)
            async with anyio.create_task_group() as waits:
                for one in ids:
                    waits.start_soon(follow, one)
            tg.cancel_scope.cancel()
        if as_json:
            from .._serde import make_converter

            converter = make_converter()
            click.echo(json_list([converter.unstructure(finals[i]) for i in ids]))
        states = {final.state for final in finals.values()}
        if states == {S.COMPLETED}:
            return EXIT_OK
        return EXIT_INTERRUPTED if S.PAUSED in states else EXIT_FAILED

    execute(where, body, **engine_options(connections, auto_approve))


def _report(final: WorkflowInstance, progress: Any, store: Store, as_json: bool,
            out: IO[str]) -> int:
    """The summary (and the instance on stdout with --json); the exit code of its state."""
    progress.close(final)
    if final.state == S.PAUSED:
        click.echo(f"instance {final.id} is paused; continue it with:  dagflow resume "
                   f"{final.id}{store.flag}", file=out)
    elif final.state in (S.FAILED, S.CANCELLED):
        click.echo(f"run it again with:  dagflow retry {final.id}{store.flag}", file=out)
    if as_json:
        click.echo(instance_json(final))
    return exit_code_for(final)


def register(group: click.Group) -> None:
    """Add the commands that run stored instances here to the ``dagflow`` group."""
    for command in (resume, retry, restore, recover):
        group.add_command(command)
