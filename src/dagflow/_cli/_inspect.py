"""``dagflow status``, ``list``, ``events`` and ``checkpoints``: reading instances."""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING

import click

from .._events import (
    CheckpointCreated,
    WorkflowEvent,
)
from .._models import TaskState, TaskStatus, WorkflowFilters, WorkflowInstance, WorkflowState
from .._state import TERMINAL_STATES
from ._common import (
    EXIT_OK,
    Store,
    execute,
    fail,
    held_elsewhere,
    instance_json,
    store_option,
)
from ._follow import Follower
from ._format import elapsed, json_list, short_line, table, when
from ._progress import PlainProgress, progress_for

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = ["register"]

S = WorkflowState


@click.command()
@click.argument("instance_id", metavar="ID")
@store_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the instance as JSON (the same as 'dagflow run --json').")
def status(instance_id: str, store: str | None, as_json: bool) -> None:
    """Show an instance: its state, times, error and tasks.

    Loop iterations are listed under their loop. Exit code 0, or 2 when no instance
    has this id.

    \b
    Examples:
      dagflow status 3f2c9a7e-...
      dagflow status 3f2c9a7e-... --json | jq .task_states
      dagflow status 3f2c9a7e-... --store sqlite:///ops/dagflow.db
    """
    where = Store.of(store)
    where.require(instance_id)

    async def body(engine: Engine) -> int:
        instance = await engine.get_status(instance_id)
        if as_json:
            click.echo(instance_json(instance))
            return EXIT_OK
        holder = await held_elsewhere(engine, instance_id)
        for line in _status_lines(instance, holder, where.flag):
            click.echo(line)
        return EXIT_OK

    execute(where, body)


def _status_lines(instance: WorkflowInstance, holder: str | None, flag: str) -> list[str]:
    """What ``dagflow status`` prints: the instance, its tasks, and what to do next."""
    definition = instance.definition
    name = f" ({definition.name})" if definition.name != definition.id else ""
    by = f" by {instance.created_by}" if instance.created_by else ""
    lines = [f"instance   {instance.id}", f"workflow   {instance.workflow_id}{name}",
             f"state      {instance.state}" + (f" (run by {holder})" if holder else ""),
             f"created    {when(instance.created_at)}{by}"]
    if instance.started_at:
        lines.append(f"started    {when(instance.started_at)}")
    if instance.completed_at:
        lines.append(f"completed  {when(instance.completed_at)} "
                     f"(took {elapsed(instance.started_at, instance.completed_at)})")
    if instance.parent_id:
        lines.append(f"parent     {instance.parent_id}")
    if instance.error:
        lines.append(f"error      {instance.error}")
    rows = [["task", "state", "attempts", "duration", "error"]]
    for task_id, indent, state in _task_rows(instance):
        if state is None:
            rows.append([indent + task_id, str(TaskStatus.PENDING), "", "", ""])
            continue
        running = state.state in (TaskStatus.RUNNING, TaskStatus.WAITING_APPROVAL)
        took = elapsed(state.started_at, None) if running else (
            elapsed(state.started_at, state.completed_at) if state.completed_at else "")
        rows.append([indent + task_id, str(state.state), str(state.attempts), took,
                     short_line(state.error)])
    lines += ["", *table(rows)]
    hint = {S.PAUSED: f"continue it with:  dagflow resume {instance.id}{flag}",
            S.FAILED: f"run it again with:  dagflow retry {instance.id}{flag}  (or undo "
                      f"it: dagflow rollback {instance.id}{flag})",
            S.CANCELLED: f"run it again with:  dagflow retry {instance.id}{flag}"}
    if instance.state in (S.RUNNING, S.WAITING_APPROVAL) and holder is None:
        lines += ["", "no process is running it (it died?): continue it with  dagflow "
                      f"resume {instance.id}{flag}  or  dagflow recover{flag}"]
    elif instance.state in hint:
        lines += ["", hint[instance.state]]
    return lines


