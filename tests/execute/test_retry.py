"""_execute/_retry.py: backoff, jitter, Retry-After and the tenacity loops built on them."""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from typing import Any

import anyio
import attrs
import pytest
from tenacity import AsyncRetrying, RetryCallState, retry_always

from dagflow._errors import CheckpointError, StorageError, TaskExecutionFailed
from dagflow._execute._retry import (
    backoff_retrying,
    backoff_seconds,
    backoff_wait,
    commit_with_retries,
    parse_retry_after,
    retry_on,
    retry_on_value,
    retrying,
    wait_for,
)
from dagflow._models import RetryPolicy
from dagflow.testing import FakeClock

POLICIES = [
    RetryPolicy(),
    RetryPolicy(initial_delay_ms=250, max_delay_ms=5_000, backoff_multiplier=3.0),
    RetryPolicy(initial_delay_ms=0),
    RetryPolicy(initial_delay_ms=1_000, max_delay_ms=0),
    RetryPolicy(initial_delay_ms=1_000, backoff_multiplier=1.0),
    RetryPolicy(initial_delay_ms=86_400_000, max_delay_ms=86_400_000, backoff_multiplier=100.0),
]


def _contract(policy: RetryPolicy, n: int) -> float:
    """The contract's delay after failed attempt ``n``, in seconds."""
    ms = min(policy.initial_delay_ms * policy.backoff_multiplier ** (n - 1), policy.max_delay_ms)
    return ms / 1000


def _state(attempt: int, *, error: BaseException | None = None, result: Any = None
           ) -> RetryCallState:
    """A real RetryCallState after failed attempt ``attempt`` with that outcome."""
    state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    if error is not None:
        state.set_exception((type(error), error, None))
    else:
        state.set_result(result)
    return state


def _throttled(retry_after: float | None) -> TaskExecutionFailed:
    return TaskExecutionFailed(reason="HTTP 429 Too Many Requests", kind="http_status",
                               retry_after=retry_after)


@attrs.frozen
class Outcome:
    """An attempt loop's outcome value (the engine's attempts end in a value)."""

    failed: bool
    retry_after: float | None = None


@attrs.define
class Flaky:
    """An attempt that fails ``failures`` times with ``error``, then returns ``"ok"``."""

    failures: int
    error: Exception = attrs.Factory(lambda: TaskExecutionFailed(reason="exit code 1",
                                                                 kind="exit_code"))
    calls: int = 0

    async def __call__(self) -> str:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.calls <= self.failures:
            raise self.error
        return "ok"


@attrs.define
class Commit:
    """A store commit that raises ``errors`` in turn, then succeeds."""

    errors: list[Exception]
    calls: int = 0

    async def __call__(self) -> None:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.errors:
            raise self.errors.pop(0)


@attrs.define
class Sleeps:
    """A sleep that records its delays and does not wait."""

    delays: list[float] = attrs.Factory(list)
    checkpoint: bool = True

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.checkpoint:
            await anyio.lowlevel.checkpoint()


# --------------------------------------------------------------------------- the delay


@pytest.mark.parametrize("policy", POLICIES)
def test_backoff_without_jitter_is_the_contract_formula(policy: RetryPolicy) -> None:
    """Jitter off: min(initial * multiplier^(n-1), max), for every attempt number."""
    for n in range(1, 40):
        assert backoff_seconds(policy, n) == pytest.approx(_contract(policy, n), rel=1e-12)
        assert wait_for(policy)(_state(n, error=_throttled(None))) == pytest.approx(
            _contract(policy, n), rel=1e-12)


def test_backoff_continues_from_attempts_done() -> None:
    """After a recovery, the first wait is the one of the stored attempt count."""
    policy = RetryPolicy(initial_delay_ms=1000, backoff_multiplier=2.0, max_delay_ms=60_000)
    wait = wait_for(policy, attempts_done=3)
    assert [wait(_state(n, result=None)) for n in (1, 2)] == [8.0, 16.0]


@pytest.mark.parametrize("policy", [
    RetryPolicy(jitter=True),
    RetryPolicy(initial_delay_ms=250, max_delay_ms=5_000, backoff_multiplier=3.0, jitter=True),
    RetryPolicy(initial_delay_ms=1_000, max_delay_ms=1_500, jitter=True),
])
def test_jitter_draws_between_half_and_all_of_the_delay(policy: RetryPolicy) -> None:
    """Jitter on: each delay is random in [delay/2, delay], never above max_delay_ms."""
    for n in range(1, 12):
        high = _contract(policy, n)
        draws = [backoff_seconds(policy, n) for _ in range(200)]
        assert all(high / 2 <= d <= high <= policy.max_delay_ms / 1000 for d in draws)
        assert len(set(draws)) > 150  # random, not one fixed value
        assert min(draws) < high * 0.6 and max(draws) > high * 0.9  # spread over the range


