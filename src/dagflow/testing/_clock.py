"""FakeClock: a clock that jumps ahead when everything is waiting.

How the jumps happen, without a background task: the first task to sleep on the clock
becomes its *driver* (the leader). While it waits, the leader watches the event loop;
once every other task is blocked and no real work is :meth:`~FakeClock.busy`, it moves
fake time to the earliest sleeper's deadline and wakes that sleeper. The other sleepers
just wait on an :class:`anyio.Event`. When the leader leaves :meth:`~FakeClock.sleep`
(woken or cancelled) it hands the job to the earliest sleeper left, so exactly one task
drives at a time and a clock with nobody sleeping costs nothing.

"Every other task is blocked" is the one backend-specific question: trio answers it
with :func:`trio.testing.wait_all_tasks_blocked`; on asyncio the clock polls the loop's
tasks itself, because anyio's version naps 0.1 s of real time between looks.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import heapq
import itertools
import math
import sys
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import attrs

__all__ = ["FakeClock"]

_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# trio's cushion is real time; a tenth of a millisecond lets a reply already in a local
# socket's buffer arrive before we call the system idle, and costs nothing noticeable.
_TRIO_CUSHION = 1e-4
# asyncio: consecutive loop iterations that must all look idle. Callbacks that are not
# tasks (anyio's cancel delivery, transports' data_received) run one iteration later.
_ASYNCIO_QUIET_ROUNDS = 5

# (clock, owning task id) for each busy() block the current context is inside. The owner
# is recorded because child tasks inherit their parent's context: a watchdog started
# inside a busy block is not the busy work, and must not un-busy it when it sleeps.
_BUSY: contextvars.ContextVar[tuple[tuple[FakeClock, int], ...]] = contextvars.ContextVar(
    "dagflow_fake_clock_busy", default=()
)
# asyncio tasks now looking for idleness; each ignores the others, or two of them (two
# clocks, or a leader and advance_to) would each see the other running and never stop.
_POLLERS: set[object] = set()


def _as_utc(start: dt.datetime) -> dt.datetime:
    """Validate and normalise the start time."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"FakeClock start must be timezone-aware, got {start!r}")
    return start.astimezone(dt.UTC)


@attrs.define(eq=False)
class _Sleeper:
    """One task inside :meth:`FakeClock.sleep`."""

    deadline: float
    seq: int
    poke: anyio.Event  # set when woken, when asked to lead, or when the leader should look again
    woken: bool = False