def _task_rows(instance: WorkflowInstance) -> list[tuple[str, str, TaskState | None]]:
    """(id, indent, state) in file order, each loop's iterations (``each[3]``) and other
    sub-steps (``a:undo``) indented under their task; unknown keys at the end."""
    states = dict(instance.task_states)
    nested: dict[str, list[str]] = {}
    for key in states:
        base = re.split(r"[\[:]", key, maxsplit=1)[0]
        if base != key:
            nested.setdefault(base, []).append(key)

    def order(key: str) -> tuple[int, str]:
        index = re.search(r"\[(\d+)\]", key)
        return (int(index.group(1)) if index else 1 << 30, key)

    rows: list[tuple[str, str, TaskState | None]] = []
    for task in instance.definition.tasks:
        rows.append((task.id, "", states.pop(task.id, None)))
        rows.extend((key, "  ", states.pop(key)) for key in sorted(nested.get(task.id, ()),
                                                                    key=order))
    rows.extend((key, "", state) for key, state in sorted(states.items()))
    return rows


def _parse_state(ctx: click.Context, param: click.Parameter, value: str | None
                 ) -> WorkflowState | None:
    """``running``, ``Running``, ``waiting_approval``, ``rolled-back``... -> the state."""
    if value is None:
        return None

    def squash(text: str) -> str:
        return re.sub(r"[\s_-]", "", text).lower()
    for state in WorkflowState:
        if squash(value) in (squash(state.value), squash(state.name)):
            return state
    fail(f"--state {value!r} is not a state; use one of: "
          f"{', '.join(s.value for s in WorkflowState)}")


@click.command(name="list")
@click.option("--state", callback=_parse_state, metavar="STATE",
              help="Only instances in this state (Running, Paused, Failed, Completed, "
                   "Archived...; any case).")
@click.option("--workflow", "workflow_id", metavar="ID", help="Only instances of this workflow.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Show at most N (0: all).")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the instances.")
def list_(state: WorkflowState | None, workflow_id: str | None, limit: int, store: str | None,
          as_json: bool) -> None:
    """List instances, newest first.

    One line each: id, workflow, state, created, duration.

    \b
    Examples:
      dagflow list
      dagflow list --state running
      dagflow list --workflow deploy --state failed --limit 5
      dagflow list --json | jq -r '.[].id'
    """
    where = Store.of(store)
    if where.missing_file() is not None:
        click.echo("[]" if as_json else f"no instances in {where.url}")
        sys.exit(EXIT_OK)

    async def body(engine: Engine) -> int:
        filters = WorkflowFilters(state=state, workflow_id=workflow_id,
                                  limit=limit + 1 if limit else None)
        instances = await engine.list_workflows(filters)
        more = bool(limit) and len(instances) > limit
        instances = instances[:limit] if limit else instances
        if as_json:
            from .._serde import make_converter

            converter = make_converter()
            click.echo(json_list([converter.unstructure(i) for i in instances]))
        elif not instances:
            click.echo("no instances" + (" matching" if state or workflow_id else "")
                       + f" in {where.url}")
        else:
            rows = [["id", "workflow", "state", "created", "duration"]]
            rows += [[i.id, i.workflow_id, str(i.state), when(i.created_at)[:-4],
                      elapsed(i.started_at, i.completed_at if i.state in TERMINAL_STATES
                            or i.state == S.PAUSED else None)]
                     for i in instances]
            for line in table(rows):
                click.echo(line)
        if more:
            click.echo(f"(the newest {limit} shown; --limit 0 shows all)", err=True)
        return EXIT_OK

    execute(where, body)


# --------------------------------------------------------------------------- events


_WORDS = {"WorkflowStarted": "workflow started", "WorkflowCompleted": "workflow completed",
          "WorkflowResumed": "workflow resumed", "RollbackCompleted": "rolled back",
          "WorkflowWaitingApproval": "waiting for approval", "CheckpointCreated": "checkpoint"}


def _event_line(progress: PlainProgress, event: WorkflowEvent) -> str:
    """``seq  HH:MM:SS  what happened``: the run's progress line, or the event's fields."""
    line = progress.line(event)
    if line is None and event.type_name in _WORDS:
        line = f"{event.timestamp:%H:%M:%S}  {_WORDS[event.type_name]}"
        if isinstance(event, CheckpointCreated):
            line += f" {event.checkpoint_id}"
    if line is None:
        from .._events import event_to_dict
        from .._serde import make_converter

        data = event_to_dict(make_converter(), event)
        fields = " ".join(f"{k}={v}" for k, v in data.items()
                          if k not in ("type", "seq", "instance_id", "timestamp", "output")
                          and v not in (None, "", [], {}))
        line = f"{event.timestamp:%H:%M:%S}  {event.type_name}" + (f"  {fields}" if fields
                                                                    else "")
    return f"{event.seq:>4}  {line}"


