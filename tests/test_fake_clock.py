"""FakeClock: fake time jumps ahead when every task waits, and never during busy work."""

from __future__ import annotations

import datetime as dt
import math
import time

import anyio
import pytest
from anyio.abc import TaskStatus

from dagflow._protocols import Clock
from dagflow.testing import FakeClock

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    """The fake time ``seconds`` after the default start."""
    return START + dt.timedelta(seconds=seconds)


def _seconds(when: dt.datetime | None) -> float | None:
    """Seconds from the default start to ``when``."""
    return None if when is None else (when - START).total_seconds()


def test_fits_the_clock_protocol() -> None:
    """FakeClock is a Clock that starts at 2026-01-01 UTC unless told otherwise."""
    clock: Clock = FakeClock()
    assert isinstance(clock, Clock)
    assert clock.now() == START
    assert clock.now().tzinfo is dt.UTC
    later = dt.datetime(2030, 6, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert FakeClock(later).now() == later
    assert FakeClock(later).now().tzinfo is dt.UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(dt.datetime(2026, 1, 1))


@pytest.mark.anyio
async def test_hour_long_sleep_is_instant() -> None:
    """A task sleeping an hour finishes in well under half a second, an hour later."""
    clock = FakeClock()
    started = time.perf_counter()
    await clock.sleep(3600)
    assert time.perf_counter() - started < 0.5
    assert clock.now() == at(3600)
    assert clock.monotonic() == 3600


@pytest.mark.anyio
async def test_concurrent_sleepers_wake_in_deadline_order() -> None:
    """Sleepers of 1 h, 2 h and 30 min wake earliest first, each at its own deadline."""
    clock = FakeClock()
    woke: list[tuple[str, dt.datetime]] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(nap, "1h", 3600)
        tg.start_soon(nap, "2h", 7200)
        tg.start_soon(nap, "30min", 1800)
    assert woke == [("30min", at(1800)), ("1h", at(3600)), ("2h", at(7200))]


@pytest.mark.anyio
async def test_equal_deadlines_wake_together() -> None:
    """Sleepers due at the same moment all wake at that moment, none left behind."""
    clock = FakeClock()
    woke: list[tuple[int, float]] = []

    async def nap(n: int) -> None:
        await clock.sleep(60)
        woke.append((n, clock.monotonic()))

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(nap, n)
    # They are woken first come, first served, but trio shuffles tasks woken together,
    # so the order they run in is the scheduler's.
    assert sorted(woke) == [(n, 60) for n in range(5)]


@pytest.mark.anyio
async def test_exponential_backoff_is_instant() -> None:
    """Ten sequential backoffs of 1 h, 2 h, 4 h ... take under a second of real time."""
    clock = FakeClock()
    started = time.perf_counter()
    for attempt in range(10):
        await clock.sleep(3600 * 2**attempt)
    assert time.perf_counter() - started < 1
    assert clock.monotonic() == 3600 * (2**10 - 1)


@pytest.mark.anyio
async def test_time_stands_still_during_busy_work() -> None:
    """A fake 10 s sleep does not end while busy work awaits 0.3 s of real time."""
    clock = FakeClock()
    events: list[tuple[str, float]] = []

    async def real_work() -> None:
        with clock.busy():
            await anyio.sleep(0.3)
            events.append(("work done", clock.monotonic()))

    async def waiter() -> None:
        await clock.sleep(10)
        events.append(("sleep done", clock.monotonic()))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(real_work)
        tg.start_soon(waiter)
    assert time.perf_counter() - started >= 0.3
    assert events == [("work done", 0), ("sleep done", 10)]


@pytest.mark.anyio
async def test_busy_work_sleeping_on_the_clock_lets_time_jump() -> None:
    """Busy work that itself sleeps on the clock, even nested busy, does not stop time."""
    clock = FakeClock()
    started = time.perf_counter()
    with clock.busy(), clock.busy():
        await clock.sleep(60)
        assert clock.monotonic() == 60
    with clock.busy():
        await clock.sleep(60)
    assert time.perf_counter() - started < 0.5
    assert clock.now() == at(120)


@pytest.mark.anyio
async def test_child_of_busy_work_does_not_unbusy_it() -> None:
    """A watchdog started inside a busy block sleeps without letting time jump."""
    clock = FakeClock()
    events: list[tuple[str, float]] = []

    async def watchdog() -> None:
        await clock.sleep(5)
        events.append(("watchdog", clock.monotonic()))

    with clock.busy():
        async with anyio.create_task_group() as tg:
            tg.start_soon(watchdog)  # inherits the busy block's context
            await anyio.sleep(0.1)  # real work, so the watchdog must not fire yet
            events.append(("work done", clock.monotonic()))
            tg.cancel_scope.cancel()
    assert events == [("work done", 0)]


@pytest.mark.anyio
async def test_event_set_after_a_fake_sleep() -> None:
    """A task waiting on an event set after another's fake sleep wakes at that time."""
    clock = FakeClock()
    ready = anyio.Event()
    seen: list[float] = []

    async def setter() -> None:
        await clock.sleep(30)
        ready.set()

    async def waiter() -> None:
        await ready.wait()
        seen.append(clock.monotonic())
        await clock.sleep(15)
        seen.append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        tg.start_soon(setter)
    assert seen == [30, 45]


@pytest.mark.anyio
async def test_cancelled_sleeper_is_removed() -> None:
    """Cancelling a sleeping task removes its deadline, and the other sleepers still wake."""
    clock = FakeClock()
    woke: list[tuple[str, float]] = []
    doomed = anyio.CancelScope()

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async def long_sleeper() -> None:
        with doomed:
            await nap("doomed", 50)
        woke.append(("cancelled, next due", _seconds(clock.next_deadline())))

    async def canceller() -> None:
        await clock.sleep(10)
        doomed.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_sleeper)
        tg.start_soon(nap, "other", 100)
        tg.start_soon(canceller)
    assert doomed.cancelled_caught
    assert woke == [("cancelled, next due", 100), ("other", 100)]
    assert clock.next_deadline() is None