def test_jitter_of_zero_delay_is_zero() -> None:
    """initial_delay_ms 0 with jitter still waits nothing."""
    assert backoff_seconds(RetryPolicy(initial_delay_ms=0, jitter=True), 3) == 0


def test_retry_after_from_the_exception_lengthens_the_wait() -> None:
    """A failure asking for 7 s waits 7 s where the backoff says 1 s."""
    assert wait_for(RetryPolicy())(_state(1, error=_throttled(7))) == 7


def test_shorter_retry_after_keeps_the_backoff() -> None:
    """A failure asking for 0.5 s still waits the backoff's 4 s."""
    assert wait_for(RetryPolicy())(_state(3, error=_throttled(0.5))) == 4


def test_retry_after_is_capped_at_max_delay() -> None:
    """Retry-After never makes a wait longer than max_delay_ms."""
    policy = RetryPolicy(max_delay_ms=10_000)
    assert wait_for(policy)(_state(1, error=_throttled(3600))) == 10
    assert wait_for(policy)(_state(1, error=_throttled(float("inf")))) == 10


def test_retry_after_is_read_from_an_outcome_value() -> None:
    """An attempt that ends in a value with ``retry_after`` is honoured like an exception."""
    assert wait_for(RetryPolicy())(_state(1, result=Outcome(True, retry_after=5))) == 5
    assert wait_for(RetryPolicy())(_state(1, result=Outcome(True))) == 1


@pytest.mark.parametrize("bad", [float("nan"), -3, "5", True])
def test_nonsense_retry_after_is_ignored(bad: Any) -> None:
    """NaN, negative, text and booleans are not a wait: the backoff's 0.1 s stands."""
    wait = wait_for(RetryPolicy(initial_delay_ms=100))
    assert wait(_state(1, result=Outcome(True, retry_after=bad))) == 0.1


def test_retry_after_with_jitter_is_a_floor() -> None:
    """With jitter, Retry-After is still waited in full (it is the server's ask)."""
    policy = RetryPolicy(jitter=True)
    assert all(wait_for(policy)(_state(1, error=_throttled(20))) == 20 for _ in range(50))


# --------------------------------------------------------------------------- Retry-After


NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def _http_date(when: dt.datetime) -> str:
    return email.utils.format_datetime(when, usegmt=True)


@pytest.mark.parametrize(("header", "seconds"), [
    ("3", 3.0), (" 120 ", 120.0), ("0", 0.0),
    (_http_date(NOW + dt.timedelta(seconds=90)), 90.0),
    ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
    (_http_date(NOW - dt.timedelta(hours=1)), 0.0),  # in the past: at once
    ("Wednesday, 01-May-24 12:00:45 GMT", 45.0),  # RFC 850, still allowed by RFC 9110
    ("Wed May  1 12:00:10 2024", 10.0),  # asctime: no zone, read as UTC
])
def test_parse_retry_after_reads_both_forms(header: str, seconds: float) -> None:
    """Delta-seconds and HTTP-date (counted from ``now``); a past date means now."""
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize("header", [None, "", "soon", "-5", "1.5", "3 s", "²",
                                    "Wed, 99 Foo 2024 12:00:30 GMT"])
def test_parse_retry_after_ignores_garbage(header: str | None) -> None:
    """Anything but digits or a date is ignored."""
    assert parse_retry_after(header, now=NOW) is None


def test_parse_retry_after_counts_from_the_response_date() -> None:
    """With the response's Date, a skewed local clock does not matter."""
    server_now = NOW + dt.timedelta(days=3)
    header = _http_date(server_now + dt.timedelta(seconds=20))
    assert parse_retry_after(header, now=NOW, date=_http_date(server_now)) == 20
    assert parse_retry_after(header, now=NOW, date="garbage") == 3 * 86_400 + 20


def test_parse_retry_after_defaults_to_the_real_time() -> None:
    """Without ``now`` a date is counted from the current UTC time."""
    header = _http_date(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60))
    seconds = parse_retry_after(header)
    assert seconds is not None and 57 <= seconds <= 60


# --------------------------------------------------------------------------- retrying()


