"""The workflow state machine: one transition table, and a history of every change."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from dagflow import (
    DefaultStateMachine,
    InvalidStateTransition,
    StateTransition,
    WorkflowError,
    WorkflowState,
)
from dagflow._state import TERMINAL_STATES, TRANSITIONS, check_transition

S = WorkflowState

#: The allowed transitions, written out independently of ``TRANSITIONS``.
ALLOWED = frozenset({
    # the seed's state machine
    (S.DRAFT, S.VALIDATED),
    (S.VALIDATED, S.PENDING),
    (S.PENDING, S.RUNNING),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.FAILED, S.ROLLED_BACK),
    (S.COMPLETED, S.ARCHIVED),
    # the contract's additions: pause/resume and approval gates
    (S.RUNNING, S.PAUSED),
    (S.PAUSED, S.RUNNING),
    (S.RUNNING, S.WAITING_APPROVAL),
    (S.WAITING_APPROVAL, S.RUNNING),
    # what other parts of the contract need
    (S.PENDING, S.CANCELLED),  # cancel before the run starts
    (S.PAUSED, S.CANCELLED),  # cancel a paused run
    (S.WAITING_APPROVAL, S.CANCELLED),  # approval deadline: Cancelled with ApprovalTimeout
    (S.WAITING_APPROVAL, S.FAILED),  # a rejection fails the Approval task
    (S.WAITING_APPROVAL, S.PAUSED),  # pause while a gate is pending
    (S.FAILED, S.RUNNING),  # retry under the same id
    (S.CANCELLED, S.RUNNING),  # retry under the same id
    (S.CANCELLED, S.ROLLED_BACK),  # rollback on demand
})

ALL_PAIRS = list(itertools.product(S, repeat=2))


def at(minute: int) -> dt.datetime:
    return dt.datetime(2024, 1, 1, 12, minute, tzinfo=dt.UTC)


class Ticking:
    """A clock for the state machine that moves one minute per reading."""

    def __init__(self) -> None:
        self.minute = 0

    def __call__(self) -> dt.datetime:
        self.minute += 1
        return at(self.minute)


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize(
    ("from_state", "to_state"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS]
)
def test_transition_table_truth(from_state: WorkflowState, to_state: WorkflowState) -> None:
    """Each (from, to) pair is allowed exactly when it is in the documented set."""
    allowed = (from_state, to_state) in ALLOWED
    assert (to_state in TRANSITIONS[from_state]) is allowed
    assert DefaultStateMachine().is_valid_transition(from_state, to_state) is allowed
    if allowed:
        check_transition(from_state, to_state)
    else:
        with pytest.raises(InvalidStateTransition):
            check_transition(from_state, to_state)


def test_table_has_a_row_for_every_state() -> None:
    """Every state appears in the table, even those with no way out."""
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(
    ("a", "b"), [(S.PAUSED, S.RUNNING), (S.WAITING_APPROVAL, S.RUNNING)]
)
def test_pause_and_approval_are_two_way(a: WorkflowState, b: WorkflowState) -> None:
    """Running <-> Paused and Running <-> WaitingApproval are allowed both ways."""
    check_transition(a, b)
    check_transition(b, a)


@pytest.mark.parametrize("state", [S.ROLLED_BACK, S.ARCHIVED])
def test_final_states_have_no_way_out(state: WorkflowState) -> None:
    """Nothing leaves RolledBack or Archived."""
    assert TRANSITIONS[state] == frozenset()


@pytest.mark.parametrize("state", list(S))
def test_no_state_transitions_to_itself(state: WorkflowState) -> None:
    """A transition to the same state is never allowed (it would record a non-change)."""
    with pytest.raises(InvalidStateTransition):
        check_transition(state, state)


def test_terminal_states_wait_for_a_user() -> None:
    """Terminal states are the ones where nothing runs; Running-like states are not terminal."""
    assert {S.COMPLETED, S.FAILED, S.CANCELLED, S.ROLLED_BACK, S.ARCHIVED} == TERMINAL_STATES


def test_invalid_transition_carries_its_context() -> None:
    """InvalidStateTransition names both states and the instance, and is a WorkflowError."""
    with pytest.raises(InvalidStateTransition) as info:
        check_transition(S.COMPLETED, S.RUNNING, "inst-1")
    exc = info.value
    assert isinstance(exc, WorkflowError)
    assert (exc.from_state, exc.to_state, exc.instance_id) == ("Completed", "Running", "inst-1")
    assert "Completed -> Running" in str(exc)
    assert "inst-1" in str(exc)


def test_invalid_transition_attributes_are_keyword_only() -> None:
    """The error is built with keywords only, as every dagflow error is."""
    with pytest.raises(TypeError):
        InvalidStateTransition("Running", "Draft")  # type: ignore[misc]
    exc = InvalidStateTransition(from_state="Running", to_state="Draft")
    assert exc.instance_id is None


# --------------------------------------------------------------------------- the machine


def test_transition_returns_the_record_with_time_and_reason() -> None:
    """transition() returns the StateTransition the engine records: both states, the
    time from the injected clock, and the reason."""
    machine = DefaultStateMachine(now=Ticking())
    first = machine.transition("i1", S.PENDING, S.RUNNING, "started by ci")
    second = machine.transition("i1", S.RUNNING, S.WAITING_APPROVAL)
    assert first == StateTransition(S.PENDING, S.RUNNING, at(1), "started by ci")
    assert second == StateTransition(S.RUNNING, S.WAITING_APPROVAL, at(2), None)


def test_default_timestamps_are_utc_now() -> None:
    """Without an injected clock the timestamp is the current time, timezone-aware UTC."""
    machine = DefaultStateMachine()
    before = dt.datetime.now(dt.UTC)
    record = machine.transition("i1", S.PENDING, S.RUNNING)
    after = dt.datetime.now(dt.UTC)
    assert record.timestamp.utcoffset() == dt.timedelta(0)
    assert before <= record.timestamp <= after


def test_transition_outside_the_table_is_refused() -> None:
    """A change the table does not allow raises InvalidStateTransition naming both states
    and the instance."""
    machine = DefaultStateMachine(now=Ticking())
    with pytest.raises(InvalidStateTransition) as info:
        machine.transition("i1", S.COMPLETED, S.RUNNING, "try again")
    assert (info.value.from_state, info.value.to_state) == ("Completed", "Running")
    assert info.value.instance_id == "i1"


def test_machine_accepts_exactly_the_table() -> None:
    """Trying every (from, to) pair on the machine accepts exactly the allowed ones."""
    machine = DefaultStateMachine(now=Ticking())
    accepted: list[tuple[WorkflowState, WorkflowState]] = []
    for n, (start, target) in enumerate(ALL_PAIRS):
        try:
            record = machine.transition(f"i{n}", start, target, f"step {n}")
        except InvalidStateTransition:
            assert (start, target) not in ALLOWED
        else:
            accepted.append((start, target))
            assert (record.from_state, record.to_state, record.reason) == (
                start, target, f"step {n}")
    assert set(accepted) == ALLOWED