@click.command()
@click.argument("instance_id", metavar="ID")
@click.option("--follow", "-f", is_flag=True,
              help="Keep showing new events until the instance ends (or no process runs it).")
@click.option("--after", type=click.IntRange(min=0), default=0, metavar="N",
              help="Only events after sequence number N (the first column).")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON event per line (jsonl).")
def events(instance_id: str, follow: bool, after: int, store: str | None,
           as_json: bool) -> None:
    """Show the events of an instance (--follow: live ones too).

    One line per event, with its sequence number first.
    With --follow, live events follow until the instance ends; this works for an
    instance run by another process. Exit code 0, or 2 when no instance has this id.

    \b
    Examples:
      dagflow events 3f2c9a7e-...
      dagflow events 3f2c9a7e-... --follow
      dagflow events 3f2c9a7e-... --after 40 --json | jq -c 'select(.type == "TaskFailed")'
    """
    where = Store.of(store)
    where.require(instance_id)
    progress = PlainProgress(sys.stdout, where.flag)

    def emit(event: WorkflowEvent) -> None:
        if as_json:
            from .._events import event_to_dict
            from .._serde import make_converter

            click.echo(json.dumps(event_to_dict(make_converter(), event), default=str))
        else:
            click.echo(_event_line(progress, event))

    async def body(engine: Engine) -> int:
        await engine.get_status(instance_id)  # unknown id: exit 2 before anything else
        follower = Follower(engine, instance_id, after)
        if not follow:
            await follower.feed(emit, follow=False)
            return EXIT_OK
        live = None
        if not as_json and sys.stdout.isatty():
            # on a terminal: the history as lines, then a live table of what follows
            await follower.feed(emit, follow=False)
            live = progress_for(sys.stdout, await engine.get_status(instance_id), where.flag)
        final = await follower.until_idle(emit if live is None else live)
        if live is not None:
            live.close(final)
        if final.state not in TERMINAL_STATES:
            click.echo(f"instance {instance_id} is {final.state} and no process is running "
                       f"it: continue it with  dagflow resume {instance_id}{where.flag}",
                       err=True)
        return EXIT_OK

    execute(where, body)


# --------------------------------------------------------------------------- checkpoints


@click.command()
@click.argument("instance_id", metavar="ID")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the checkpoints as a JSON list.")
def checkpoints(instance_id: str, store: str | None, as_json: bool) -> None:
    """List the checkpoints (snapshots) of an instance.

    A run writes one every checkpoint_interval_seconds, before each Deploy or Scale
    task, and when it is paused. 'dagflow restore ID CHECKPOINT_ID' rewinds to one.

    \b
    Examples:
      dagflow checkpoints 3f2c9a7e-...
      dagflow checkpoints 3f2c9a7e-... --json | jq -r '.[-1].id'
    """
    where = Store.of(store)
    where.require(instance_id)

    async def body(engine: Engine) -> int:
        await engine.get_status(instance_id)
        found = await engine.checkpoints.list_checkpoints(instance_id)
        if as_json:
            from .._serde import make_converter

            converter = make_converter()
            click.echo(json_list([converter.unstructure(c) for c in found]))
            return EXIT_OK
        if not found:
            click.echo(f"instance {instance_id} has no checkpoints")
            return EXIT_OK
        rows = [["checkpoint", "taken", "state", "completed tasks"]]
        for checkpoint in found:
            done = sorted(k for k, s in checkpoint.task_states.items()
                          if s.state == TaskStatus.COMPLETED and "[" not in k)
            rows.append([checkpoint.id, when(checkpoint.timestamp),
                         str(checkpoint.workflow_state), short_line(", ".join(done)) or "-"])
        for line in table(rows):
            click.echo(line)
        click.echo(f"\nrewind to one with:  dagflow restore {instance_id} CHECKPOINT_ID"
                   f"{where.flag}")
        return EXIT_OK

    execute(where, body)


def register(group: click.Group) -> None:
    """Add the reading commands to the ``dagflow`` group."""
    for command in (status, list_, events, checkpoints):
        group.add_command(command)
