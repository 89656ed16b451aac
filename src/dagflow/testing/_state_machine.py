"""``check_state_machine``: the contract of a :class:`~dagflow.StateMachine`, as a kit.

A host's machine may refuse more changes than dagflow's table, to enforce its own policy
(no retries of production runs, say), but never allow one the table forbids: the engine,
its recovery and its history all rely on that. What the machine allows it must report the
same way through both methods, since the engine asks :meth:`is_valid_transition` before
work starts and :meth:`transition` when the state changes.
"""

from __future__ import annotations

import datetime as dt
import inspect
from typing import Any

from .._errors import InvalidStateTransition
from .._models import StateTransition, WorkflowState
from .._protocols import StateMachine
from .._state import TRANSITIONS
from ._common import named, short

__all__ = ["check_state_machine"]

_FINAL = (WorkflowState.ROLLED_BACK, WorkflowState.ARCHIVED)


def check_state_machine(machine: StateMachine) -> None:
    """Run the :class:`~dagflow.StateMachine` contract against ``machine``.

    For every pair of :class:`~dagflow.WorkflowState` values:

    - ``is_valid_transition`` answers with a ``bool``, and never allows what the contract
      forbids: a change missing from ``dagflow._state.TRANSITIONS``, leaving RolledBack
      or Archived, or a state to itself. Refusing more than the table is allowed.
    - ``transition`` accepts exactly what ``is_valid_transition`` allows, and returns a
      :class:`~dagflow.StateTransition` with the same from and to states and reason and
      a timezone-aware timestamp; it refuses everything else with
      :class:`~dagflow.InvalidStateTransition` (naming both states), nothing else.

    Both methods are synchronous (the engine calls them between two awaits, so that
    nothing happens between the decision and the change). The kit stops at the first
    violation.

    Args:
        machine: The state machine to check. The kit only asks it questions, so it may
            be the one an engine uses.

    Raises:
        AssertionError: The machine broke the contract; the message names the check and
            the change (``"check_state_machine: is_valid_transition: allows Completed ->
            Running, ..."``).
    """
    kit = "check_state_machine"
    pairs = [(a, b) for a in WorkflowState for b in WorkflowState]
    allowed: dict[tuple[WorkflowState, WorkflowState], bool] = {}
    with named(kit, "is_valid_transition"):
        for a, b in pairs:
            allowed[a, b] = _is_valid(machine, a, b)
            if allowed[a, b]:
                _within_the_table(a, b)
    with named(kit, "transition"):
        for n, (a, b) in enumerate(pairs):
            reason = None if n % 2 else f"kit: {a} -> {b} ✓"
            _transition(machine, a, b, reason, allowed[a, b])


def _is_valid(machine: StateMachine, a: WorkflowState, b: WorkflowState) -> bool:
    answer: Any = machine.is_valid_transition(a, b)
    _not_async(answer, "is_valid_transition")
    assert isinstance(answer, bool), \
        f"is_valid_transition({a} -> {b}) returned {short(answer)}, not a bool"
    return answer


def _within_the_table(a: WorkflowState, b: WorkflowState) -> None:
    """Fail, saying why, if the contract forbids ``a -> b``."""
    if b in TRANSITIONS.get(a, frozenset()):
        return
    if a in _FINAL:
        why = f"{a} is final: nothing may leave it"
    elif a == b:
        why = "a state cannot change to itself"
    else:
        allowed = ", ".join(sorted(TRANSITIONS.get(a, frozenset()))) or "nothing"
        why = f"the contract allows {a} -> {allowed} only (dagflow._state.TRANSITIONS)"
    raise AssertionError(f"allows {a} -> {b}, which the contract forbids: {why}; a "
                         "machine may refuse more than the table, never allow more")


def _transition(machine: StateMachine, a: WorkflowState, b: WorkflowState,
                reason: str | None, valid: bool) -> None:
    instance_id = f"kit-{a}-{b}"
    try:
        record: Any = machine.transition(instance_id, a, b, reason)
    except InvalidStateTransition as exc:
        assert not valid, (f"transition({a} -> {b}) raised InvalidStateTransition, but "
                           "is_valid_transition allows it")
        assert (exc.from_state, exc.to_state) == (a, b), (
            f"transition({a} -> {b}) raised InvalidStateTransition naming "
            f"{exc.from_state} -> {exc.to_state}")
        return
    except Exception as exc:
        raise AssertionError(
            f"transition({a} -> {b}) raised {type(exc).__name__} ({exc}): a refusal must "
            "be InvalidStateTransition, and an allowed change must return its record"
        ) from exc
    _not_async(record, "transition")
    assert valid, (f"transition({a} -> {b}) returned {short(record)}, but "
                   "is_valid_transition refuses it: it must raise InvalidStateTransition")
    assert isinstance(record, StateTransition), \
        f"transition({a} -> {b}) returned {short(record)}, not a StateTransition"
    got = (record.from_state, record.to_state, record.reason)
    assert got == (a, b, reason), \
        f"transition({a} -> {b}, reason={reason!r}) returned a record of {got}"
    at = record.timestamp
    assert isinstance(at, dt.datetime), \
        f"transition({a} -> {b}) has timestamp {short(at)}, not a datetime"
    assert at.tzinfo is not None and at.utcoffset() is not None, (
        f"transition({a} -> {b}) has a naive timestamp {at.isoformat()}: it must be "
        "timezone-aware (UTC)")


def _not_async(value: Any, method: str) -> None:
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: close it, or Python warns when it is collected
        raise AssertionError(f"{method} returned an awaitable: it must be synchronous "
                             "(def, not async def)")
