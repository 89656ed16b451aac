"""Following an instance's events: the one follower every command uses (``run``'s
progress, ``resume``, ``retry``, ``restore``, ``rollback``, ``recover``, ``events``),
and Ctrl-C while a run goes on here.

The follower reads the store through :meth:`~dagflow.Engine.stream_events`, so it sees
runs of this process and of other processes alike, and hands out each event once, in
order. What stops it is the command's own rule: its cancellation (a run here: the
events that landed last are read after the run returns), or ``until(instance)``.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

import anyio
import attrs
import click

from .._errors import WorkflowError
from .._events import WorkflowEvent
from .._models import WorkflowInstance, WorkflowState
from .._state import TERMINAL_STATES
from ._common import held_elsewhere

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = ["POLL_SECONDS", "Follower", "interrupt_all_on_signal", "run_here", "showing",
           "stopped_on_error", "watch_signals"]

T = TypeVar("T")
Emit = Callable[[WorkflowEvent], None]
Done = Callable[[WorkflowInstance], Awaitable[bool]]

POLL_SECONDS = 0.2  # how often a follower reads new events from the store


@attrs.define(repr=False)
class Follower:
    """One instance's events after ``seq``, each exactly once and in order."""

    engine: Engine
    instance_id: str
    seq: int = 0  # the last event handed out; the next read starts after it
    final: WorkflowInstance | None = None  # the instance as it was when ``until`` agreed

    def __repr__(self) -> str:
        return f"<Follower {self.instance_id} after={self.seq}>"

    async def events(self, *, follow: bool = True, until: Done | None = None
                     ) -> AsyncIterator[WorkflowEvent]:
        """The events recorded so far; with ``follow``, new ones as they land.

        Following ends once ``await until(instance)`` is true (after reading what landed
        between the two reads), or never without ``until``: the caller cancels it.
        """
        # Without `until`, stream_events follows by itself (at once for a run in this
        # process); it stops where the engine's own rule says, which may be before the run
        # here starts (retry and rollback begin at an end state), so start it again.
        live = follow and until is None
        stopping = False
        while True:
            async for event in self.engine.stream_events(self.instance_id, after=self.seq,
                                                         follow=live):
                yield event
                self.seq = event.seq
            if stopping or not follow:
                return
            if until is not None:
                instance = await self.engine.get_status(self.instance_id)
                if await until(instance):
                    self.final, stopping = instance, True
                    continue  # once more: what landed between the two reads
            await anyio.sleep(POLL_SECONDS)

    async def feed(self, emit: Emit, *, follow: bool = True) -> None:
        """Hand ``emit`` the events so far (``follow``: and new ones, until cancelled)."""
        async for event in self.events(follow=follow):
            emit(event)

    async def until(self, done: Done, emit: Emit) -> WorkflowInstance:
        """Hand ``emit`` the events until ``await done(instance)``; that instance."""
        async for event in self.events(until=done):
            emit(event)
        assert self.final is not None  # events() sets it before it ends with until
        return self.final

    async def until_idle(self, emit: Emit) -> WorkflowInstance:
        """Hand ``emit`` the events until the instance has ended, or no process runs it
        any more (Pending counts as about to run)."""
        async def idle(instance: WorkflowInstance) -> bool:
            return instance.state in TERMINAL_STATES or (
                instance.state != WorkflowState.PENDING
                and await held_elsewhere(self.engine, self.instance_id) is None)

        return await self.until(idle, emit)


async def showing(follower: Follower, emit: Emit, action: Callable[[], Awaitable[T]], *,
                  out: IO[str] | None = None) -> T:
    """Do ``action`` (which runs the instance in this process) while handing its events
    to ``emit``; with ``out``, Ctrl-C interrupts the run and leaves it Paused."""
    async with anyio.create_task_group() as tg:
        if out is not None:
            tg.start_soon(watch_signals, follower.engine, follower.instance_id, out)
        tg.start_soon(follower.feed, emit)
        result = await action()
        tg.cancel_scope.cancel()
    await follower.feed(emit, follow=False)  # what the run recorded last
    return result


async def run_here(engine: Engine, instance: WorkflowInstance,
                   action: Callable[[], Awaitable[WorkflowInstance]], *, progress: Any,
                   out: IO[str]) -> WorkflowInstance:
    """Do ``action`` (which runs the instance in this process) while showing its new
    events on ``progress``; Ctrl-C interrupts the run and leaves it Paused."""
    follower = Follower(engine, instance.id, await engine.store.last_event_seq(instance.id))
    with stopped_on_error(progress):
        return await showing(follower, progress, action, out=out)


@contextlib.contextmanager
def stopped_on_error(progress: Any) -> Iterator[None]:
    """Give the terminal back (stop the live table) when the run errors out."""
    try:
        yield
    except BaseException:
        live = getattr(progress, "live", None)
        if live is not None:
            live.stop()
        raise


async def watch_signals(engine: Engine, instance_id: str, out: IO[str]) -> None:
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


async def interrupt_all_on_signal(engine: Engine, ids: Sequence[str], out: IO[str]) -> None:
    """First Ctrl-C (or SIGTERM): interrupt every run cleanly. Second: give up at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for _ in signals:
            count += 1
            if count > 1:
                raise KeyboardInterrupt
            click.echo("\ninterrupting: stopping running tasks (Ctrl-C again to quit at "
                       "once)", file=out)
            for one in ids:
                with contextlib.suppress(WorkflowError):  # it already ended
                    await engine.interrupt_workflow(one, "interrupted (Ctrl-C)")
