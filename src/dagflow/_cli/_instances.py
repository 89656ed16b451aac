"""What the instance commands of ``dagflow`` share: opening the store and the engine,
formatting times and tables, and running an instance here with progress.

Each command opens the store (``--store``, else ``$DAGFLOW_STORE``, else
``.dagflow/dagflow.db``), asks the :class:`~dagflow.Engine`, and renders the answer;
``--json`` prints the seed's types through the one converter. Exit codes come from the
table in ``_cli/__init__``: an unknown id, or a request the instance's state does not
allow, is bad input (2); a run that ends Failed, Cancelled or RolledBack is 1; Ctrl-C
is 130.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn

import anyio
import click

from .._events import WorkflowEvent
from .._models import WorkflowInstance, WorkflowState
from .._state import TERMINAL_STATES
from ._common import Store, exit_code_for, fail, held_elsewhere, instance_json
from ._progress import PlainProgress, _seconds
from ._run import _watch_signals

if TYPE_CHECKING:
    from .._engine import Engine

__all__: list[str] = []  # private helpers of _inspect and _control

S = WorkflowState
POLL_SECONDS = 0.2  # how often a follower reads new events from the store

# --------------------------------------------------------------------------- plumbing


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else "-"


def _took(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if start is None:
        return ""
    if end is None:
        return _seconds((dt.datetime.now(dt.UTC) - start).total_seconds()) + "+"
    return _seconds((end - start).total_seconds())


def _short(text: str | None, width: int = 60) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[:width - 3] + "..."


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def _json_list(values: Sequence[Any]) -> str:
    return json.dumps(list(values), indent=2, default=str)


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


# --------------------------------------------------------------------------- following runs


class _Tail:
    """Hands an instance's new events to ``emit`` in order, each exactly once, by reading
    the store (so it sees runs of this process and of others alike)."""

    def __init__(self, engine: Engine, instance_id: str, seq: int,
                 emit: Callable[[WorkflowEvent], None]) -> None:
        self.engine, self.instance_id, self.seq, self.emit = engine, instance_id, seq, emit

    async def drain(self) -> None:
        """Emit what has been recorded since the last call."""
        async for event in self.engine.stream_events(self.instance_id, after=self.seq,
                                                     follow=False):
            self.emit(event)
            self.seq = event.seq

    async def poll(self) -> None:
        """Emit events as they are recorded, until cancelled."""
        while True:
            await self.drain()
            await anyio.sleep(POLL_SECONDS)

    async def until(self, done: Callable[[WorkflowInstance], Awaitable[bool]]
                    ) -> WorkflowInstance:
        """Emit events until ``await done(instance)``; return the instance as it is then."""
        while True:
            await self.drain()
            instance = await self.engine.get_status(self.instance_id)
            if await done(instance):
                await self.drain()  # what landed between the two reads
                return instance
            await anyio.sleep(POLL_SECONDS)

    async def until_idle(self) -> WorkflowInstance:
        """Emit events until the instance has ended, or no process runs it any more
        (Pending counts as about to run)."""
        async def idle(instance: WorkflowInstance) -> bool:
            return instance.state in TERMINAL_STATES or (
                instance.state != S.PENDING
                and await held_elsewhere(self.engine, self.instance_id) is None)

        return await self.until(idle)


def _progress(out: IO[str], instance: WorkflowInstance, store_flag: str) -> Any:
    """The live table on a terminal (seeded with the tasks' states so far), else lines."""
    if not out.isatty():
        return PlainProgress(out, store_flag)
    from rich.console import Console

    from ._progress import LiveProgress

    live = LiveProgress(Console(file=out), instance.definition, store_flag)
    for task_id, state in instance.task_states.items():
        if task_id in live.status:
            live.status[task_id] = state.state
            live.attempt[task_id] = state.attempts
            if state.started_at is not None:
                live.started[task_id] = state.started_at
    return live


async def _run_here(engine: Engine, instance: WorkflowInstance,
                    action: Callable[[], Awaitable[WorkflowInstance]], *, progress: Any,
                    out: IO[str]) -> WorkflowInstance:
    """Do ``action`` (which runs the instance in this process) while showing its events;
    Ctrl-C interrupts the run and leaves it Paused."""
    tail = _Tail(engine, instance.id, await engine.store.last_event_seq(instance.id),
                 progress)
    with _stopped_on_error(progress):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, engine, instance.id, out)
            tg.start_soon(tail.poll)
            final = await action()
            tg.cancel_scope.cancel()
        await tail.drain()
    return final


@contextlib.contextmanager
def _stopped_on_error(progress: Any) -> Iterator[None]:
    """Give the terminal back (stop the live table) when the run errors out."""
    try:
        yield
    except BaseException:
        live = getattr(progress, "live", None)
        if live is not None:
            live.stop()
        raise


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


def _ended(instance: WorkflowInstance, doing: str) -> NoReturn:
    fail(f"instance {instance.id} already ended ({instance.state}): nothing to {doing}")


# --------------------------------------------------------------------------- status, list