@pytest.mark.anyio
async def test_cancelling_the_leader_hands_over() -> None:
    """When the sleeper driving the clock is cancelled, the next one drives on."""
    clock = FakeClock()
    woke: list[float] = []

    async def nap(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.monotonic())

    async def cancel_after(seconds: float, scope: anyio.CancelScope) -> None:
        await clock.sleep(seconds)
        scope.cancel()

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as leader:
            # This task sleeps first, so it drives; the others start once it waits.
            tg.start_soon(nap, 40)
            tg.start_soon(nap, 20)
            tg.start_soon(nap, 10)
            tg.start_soon(cancel_after, 10, leader)
            await clock.sleep(100)
        assert leader.cancelled_caught
        assert clock.monotonic() == 10
    assert woke == [10, 20, 40]


@pytest.mark.anyio
async def test_manual_control_without_autojump() -> None:
    """With autojump off, time moves only through advance() and advance_to()."""
    clock = FakeClock(autojump=False)
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async with anyio.create_task_group() as tg:
        await tg.start(nap, "a", 10)
        await tg.start(nap, "b", 20)
        await tg.start(nap, "c", 30)
        await anyio.sleep(0.05)  # real time passes; fake time does not
        assert (woke, clock.monotonic()) == ([], 0)
        assert clock.next_deadline() == at(10)

        clock.advance(15)
        assert clock.monotonic() == 15
        await clock.advance_to(at(25))
        assert woke == [("a", 15), ("b", 20)]
        assert clock.now() == at(25)

        await clock.advance_to(at(30))
        assert woke[-1] == ("c", 30)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="forward"):
        await clock.advance_to(at(29))


@pytest.mark.anyio
async def test_timeout_cancels_a_task_at_fake_time() -> None:
    """A fake 5 s timeout cancels a task blocked on an event nobody sets, at t=5."""
    clock = FakeClock()
    never = anyio.Event()
    b_scope = anyio.CancelScope()
    cancelled_at: list[float] = []

    async def a() -> None:
        await clock.sleep(5)
        b_scope.cancel()

    async def b() -> None:
        with b_scope:
            await never.wait()
        cancelled_at.append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(b)
        tg.start_soon(a)
    assert b_scope.cancelled_caught
    assert cancelled_at == [5]


@pytest.mark.anyio
async def test_zero_and_forever() -> None:
    """sleep(0) only yields, NaN is refused, and an infinite sleep never lets time jump."""
    clock = FakeClock()
    await clock.sleep(0)
    await clock.sleep(-3)
    assert clock.monotonic() == 0
    with pytest.raises(ValueError, match="NaN"):
        await clock.sleep(math.nan)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.sleep, math.inf)
            await clock.sleep(7)
            scope.cancel()
    assert clock.monotonic() == 7
    assert clock.next_deadline() is None


def test_busy_outside_a_task_is_refused() -> None:
    """busy() in a worker thread (no task) raises instead of miscounting."""
    with pytest.raises(RuntimeError, match="worker thread"), FakeClock().busy():
        pass


def test_repr_shows_counts() -> None:
    """The repr shows the time and counts, not the sleepers themselves."""
    assert repr(FakeClock()) == (
        "FakeClock(now=2026-01-01T00:00:00+00:00, sleepers=0, busy=0, autojump=True)"
    )
