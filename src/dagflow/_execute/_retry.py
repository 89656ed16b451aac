"""When a failed attempt is tried again, and after how long: every tenacity object lives here.

The delay after failed attempt ``n`` is ``min(initial_delay_ms * backoff_multiplier **
(n - 1), max_delay_ms)``: tenacity's ``wait_exponential`` with ``multiplier=initial``,
``exp_base=backoff`` and ``max=max_delay``. With ``RetryPolicy.jitter`` it is "equal
jitter": half of that delay plus a random part of up to the other half, so the wait stays
between half the delay and the delay itself (docs/decisions.md says why not full jitter).

A failing service may ask for a longer wait (HTTP ``Retry-After``): the failure carries
``retry_after`` seconds (:class:`~dagflow.TaskExecutionFailed`, or any outcome value with
that attribute), and the wait becomes ``max(backoff, min(retry_after, max_delay))``.

The loops built here (:func:`retrying`, :func:`backoff_retrying`) sleep through the
``sleep`` they are given (the engine's clock, so ``FakeClock`` skips the waits on asyncio
and trio alike) and continue counting from attempts made before a recovery.
:func:`commit_with_retries` retries transient store errors in real time.
"""

from __future__ import annotations

import copy
import datetime as dt
import email.utils
import functools
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_base,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.retry import RetryBaseT
from tenacity.wait import wait_base

from .._errors import StorageError, TaskExecutionFailed, WorkflowError
from .._models import FailureAction, RetryPolicy, TaskDefinition

__all__ = [
    "RetryCallState",
    "backoff_retrying",
    "backoff_seconds",
    "backoff_wait",
    "commit_with_retries",
    "effective_policy",
    "is_retryable",
    "parse_retry_after",
    "retry_on",
    "retry_on_value",
    "retrying",
    "wait_for",
]

logger = logging.getLogger("dagflow")

Sleep = Callable[[float], Awaitable[None]]
BeforeSleep = Callable[[RetryCallState], Awaitable[None] | None]

_DEFAULT_POLICY = RetryPolicy()
_DELTA_SECONDS = re.compile(r"[0-9]+")  # RFC 9110: 1*DIGIT, nothing else
# transient store errors: 4 tries, waiting 0.05 s, 0.2 s and 0.8 s in between
_COMMIT_TRIES = 4
_COMMIT_FIRST_DELAY = 0.05
_COMMIT_FACTOR = 4


def effective_policy(task: TaskDefinition) -> RetryPolicy | None:
    """The task's policy; ``on_failure: Retry`` without one uses the default policy."""
    if task.retry_policy is not None:
        return task.retry_policy
    if task.config.on_failure == FailureAction.RETRY:
        return _DEFAULT_POLICY
    return None


def is_retryable(policy: RetryPolicy, *, kind: str, reason: str) -> bool:
    """Whether ``retryable_errors`` lets this failure be retried (empty: every failure)."""
    if not policy.retryable_errors:
        return True
    return any(needle in kind or needle in reason for needle in policy.retryable_errors)


# --------------------------------------------------------------------------- waits


class _Shifted(wait_base):
    """``inner`` as if ``offset`` attempts had been made before this loop began."""

    def __init__(self, inner: wait_base, offset: int) -> None:
        self.inner = inner
        self.offset = offset

    def __call__(self, retry_state: RetryCallState) -> float:
        if not self.offset:
            return self.inner(retry_state)
        shifted = copy.copy(retry_state)  # tenacity's strategies read attempt_number only
        shifted.attempt_number += self.offset
        return self.inner(shifted)


class _HonourRetryAfter(wait_base):
    """``inner``, or longer when the last outcome asks for it (``retry_after``), up to
    ``cap`` seconds."""

    def __init__(self, inner: wait_base, cap: float) -> None:
        self.inner = inner
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = float(self.inner(retry_state))
        asked = _retry_after(retry_state)
        if asked is None:
            return delay
        return max(delay, min(asked, self.cap))