@pytest.mark.anyio
async def test_retrying_sleeps_on_the_injected_clock() -> None:
    """Two failures wait 1 s and 2 s on the FakeClock, taking no real time."""
    clock = FakeClock()
    attempt = Flaky(failures=2)
    started = time.monotonic()
    result: str = await retrying(RetryPolicy(), sleep=clock.sleep)(attempt)
    assert result == "ok" and attempt.calls == 3
    assert clock.monotonic() == 3
    assert time.monotonic() - started < 0.5


@pytest.mark.anyio
async def test_retrying_waits_as_long_as_retry_after_asks() -> None:
    """A throttled attempt asking for 9 s waits 9 s (fake) before the next one."""
    clock = FakeClock()
    attempt = Flaky(failures=1, error=_throttled(9))
    assert await retrying(RetryPolicy(), sleep=clock.sleep)(attempt) == "ok"
    assert clock.monotonic() == 9


@pytest.mark.anyio
async def test_retrying_reraises_the_last_failure() -> None:
    """After max_attempts the attempt's own exception is raised, not a RetryError."""
    clock = FakeClock()
    attempt = Flaky(failures=10)
    with pytest.raises(TaskExecutionFailed, match="exit code 1"):
        await retrying(RetryPolicy(max_attempts=4), sleep=clock.sleep)(attempt)
    assert attempt.calls == 4 and clock.monotonic() == 1 + 2 + 4


@pytest.mark.anyio
async def test_retrying_counts_attempts_made_before_a_recovery() -> None:
    """Two attempts already made out of three leave one; its wait continues the series."""
    clock = FakeClock()
    attempt = Flaky(failures=10)
    policy = RetryPolicy(max_attempts=5)
    with pytest.raises(TaskExecutionFailed):
        await retrying(policy, sleep=clock.sleep, attempts_done=2)(attempt)
    assert attempt.calls == 3 and clock.monotonic() == 4 + 8  # after attempts 3 and 4
    spent = Flaky(failures=10)
    with pytest.raises(TaskExecutionFailed):  # all used up: one more try, as before
        await retrying(policy, sleep=clock.sleep, attempts_done=7)(spent)
    assert spent.calls == 1


@pytest.mark.anyio
@pytest.mark.parametrize(("error", "policy"), [
    (TaskExecutionFailed(reason="HTTP 404", kind="http_status", retryable=False),
     RetryPolicy()),
    (TaskExecutionFailed(reason="exit code 1", kind="exit_code"),
     RetryPolicy(retryable_errors=("timeout", "connection"))),
    (ValueError("boom"), RetryPolicy(retryable_errors=("timeout",))),
])
async def test_retrying_gives_up_at_once_on_what_may_not_be_retried(
        error: Exception, policy: RetryPolicy) -> None:
    """Not retryable, or not matched by retryable_errors: one attempt, no wait."""
    clock = FakeClock()
    attempt = Flaky(failures=10, error=error)
    with pytest.raises(type(error)):
        await retrying(policy, sleep=clock.sleep)(attempt)
    assert attempt.calls == 1 and clock.monotonic() == 0


@pytest.mark.anyio
async def test_retrying_matches_retryable_errors_on_kind_and_type() -> None:
    """retryable_errors matches a TaskExecutionFailed's kind and another error's type."""
    clock = FakeClock()
    policy = RetryPolicy(retryable_errors=("exit_code", "OSError"))
    for error in (TaskExecutionFailed(reason="exit code 1", kind="exit_code"), OSError("x")):
        attempt = Flaky(failures=1, error=error)
        assert await retrying(policy, sleep=clock.sleep)(attempt) == "ok"
        assert attempt.calls == 2


@pytest.mark.anyio
async def test_retrying_on_a_value_returns_the_last_one() -> None:
    """With a result predicate, running out of attempts returns the last value."""
    clock = FakeClock()
    values: list[Outcome] = []

    async def attempt() -> Outcome:
        values.append(Outcome(True, retry_after=len(values) * 10.0))
        return values[-1]

    policy = RetryPolicy(max_attempts=3, max_delay_ms=60_000)
    last: Outcome = await retrying(policy, sleep=clock.sleep,
                                   retry=retry_on_value(lambda o: o.failed))(attempt)
    assert last is values[-1] and len(values) == 3
    assert clock.monotonic() == 1 + 10  # backoff 1 s, then Retry-After 10 s over 2 s


@pytest.mark.anyio
async def test_before_sleep_sees_each_attempt_and_its_delay() -> None:
    """before_sleep gets the failed attempt's number and the delay about to be slept."""
    clock = FakeClock()
    seen: list[tuple[int, float, str]] = []

    def record(state: RetryCallState) -> None:
        assert state.outcome is not None
        seen.append((state.attempt_number, state.upcoming_sleep, str(state.outcome.exception())))

    attempt = Flaky(failures=2)
    policy = RetryPolicy(max_attempts=4)
    await retrying(policy, sleep=clock.sleep, attempts_done=1, before_sleep=record)(attempt)
    assert [(n, delay) for n, delay, _ in seen] == [(1, 2.0), (2, 4.0)]
    assert all("exit code 1" in error for _, _, error in seen)


