"""The workflow state machine: one transition table, and a history of every change."""

from __future__ import annotations

import datetime as dt
import itertools

import anyio
import pytest

from dagflow import (
    DefaultStateMachine,
    InvalidStateTransition,
    StateTransition,
    WorkflowError,
    WorkflowNotFound,
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


@pytest.mark.anyio
async def test_history_records_each_transition_with_time_and_reason() -> None:
    """Every accepted change is recorded, oldest first, with its timestamp and reason."""
    machine = DefaultStateMachine(now=Ticking())
    machine.register("i1")
    assert await machine.get_state("i1") == S.PENDING
    assert await machine.get_state_history("i1") == []

    first = await machine.transition("i1", S.PENDING, S.RUNNING, "started by ci")
    await machine.transition("i1", S.RUNNING, S.WAITING_APPROVAL, "gate request-approval")
    await machine.transition("i1", S.WAITING_APPROVAL, S.RUNNING)
    await machine.transition("i1", S.RUNNING, S.COMPLETED, "all tasks done")

    assert first == StateTransition(S.PENDING, S.RUNNING, at(1), "started by ci")
    assert await machine.get_state("i1") == S.COMPLETED
    assert await machine.get_state_history("i1") == [
        StateTransition(S.PENDING, S.RUNNING, at(1), "started by ci"),
        StateTransition(S.RUNNING, S.WAITING_APPROVAL, at(2), "gate request-approval"),
        StateTransition(S.WAITING_APPROVAL, S.RUNNING, at(3), None),
        StateTransition(S.RUNNING, S.COMPLETED, at(4), "all tasks done"),
    ]


@pytest.mark.anyio
async def test_default_timestamps_are_utc_now() -> None:
    """Without an injected clock the timestamp is the current time, timezone-aware UTC."""
    machine = DefaultStateMachine()
    machine.register("i1")
    before = dt.datetime.now(dt.UTC)
    record = await machine.transition("i1", S.PENDING, S.RUNNING)
    after = dt.datetime.now(dt.UTC)
    assert record.timestamp.utcoffset() == dt.timedelta(0)
    assert before <= record.timestamp <= after


@pytest.mark.anyio
async def test_register_in_a_given_state() -> None:
    """An instance can start in any state, e.g. Draft, and follows the table from there."""
    machine = DefaultStateMachine(now=Ticking())
    machine.register("d", S.DRAFT)
    await machine.transition("d", S.DRAFT, S.VALIDATED)
    await machine.transition("d", S.VALIDATED, S.PENDING)
    assert await machine.get_state("d") == S.PENDING
    assert [t.to_state for t in await machine.get_state_history("d")] == [
        S.VALIDATED, S.PENDING,
    ]


@pytest.mark.anyio
async def test_transition_from_a_state_that_is_not_current_is_rejected() -> None:
    """Claiming the wrong from_state raises and changes nothing, even if the edge is allowed."""
    machine = DefaultStateMachine(now=Ticking())
    machine.register("i1")
    with pytest.raises(InvalidStateTransition) as info:
        await machine.transition("i1", S.RUNNING, S.PAUSED)  # allowed edge, wrong start
    assert info.value.from_state == "Pending"
    assert info.value.to_state == "Paused"
    assert info.value.instance_id == "i1"
    assert await machine.get_state("i1") == S.PENDING
    assert await machine.get_state_history("i1") == []


@pytest.mark.anyio
async def test_transition_outside_the_table_is_rejected() -> None:
    """A transition the table does not allow raises and leaves state and history alone."""
    machine = DefaultStateMachine(now=Ticking())
    machine.register("i1")
    await machine.transition("i1", S.PENDING, S.RUNNING)
    await machine.transition("i1", S.RUNNING, S.COMPLETED)
    with pytest.raises(InvalidStateTransition) as info:
        await machine.transition("i1", S.COMPLETED, S.RUNNING, "try again")
    assert (info.value.from_state, info.value.to_state) == ("Completed", "Running")
    assert await machine.get_state("i1") == S.COMPLETED
    assert len(await machine.get_state_history("i1")) == 2


@pytest.mark.anyio
async def test_unknown_instance_is_workflow_not_found() -> None:
    """Every method raises WorkflowNotFound, naming the id, for an unregistered instance."""
    machine = DefaultStateMachine()
    machine.register("known")
    with pytest.raises(WorkflowNotFound) as info:
        await machine.transition("ghost", S.PENDING, S.RUNNING)
    assert info.value.instance_id == "ghost"
    assert isinstance(info.value, WorkflowError)
    with pytest.raises(WorkflowNotFound, match="ghost"):
        await machine.get_state("ghost")
    with pytest.raises(WorkflowNotFound, match="ghost"):
        await machine.get_state_history("ghost")


@pytest.mark.anyio
async def test_history_returned_is_a_copy() -> None:
    """Changing the returned history list does not change the recorded one."""
    machine = DefaultStateMachine(now=Ticking())
    machine.register("i1")
    await machine.transition("i1", S.PENDING, S.RUNNING)
    history = await machine.get_state_history("i1")
    history.clear()
    assert len(await machine.get_state_history("i1")) == 1


@pytest.mark.anyio
async def test_instances_are_independent() -> None:
    """Two instances keep separate states and histories."""
    machine = DefaultStateMachine(now=Ticking())
    machine.register("a")
    machine.register("b")
    await machine.transition("a", S.PENDING, S.RUNNING)
    await machine.transition("b", S.PENDING, S.CANCELLED, "user cancelled")
    assert await machine.get_state("a") == S.RUNNING
    assert await machine.get_state("b") == S.CANCELLED
    assert [t.reason for t in await machine.get_state_history("b")] == ["user cancelled"]
    assert len(await machine.get_state_history("a")) == 1


@pytest.mark.anyio
async def test_concurrent_transitions_from_one_state_let_only_one_win() -> None:
    """Two tasks racing to leave Running: exactly one succeeds, the other is rejected."""
    machine = DefaultStateMachine(now=Ticking())
    machine.register("i1", S.RUNNING)
    outcomes: list[str] = []

    async def move(to: WorkflowState) -> None:
        try:
            await machine.transition("i1", S.RUNNING, to)
        except InvalidStateTransition:
            outcomes.append("rejected")
        else:
            outcomes.append(str(to))

    async with anyio.create_task_group() as tg:
        tg.start_soon(move, S.PAUSED)
        tg.start_soon(move, S.CANCELLED)
    assert outcomes.count("rejected") == 1
    history = await machine.get_state_history("i1")
    assert len(history) == 1
    assert await machine.get_state("i1") == history[0].to_state


@pytest.mark.anyio
async def test_machine_accepts_exactly_the_table() -> None:
    """Trying every (from, to) pair on the machine accepts exactly the allowed ones."""
    machine = DefaultStateMachine(now=Ticking())
    accepted: list[tuple[WorkflowState, WorkflowState]] = []
    for n, (start, target) in enumerate(ALL_PAIRS):
        instance = f"i{n}"
        machine.register(instance, start)
        try:
            await machine.transition(instance, start, target, f"step {n}")
        except InvalidStateTransition:
            assert (start, target) not in ALLOWED
            assert await machine.get_state(instance) == start
        else:
            accepted.append((start, target))
            assert await machine.get_state(instance) == target
            [record] = await machine.get_state_history(instance)
            assert (record.from_state, record.to_state, record.reason) == (
                start, target, f"step {n}",
            )
    assert set(accepted) == ALLOWED
