"""``dagflow pause``, ``cancel``, ``rollback`` and ``archive``: changing instances, also
ones that another process runs."""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import anyio
import click

from .._events import (
    RollbackStarted,
    RollbackTaskCompleted,
    RollbackTaskFailed,
    WorkflowEvent,
)
from .._models import WorkflowInstance, WorkflowState
from .._state import TERMINAL_STATES
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    Store,
    current_user,
    execute,
    fail,
    held_elsewhere,
    instance_json,
    store_option,
)
from ._follow import POLL_SECONDS, Follower, showing
from ._format import json_list, when
from ._progress import PlainProgress

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = ["register"]

S = WorkflowState


@click.command()
@click.argument("instance_id", metavar="ID")
@store_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the instance as JSON once the request is handled (its state says "
                   "whether it is Paused yet).")
def pause(instance_id: str, store: str | None, as_json: bool) -> None:
    """Pause an instance: running tasks finish, nothing new starts.

    Works for an instance run by another process ('dagflow run' in another terminal):
    that process pauses it and waits. Continue with 'dagflow resume ID'.

    \b
    Exit codes: 0 paused · 2 unknown id, or it is not running

    \b
    Examples:
      dagflow pause 3f2c9a7e-...
      dagflow pause 3f2c9a7e-... && dagflow resume 3f2c9a7e-...
    """
    where = Store.of(store)
    where.require(instance_id)

    async def body(engine: Engine) -> int:
        instance = await engine.get_status(instance_id)
        if instance.state in TERMINAL_STATES:
            _ended(instance, "pause")
        if instance.state == S.PAUSED:
            fail(f"instance {instance_id} is already paused; continue it with  dagflow "
                  f"resume {instance_id}{where.flag}")
        holder = await held_elsewhere(engine, instance_id)
        if holder is None:
            fail(f"instance {instance_id} is {instance.state} but no process is running it "
                  f"(it died?): continue it with  dagflow resume {instance_id}{where.flag}")
        await engine.pause_workflow(instance_id)
        final = await _settle(engine, instance_id, lambda i: i.state != instance.state, 5.0)
        if as_json:
            click.echo(instance_json(final))
        elif final.state == S.PAUSED:
            click.echo(f"instance {instance_id}: Paused (running tasks finish; nothing new "
                       f"starts)\ncontinue it with:  dagflow resume {instance_id}{where.flag}")
        else:
            click.echo(f"pause requested: {holder} pauses instance {instance_id} shortly "
                       f"(it is {final.state} now)")
        return EXIT_OK

    execute(where, body)


@click.command()
@click.argument("instance_id", metavar="ID")
@click.option("--reason", default=None, metavar="TEXT",
              help="Why (recorded with the instance; default: 'cancelled by $USER').")
@store_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the instance as JSON once the request is handled (its state says "
                   "whether it has ended yet).")
def cancel(instance_id: str, reason: str | None, store: str | None, as_json: bool) -> None:
    """Cancel an instance, also one run by another process.

    Running tasks are stopped; cleanup (join: all_done) tasks still run.
    Works for an instance run by another process: that process stops it within a
    moment and exits 1. A Paused instance is cancelled here.

    \b
    Exit codes: 0 cancelled (or requested) · 2 unknown id, or it already ended

    \b
    Examples:
      dagflow cancel 3f2c9a7e-...
      dagflow cancel 3f2c9a7e-... --reason "wrong image tag"
    """
    where = Store.of(store)
    where.require(instance_id)
    why = reason or f"cancelled by {current_user() or 'user'}"

    async def body(engine: Engine) -> int:
        instance = await engine.get_status(instance_id)
        if instance.state in TERMINAL_STATES:
            _ended(instance, "cancel")
        holder = await held_elsewhere(engine, instance_id)
        await engine.cancel_workflow(instance_id, why)
        final = await _settle(engine, instance_id, lambda i: i.state in TERMINAL_STATES, 10.0)
        if as_json:
            click.echo(instance_json(final))
        elif final.state in TERMINAL_STATES:
            click.echo(f"instance {instance_id}: {final.state} ({why})")
        else:
            click.echo(f"cancel requested: {holder} stops instance {instance_id} once its "
                       f"cleanup tasks finish (see: dagflow status {instance_id}{where.flag})")
        return EXIT_OK

    execute(where, body)


async def _settle(engine: Engine, instance_id: str, done: Callable[[WorkflowInstance], bool],
                  seconds: float) -> WorkflowInstance:
    """The instance once ``done`` says so, or as it is after ``seconds``."""
    with anyio.move_on_after(seconds):
        while True:
            instance = await engine.get_status(instance_id)
            if done(instance):
                return instance
            await anyio.sleep(POLL_SECONDS / 2)  # another process changes it: poll the store
    return await engine.get_status(instance_id)


def _ended(instance: WorkflowInstance, doing: str) -> NoReturn:
    """Exit 2: ``instance`` has ended, so there is nothing to do to it."""
    fail(f"instance {instance.id} already ended ({instance.state}): nothing to {doing}")