@pytest.mark.anyio
async def test_retrying_never_retries_a_cancellation() -> None:
    """Even a predicate that retries everything lets a cancel through after one attempt."""
    sleeps = Sleeps(checkpoint=False)  # so that nothing but the loop could stop a retry
    calls = 0
    with anyio.CancelScope() as scope:

        async def attempt() -> None:
            nonlocal calls
            calls += 1
            scope.cancel()
            await anyio.sleep(1)

        await retrying(RetryPolicy(), sleep=sleeps, retry=retry_always)(attempt)
    assert scope.cancelled_caught and calls == 1 and sleeps.delays == []


@pytest.mark.anyio
async def test_backoff_retrying_retries_only_the_given_types() -> None:
    """retry_on(OSError) tries an OSError again and lets a ValueError through at once."""
    sleeps = Sleeps()

    def loop() -> AsyncRetrying:
        wait = backoff_wait(initial=0.5, multiplier=2, maximum=None, retry_after_cap=10)
        return backoff_retrying(attempts=3, wait=wait, sleep=sleeps, retry=retry_on(OSError))

    flaky = Flaky(failures=2, error=OSError("reset"))
    assert await loop()(flaky) == "ok"
    assert flaky.calls == 3 and sleeps.delays == [0.5, 1.0]
    broken = Flaky(failures=2, error=ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        await loop()(broken)
    assert broken.calls == 1


@pytest.mark.anyio
async def test_a_value_loop_does_not_retry_a_raised_error() -> None:
    """With retry_on_value, an attempt that raises is not tried again."""
    attempt = Flaky(failures=1, error=OSError("x"))
    with pytest.raises(OSError):
        await retrying(RetryPolicy(), sleep=Sleeps(), retry=retry_on_value(bool))(attempt)
    assert attempt.calls == 1


# --------------------------------------------------------------------------- commits


@pytest.mark.anyio
async def test_commit_retries_a_driver_error_then_succeeds() -> None:
    """A transient driver error is retried after 0.05 s of real time."""
    commit = Commit([OSError("database is locked")])
    started = time.monotonic()
    await commit_with_retries(commit)
    assert commit.calls == 2 and time.monotonic() - started >= 0.05


@pytest.mark.anyio
async def test_commit_awaits_a_lambda_that_returns_a_coroutine() -> None:
    """commit may be any callable returning an awaitable (the journal passes a lambda):
    its work is done, and a transient failure is retried."""
    done: list[int] = []
    failures = [OSError("locked")]

    async def write(n: int) -> None:
        if failures:
            raise failures.pop()
        done.append(n)

    sleeps = Sleeps()
    await commit_with_retries(lambda: write(7), sleep=sleeps)
    assert done == [7] and sleeps.delays == pytest.approx([0.05])


@pytest.mark.anyio
async def test_commit_gives_up_after_four_tries_with_a_storage_error(
        caplog: pytest.LogCaptureFixture) -> None:
    """Four failures (waits 0.05, 0.2, 0.8 s) raise StorageError from the last one."""
    errors: list[Exception] = [OSError(f"disk I/O error {i}") for i in range(1, 6)]
    commit, sleeps = Commit(list(errors)), Sleeps()
    with pytest.raises(StorageError, match=r"^disk I/O error 4$") as info:
        await commit_with_retries(commit, sleep=sleeps)
    assert commit.calls == 4
    assert sleeps.delays == pytest.approx([0.05, 0.2, 0.8])
    assert info.value.__cause__ is errors[3]
    assert [r.getMessage() for r in caplog.records] == [
        "store commit failed (disk I/O error 1); retrying in 0.05s",
        "store commit failed (disk I/O error 2); retrying in 0.20s",
        "store commit failed (disk I/O error 3); retrying in 0.80s",
    ]


@pytest.mark.anyio
async def test_commit_does_not_retry_a_workflow_error() -> None:
    """A WorkflowError (a checksum failure, say) is raised as it is, at once."""
    error = CheckpointError("row tampered with")
    commit, sleeps = Commit([error]), Sleeps()
    with pytest.raises(CheckpointError) as info:
        await commit_with_retries(commit, sleep=sleeps)
    assert info.value is error and commit.calls == 1 and sleeps.delays == []
