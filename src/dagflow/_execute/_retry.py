"""When a failed attempt is tried again, and after how long (the only user of tenacity).

The delay after failed attempt ``n`` is ``min(initial_delay_ms * backoff_multiplier **
(n - 1), max_delay_ms)``: tenacity's ``wait_exponential`` with ``multiplier=initial``,
``exp_base=backoff`` and ``max=max_delay``. The engine drives the loop itself, so that the
attempt number can continue from the stored count after a recovery and every wait goes
through the engine's clock.
"""

from __future__ import annotations

import functools

from tenacity import RetryCallState, wait_exponential

from .._models import FailureAction, RetryPolicy, TaskDefinition

__all__ = ["backoff_seconds", "effective_policy", "is_retryable"]

_DEFAULT_POLICY = RetryPolicy()


def effective_policy(task: TaskDefinition) -> RetryPolicy | None:
    """The task's policy; ``on_failure: Retry`` without one uses the default policy."""
    if task.retry_policy is not None:
        return task.retry_policy
    if task.config.on_failure == FailureAction.RETRY:
        return _DEFAULT_POLICY
    return None


@functools.lru_cache(maxsize=256)
def _wait(policy: RetryPolicy) -> wait_exponential:
    return wait_exponential(
        multiplier=policy.initial_delay_ms / 1000,
        exp_base=policy.backoff_multiplier,
        max=policy.max_delay_ms / 1000,
    )


def backoff_seconds(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempt)
    return float(_wait(policy)(state))


def is_retryable(policy: RetryPolicy, *, kind: str, reason: str) -> bool:
    """Whether ``retryable_errors`` lets this failure be retried (empty: every failure)."""
    if not policy.retryable_errors:
        return True
    return any(needle in kind or needle in reason for needle in policy.retryable_errors)