@click.command()
@click.argument("instance_id", metavar="ID")
@store_option
@click.option("--json", "as_json", is_flag=True,
              help="Print only the final instance as JSON on stdout (progress on stderr).")
def rollback(instance_id: str, store: str | None, as_json: bool) -> None:
    """Undo the completed tasks of a failed or cancelled instance.

    Each completed task's 'rollback:' step runs, newest first.

    \b
    Exit codes: 0 RolledBack · 1 a rollback step failed (the instance stays Failed)
                2 unknown id, or not Failed/Cancelled, or rollback is disabled

    \b
    Examples:
      dagflow rollback 3f2c9a7e-...
      dagflow rollback 3f2c9a7e-... --json | jq .state
    """
    where = Store.of(store)
    where.require(instance_id)
    out = sys.stderr if as_json else sys.stdout

    async def body(engine: Engine) -> int:
        instance = await engine.get_status(instance_id)
        if instance.state not in (S.FAILED, S.CANCELLED):
            fail(f"instance {instance_id} is {instance.state}: only Failed or Cancelled "
                  "instances can be rolled back")
        if not instance.definition.config.enable_rollback:
            fail(f"rollback is disabled for {instance.workflow_id!r} "
                  "(config.enable_rollback: false)")
        seen: list[WorkflowEvent] = []
        progress = PlainProgress(out, where.flag)

        def emit(event: WorkflowEvent) -> None:
            seen.append(event)
            progress(event)

        follower = Follower(engine, instance_id,
                            await engine.store.last_event_seq(instance_id))
        final = await showing(follower, emit, lambda: engine.rollback(instance_id))
        undone = [e.task_id for e in seen if isinstance(e, RollbackTaskCompleted)]
        planned = next((e.tasks for e in seen if isinstance(e, RollbackStarted)), ())
        failed = next((e for e in seen if isinstance(e, RollbackTaskFailed)), None)
        if final.state == S.ROLLED_BACK:
            what = f"undid {', '.join(undone)}" if undone else "nothing to undo"
            click.echo(f"instance {instance_id}: RolledBack ({what})", file=out)
        elif failed is not None:
            click.echo(f"instance {instance_id}: {final.state}: rollback step of "
                       f"{failed.task_id!r} failed: {failed.error}", file=out)
            left = [t for t in planned if t not in undone and t != failed.task_id]
            if left:
                click.echo(f"  not undone: {', '.join(left)}", file=out)
        else:
            click.echo(f"instance {instance_id}: {final.state}: {final.error}", file=out)
        if as_json:
            click.echo(instance_json(final))
        return EXIT_OK if final.state == S.ROLLED_BACK else EXIT_FAILED

    execute(where, body)


# --------------------------------------------------------------------------- housekeeping


@click.command()
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Archive instances that completed more than AGE ago: 30d, 12h, 90m, 45s, "
                   "or ISO 8601 (P30D).")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the archived ids.")
def archive(older_than: str, store: str | None, as_json: bool) -> None:
    """Archive Completed instances that ended more than AGE ago.

    They move to the Archived state ('dagflow list --state archived' shows them) and
    their checkpoints are deleted. Failed and Cancelled instances are kept as they are.

    \b
    Examples:
      dagflow archive --older-than 30d
      dagflow archive --older-than PT12H --json
    """
    try:
        age = _parse_age(older_than)
    except ValueError as exc:
        fail(str(exc))
    where = Store.of(store)
    if where.missing_file() is not None:
        click.echo("[]" if as_json else f"archived 0 instances (no store at {where.url})")
        sys.exit(EXIT_OK)

    async def body(engine: Engine) -> int:
        ids = await engine.archive(older_than=age)
        if as_json:
            click.echo(json_list(ids))
        else:
            cutoff = dt.datetime.now(dt.UTC) - age
            click.echo(f"archived {len(ids)} instance{'s' * (len(ids) != 1)} (Completed before "
                       f"{when(cutoff)})")
        return EXIT_OK

    execute(where, body)


_UNITS = {"w": 604_800, "d": 86_400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])", re.IGNORECASE)


def _parse_age(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``1d12h``, plain seconds or ISO 8601 (``P30D``).

    Raises:
        ValueError: None of those.
    """
    compact = text.strip()
    if compact and _PART.sub("", compact).strip() == "":
        return dt.timedelta(seconds=sum(float(n) * _UNITS[u.lower()]
                                        for n, u in _PART.findall(compact)))
    from .._serde import parse_duration

    try:
        return parse_duration(float(compact) if re.fullmatch(r"\d+(\.\d+)?", compact)
                              else compact)
    except (TypeError, ValueError):
        raise ValueError(f"--older-than {text!r}: write a duration like 30d, 12h, 90m, 45s, "
                         "1d12h or ISO 8601 (P30D, PT12H)") from None


def register(group: click.Group) -> None:
    """Add the commands that change instances to the ``dagflow`` group."""
    for command in (pause, cancel, rollback, archive):
        group.add_command(command)