def _retry_after(retry_state: RetryCallState) -> float | None:
    """The ``retry_after`` of the last outcome's exception or value, if a sane number."""
    outcome = retry_state.outcome
    if outcome is None:
        return None
    source = outcome.exception() if outcome.failed else outcome.result()
    value = getattr(source, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if math.isnan(value) or value < 0:
        return None
    return float(value)


def _backoff(initial: float, multiplier: float, maximum: float | None,
             jitter: bool) -> wait_base:
    """``min(initial * multiplier**(n-1), maximum)``, or equal jitter over it."""
    limit: dict[str, float] = {} if maximum is None else {"max": maximum}
    if not jitter:
        return wait_exponential(multiplier=initial, exp_base=multiplier, **limit)
    # equal jitter: a fixed half plus a random half, each capped at half the maximum,
    # so the sum lies in [delay/2, delay] and never above the maximum
    half = {key: value / 2 for key, value in limit.items()}
    return (wait_exponential(multiplier=initial / 2, exp_base=multiplier, **half)
            + wait_random_exponential(multiplier=initial / 2, exp_base=multiplier, **half))


def backoff_wait(
    *,
    initial: float,
    multiplier: float,
    maximum: float | None,
    retry_after_cap: float,
    jitter: bool = False,
    attempts_done: int = 0,
) -> wait_base:
    """A tenacity wait: exponential backoff that honours ``retry_after`` up to a cap.

    Args:
        initial: Seconds after the first failed attempt.
        multiplier: Each wait is this many times the one before.
        maximum: The longest backoff in seconds, or ``None`` for no limit.
        retry_after_cap: The longest wait a ``retry_after`` may ask for, in seconds.
        jitter: Draw each backoff at random between half of it and all of it.
        attempts_done: Attempts made before this loop began (the first failure here
            is attempt ``attempts_done + 1``).

    Returns:
        A wait strategy for ``AsyncRetrying(wait=...)``.
    """
    backoff = _Shifted(_backoff(initial, multiplier, maximum, jitter), attempts_done)
    return _HonourRetryAfter(backoff, retry_after_cap)


def wait_for(policy: RetryPolicy, *, attempts_done: int = 0) -> wait_base:
    """The tenacity wait strategy of ``policy``.

    After failed attempt ``n`` (``attempts_done`` plus tenacity's
    ``retry_state.attempt_number``) it waits ``min(initial_delay_ms *
    backoff_multiplier**(n-1), max_delay_ms)``, drawn in ``[half, all]`` of that with
    ``jitter``. When the last outcome (its exception, or the value an attempt returned)
    has a ``retry_after`` attribute asking for longer, it waits that long, but never more
    than ``max_delay_ms``.

    Args:
        policy: The task's retry policy.
        attempts_done: Attempts made before a crash and recovery.

    Returns:
        A wait strategy for ``AsyncRetrying(wait=...)``; call it with a
        ``RetryCallState`` to get seconds.
    """
    return _wait_for(policy, attempts_done)


@functools.lru_cache(maxsize=256)
def _wait_for(policy: RetryPolicy, attempts_done: int) -> wait_base:
    maximum = policy.max_delay_ms / 1000
    return backoff_wait(initial=policy.initial_delay_ms / 1000,
                        multiplier=policy.backoff_multiplier, maximum=maximum,
                        retry_after_cap=maximum, jitter=policy.jitter,
                        attempts_done=attempts_done)


def backoff_seconds(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    A fresh draw each call when the policy has ``jitter``; no ``Retry-After`` applies.
    """
    state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = max(1, attempt)
    return float(wait_for(policy)(state))


# --------------------------------------------------------------------------- Retry-After


def parse_retry_after(
    value: str | None,
    *,
    date: str | None = None,
    now: dt.datetime | None = None,
) -> float | None:
    """Seconds an HTTP ``Retry-After`` header asks to wait.

    Both forms of RFC 9110 are read: delta-seconds (``120``) and an HTTP-date
    (``Wed, 21 Oct 2015 07:28:00 GMT``). A date counts from the response's own ``Date``
    header when it has a valid one (so a skewed local clock does not matter), else from
    ``now``; a date in the past means 0.

    Args:
        value: The header's value, or ``None`` when absent.
        date: The response's ``Date`` header, if any.
        now: The current time (default: the real UTC time).

    Returns:
        Seconds (0 or more), or ``None`` when the header is absent or is neither form.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)  # float: a 400-digit number is inf, not an int() error
    when = _http_date(text)
    if when is None:
        return None
    reference = _http_date(date) if date is not None else None
    if reference is None:
        reference = now if now is not None else dt.datetime.now(dt.UTC)
    return max(0.0, (when - reference).total_seconds())


def _http_date(text: str) -> dt.datetime | None:
    """An aware datetime (naive ones are UTC), or ``None`` for anything unparseable."""
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


# --------------------------------------------------------------------------- loops


class _UnlessCancelled(retry_base):
    """``inner``, except that an outcome that is not an ``Exception`` (a cancellation,
    KeyboardInterrupt) is never retried: cancellation belongs to anyio."""

    def __init__(self, inner: RetryBaseT) -> None:
        self.inner = inner

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed and not isinstance(outcome.exception(),
                                                                      Exception):
            return False
        return bool(self.inner(retry_state))


def _last_outcome(retry_state: RetryCallState) -> Any:
    """Out of attempts: return the last value, or raise the last exception (not a
    tenacity ``RetryError``)."""
    assert retry_state.outcome is not None
    return retry_state.outcome.result()


def _may_retry(policy: RetryPolicy, exc: BaseException) -> bool:
    """Whether a raised failure may be retried under ``policy``, as the engine judges it."""
    if not isinstance(exc, Exception):
        return False
    if isinstance(exc, TaskExecutionFailed):
        return exc.retryable and is_retryable(policy, kind=exc.kind, reason=exc.reason)
    return is_retryable(policy, kind=type(exc).__name__, reason=str(exc))


def retry_on(*types: type[Exception]) -> retry_base:
    """A tenacity ``retry`` strategy: try again when the attempt raised one of ``types``."""
    return retry_if_exception_type(types)


def retry_on_value(predicate: Callable[[Any], bool]) -> retry_base:
    """A tenacity ``retry`` strategy for attempts that end in a value (the engine's
    outcomes): try again when ``predicate(value)`` is true; a raised error is not retried."""
    return retry_if_result(predicate)


def backoff_retrying(
    *,
    attempts: int,
    wait: wait_base,
    sleep: Sleep,
    retry: RetryBaseT,
    before_sleep: BeforeSleep | None = None,
) -> AsyncRetrying:
    """A tenacity loop of at most ``attempts`` tries, sleeping through ``sleep``.

    Out of attempts it raises the last exception itself or returns the last value (never
    a ``RetryError``). A cancellation is never retried, whatever ``retry`` says. Make a
    new one per loop: tenacity keeps the loop's state in the object.

    Args:
        attempts: Tries in all in this loop, at least 1.
        wait: Seconds between tries (:func:`wait_for`, :func:`backoff_wait`).
        sleep: Waits between tries (the engine clock's ``sleep``).
        retry: Which outcomes are tried again (a tenacity ``retry_*`` strategy).
        before_sleep: Called (sync or async) before each wait with the
            ``RetryCallState``: ``attempt_number``, ``outcome``, ``upcoming_sleep``.

    Returns:
        ``tenacity.AsyncRetrying``: ``await loop(fn, *args)`` or ``async for attempt in
        loop: with attempt: ...``.
    """
    return AsyncRetrying(
        sleep=sleep,
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait,
        retry=_UnlessCancelled(retry),
        before_sleep=before_sleep,
        reraise=True,
        retry_error_callback=_last_outcome,
    )


def retrying(
    policy: RetryPolicy,
    *,
    sleep: Sleep,
    attempts_done: int = 0,
    retry: RetryBaseT | None = None,
    before_sleep: BeforeSleep | None = None,
) -> AsyncRetrying:
    """The attempts of one task under ``policy``, as a tenacity loop.

    Up to ``max_attempts`` attempts counting those made before a recovery (at least one
    more, as after a crash on the last attempt), waiting :func:`wait_for` between them
    through ``sleep``.

    Args:
        policy: The task's retry policy.
        sleep: Waits between attempts: pass the engine clock's ``sleep`` so ``FakeClock``
            skips them.
        attempts_done: Attempts already made (the stored count after a recovery).
        retry: Which outcomes are tried again. Default: a raised ``Exception`` that is
            retryable (``TaskExecutionFailed.retryable``) and that ``retryable_errors``
            matches by kind (or type name) or message. An attempt loop whose attempts
            return a value passes :func:`retry_on_value`.
        before_sleep: Called before each wait (record a ``TaskRetrying`` event here);
            the attempt that failed is ``attempts_done + state.attempt_number`` and the
            delay ``state.upcoming_sleep``.

    Returns:
        ``tenacity.AsyncRetrying``; out of attempts it raises the last exception or
        returns the last value.
    """
    if retry is None:
        retry = retry_if_exception(functools.partial(_may_retry, policy))
    return backoff_retrying(
        attempts=policy.max_attempts - attempts_done,
        wait=wait_for(policy, attempts_done=attempts_done),
        sleep=sleep,
        retry=retry,
        before_sleep=before_sleep,
    )


def _transient(exc: BaseException) -> bool:
    """A driver error is transient until proven otherwise; dagflow's own errors are not."""
    return isinstance(exc, Exception) and not isinstance(exc, WorkflowError)


def _log_commit_retry(retry_state: RetryCallState) -> None:
    assert retry_state.outcome is not None
    logger.warning("store commit failed (%s); retrying in %.2fs",
                   retry_state.outcome.exception(), retry_state.upcoming_sleep)


async def commit_with_retries(
    commit: Callable[[], Awaitable[None]],
    *,
    sleep: Sleep = anyio.sleep,
) -> None:
    """Run a store commit, retrying transient errors: 4 tries, waiting 0.05, 0.2, 0.8 s.

    Any ``Exception`` but a :class:`~dagflow.WorkflowError` counts as transient (a locked
    database, a dropped connection); each retry logs a warning on the ``dagflow`` logger.
    The waits are real time even under a fake clock: the store is real.

    Args:
        commit: Makes one try.
        sleep: Waits between tries (``anyio.sleep``; tests pass their own).

    Raises:
        WorkflowError: Whatever ``commit`` raised of dagflow's own, at once.
        StorageError: The last transient error's message, from that error, after the
            fourth try.
    """
    try:  # the common case, without building a tenacity loop on every commit
        await commit()
        return
    except WorkflowError:
        raise
    except Exception as exc:
        first = exc
    logger.warning("store commit failed (%s); retrying in %.2fs", first, _COMMIT_FIRST_DELAY)
    await sleep(_COMMIT_FIRST_DELAY)
    loop = backoff_retrying(
        attempts=_COMMIT_TRIES - 1,
        wait=_Shifted(wait_exponential(multiplier=_COMMIT_FIRST_DELAY,
                                       exp_base=_COMMIT_FACTOR), 1),
        sleep=sleep,
        retry=retry_if_exception(_transient),
        before_sleep=_log_commit_retry,
    )

    async def once() -> None:
        # tenacity awaits only what it sees is a coroutine function; a lambda returning
        # a coroutine would come back unawaited
        await commit()

    try:
        await loop(once)
    except WorkflowError:
        raise
    except Exception as exc:
        raise StorageError(str(exc)) from exc