@attrs.define(eq=False, repr=False)
class FakeClock:
    """A :class:`~dagflow.Clock` whose time moves only when the test lets it.

    With ``autojump`` (the default), time jumps to the next sleeper's deadline as soon as
    every task is waiting and no work is :meth:`busy`, so an engine with hour-long
    backoffs and day-long approval deadlines finishes a test in milliseconds. It needs no
    setup: ``Engine(clock=FakeClock())`` inside any anyio test (asyncio or trio) works.

    Without ``autojump``, time moves only through :meth:`advance` and
    :meth:`advance_to`.

    Tasks blocked on anything but this clock count as waiting, including real I/O: wrap
    real work (a subprocess, a request, ``anyio.to_thread.run_sync``) in :meth:`busy`,
    or time may jump while it runs. A task that never blocks (a loop around
    ``anyio.sleep(0)``) keeps time from jumping at all.

    Args:
        start: What :meth:`now` returns before any time has passed (timezone-aware).
        autojump: Jump ahead automatically when everything is waiting.

    Raises:
        ValueError: If ``start`` is naive.
    """

    _start: dt.datetime = attrs.field(default=_EPOCH, converter=_as_utc)
    _autojump: bool = attrs.field(default=True, kw_only=True)
    _elapsed: float = attrs.field(default=0.0, init=False)
    _sleepers: list[tuple[float, int, _Sleeper]] = attrs.field(init=False, factory=list)
    _seq: Iterator[int] = attrs.field(init=False, factory=itertools.count)
    _busy_count: int = attrs.field(default=0, init=False)
    _leader: _Sleeper | None = attrs.field(default=None, init=False)

    def __repr__(self) -> str:
        return (
            f"FakeClock(now={self.now().isoformat()}, sleepers={len(self._sleepers)}, "
            f"busy={self._busy_count}, autojump={self._autojump})"
        )

    @property
    def autojump(self) -> bool:
        """Whether time jumps ahead by itself when everything is waiting."""
        return self._autojump

    def now(self) -> dt.datetime:
        """The fake current time: ``start`` plus the fake time that has passed (UTC)."""
        return self._start + dt.timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        """Fake seconds since the clock was made."""
        return self._elapsed

    def next_deadline(self) -> dt.datetime | None:
        """When the earliest sleeper is due, or ``None`` if nobody sleeps (or only forever)."""
        if not self._sleepers or math.isinf(self._sleepers[0][0]):
            return None
        return self._start + dt.timedelta(seconds=self._sleepers[0][0])

    async def sleep(self, seconds: float) -> None:
        """Wait until fake time has moved ``seconds`` ahead.

        Sleepers with the same deadline wake in the order they went to sleep. Zero or
        less just yields to other tasks, and ``math.inf`` sleeps until cancelled.
        Called inside :meth:`busy`, the caller stops counting as busy while it sleeps.

        Args:
            seconds: How long to wait, in fake seconds.

        Raises:
            ValueError: If ``seconds`` is NaN.
        """
        if math.isnan(seconds):
            raise ValueError("cannot sleep for NaN seconds")
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        me = _Sleeper(deadline=self._elapsed + seconds, seq=next(self._seq), poke=anyio.Event())
        heapq.heappush(self._sleepers, (me.deadline, me.seq, me))
        depth = self._own_busy_depth()
        self._busy_count -= depth
        self._poke_leader()  # a new sleeper (or less busy work) may let time move
        try:
            await self._wait(me)
        finally:
            if not me.woken:  # cancelled: leave no ghost deadline behind
                self._sleepers.remove((me.deadline, me.seq, me))
                heapq.heapify(self._sleepers)
            if self._leader is me:
                self._leader = None
                if self._sleepers:
                    self._sleepers[0][2].poke.set()  # the earliest one takes over
            self._busy_count += depth

    def busy(self) -> contextlib.AbstractContextManager[None]:
        """Mark real work in progress: time does not jump until it ends.

        Nesting counts once per level. Work that sleeps on this clock stops counting
        while it sleeps, so a handler that is "real work" but waits on the clock still
        lets time move.

        Returns:
            A context manager around the real work.

        Raises:
            RuntimeError: If called outside a task (in a worker thread, say); wrap the
                ``await anyio.to_thread.run_sync(...)`` instead.
        """
        return self._busy()

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        token = _BUSY.set((*_BUSY.get(), (self, _current_task_id())))
        self._busy_count += 1
        try:
            yield
        finally:
            self._busy_count -= 1
            if self._busy_count == 0:
                self._poke_leader()
            _BUSY.reset(token)

    def advance(self, seconds: float) -> None:
        """Move time ``seconds`` ahead now, waking due sleepers in deadline order.

        The woken tasks run at the caller's next ``await`` and all see the new time;
        use :meth:`advance_to` to have each one woken at its own deadline.

        Args:
            seconds: How far to move, in fake seconds.

        Raises:
            ValueError: If ``seconds`` is negative or NaN.
        """
        if not seconds >= 0:
            raise ValueError(f"time only moves forward, got {seconds!r} seconds")
        self._jump_to(self._elapsed + seconds)

    async def advance_to(self, when: dt.datetime) -> None:
        """Move time to ``when``, stopping at each sleeper's deadline on the way.

        First, and after each stop, this waits until every other task is blocked, so
        each woken task sees its own deadline as :meth:`now`, and when it returns every
        task woken has run as far as it can.

        Args:
            when: The time to reach (timezone-aware, not in the past).

        Raises:
            ValueError: If ``when`` is naive or earlier than :meth:`now`.
        """
        target = (_as_utc(when) - self._start).total_seconds()
        if target < self._elapsed:
            raise ValueError(f"time only moves forward: {when} is before {self.now()}")
        await _wait_all_blocked()
        while self._sleepers and self._sleepers[0][0] <= target:
            self._jump_to(self._sleepers[0][0])
            await _wait_all_blocked()
        self._jump_to(target)

    async def _wait(self, me: _Sleeper) -> None:
        """Wait for ``me`` to be woken, driving the clock while ``me`` is the leader."""
        while True:
            # A fresh event before looking at the state: a change made after the look
            # sets it, so the wait below cannot miss it.
            me.poke = anyio.Event()
            if me.woken:
                return
            if self._autojump and self._leader is None:
                self._leader = me
            if self._leader is me:
                await _wait_all_blocked()
                if me.woken:
                    return
                if self._busy_count == 0 and self.next_deadline() is not None:
                    self._jump_to(self._sleepers[0][0])
                    continue
            await me.poke.wait()

    def _jump_to(self, elapsed: float) -> None:
        """Set fake time and wake every sleeper now due, earliest (then first) first."""
        self._elapsed = max(self._elapsed, elapsed)
        while self._sleepers and self._sleepers[0][0] <= self._elapsed:
            _, _, sleeper = heapq.heappop(self._sleepers)
            sleeper.woken = True
            sleeper.poke.set()

    def _poke_leader(self) -> None:
        """Ask the leader to look again, if it is waiting for a change."""
        if self._leader is not None:
            self._leader.poke.set()

    def _own_busy_depth(self) -> int:
        """How many busy() blocks of this clock the current task itself is inside."""
        marks = _BUSY.get()
        if not marks:
            return 0
        task_id = anyio.get_current_task().id
        return sum(1 for clock, owner in marks if clock is self and owner == task_id)


def _current_task_id() -> int:
    """The current task's id, with a clear error when there is no task."""
    try:
        return anyio.get_current_task().id
    except RuntimeError as exc:
        raise RuntimeError(
            "FakeClock.busy() must be entered in an async task, not in a worker thread"
        ) from exc


async def _wait_all_blocked() -> None:
    """Return once every other task is blocked (waiting on something)."""
    if _on_trio():
        import trio.testing

        await trio.testing.wait_all_tasks_blocked(_TRIO_CUSHION)
    else:
        await _wait_all_blocked_asyncio()


def _on_trio() -> bool:
    """Whether the current task runs on trio (anyio supports only trio and asyncio)."""
    # Not sniffio: anyio no longer depends on it, and trio is imported iff it might run.
    if "trio" not in sys.modules:
        return False
    import trio

    return trio.lowlevel.in_trio_task()


async def _wait_all_blocked_asyncio() -> None:
    """The asyncio half of :func:`_wait_all_blocked`, polling every loop iteration."""
    # dagflow.testing must see the event loop's tasks, which anyio does not expose
    # without its 0.1 s real-time naps; src/ bans asyncio everywhere else.
    import asyncio  # noqa: TID251

    me = asyncio.current_task()
    _POLLERS.add(me)
    try:
        quiet = 0
        while quiet < _ASYNCIO_QUIET_ROUNDS:
            await anyio.lowlevel.checkpoint()
            if all(_blocked(task) for task in asyncio.all_tasks() if task not in _POLLERS):
                quiet += 1
            else:
                quiet = 0
    finally:
        _POLLERS.discard(me)


def _blocked(task: object) -> bool:
    """Whether an asyncio task waits on a future that is not done (as anyio checks it)."""
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()
