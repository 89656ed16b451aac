"""The workflow state machine: the allowed transitions as data, and their history.

The seed's diagram plus ``Running <-> Paused``, ``Running <-> WaitingApproval`` and the
edges that pausing, cancelling and retrying need. Anything else raises
:class:`~dagflow.InvalidStateTransition`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

import anyio
import attrs

from ._errors import InvalidStateTransition, WorkflowNotFound
from ._models import StateTransition, WorkflowState

__all__ = ["TERMINAL_STATES", "TRANSITIONS", "DefaultStateMachine", "check_transition"]

S = WorkflowState

#: Every allowed ``from -> {to}``; the one source of truth for workflow state changes.
TRANSITIONS: Mapping[WorkflowState, frozenset[WorkflowState]] = {
    S.DRAFT: frozenset({S.VALIDATED}),
    S.VALIDATED: frozenset({S.PENDING}),
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.PAUSED, S.WAITING_APPROVAL}),
    S.WAITING_APPROVAL: frozenset({S.RUNNING, S.FAILED, S.CANCELLED, S.PAUSED}),
    S.PAUSED: frozenset({S.RUNNING, S.CANCELLED}),
    S.FAILED: frozenset({S.ROLLED_BACK, S.RUNNING}),  # RUNNING: retry under the same id
    S.CANCELLED: frozenset({S.RUNNING, S.ROLLED_BACK}),  # RUNNING: retry; rollback on demand
    S.COMPLETED: frozenset({S.ARCHIVED}),
    S.ROLLED_BACK: frozenset(),
    S.ARCHIVED: frozenset(),
}

#: States in which nothing runs and nothing will without a user's action.
TERMINAL_STATES = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.ROLLED_BACK, S.ARCHIVED})


def check_transition(
    from_state: WorkflowState, to_state: WorkflowState, instance_id: str | None = None
) -> None:
    """Raise :class:`InvalidStateTransition` unless ``from_state -> to_state`` is allowed."""
    if to_state not in TRANSITIONS.get(from_state, ()):
        raise InvalidStateTransition(
            from_state=str(from_state), to_state=str(to_state), instance_id=instance_id
        )


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.define
class DefaultStateMachine:
    """The default :class:`~dagflow.StateMachine`: current states and histories in memory.

    The engine keeps the durable copy of each history in the store; this object is the
    referee that says whether a change is allowed and records it.

    Args:
        now: Where timestamps come from (the engine passes its clock).
    """

    now: Callable[[], dt.datetime] = _utcnow
    _states: dict[str, WorkflowState] = attrs.Factory(dict)
    _history: dict[str, list[StateTransition]] = attrs.Factory(dict)
    _lock: anyio.Lock = attrs.Factory(anyio.Lock)

    def __repr__(self) -> str:
        return f"<DefaultStateMachine instances={len(self._states)}>"

    def is_valid_transition(self, from_state: WorkflowState, to_state: WorkflowState) -> bool:
        """Whether the table allows ``from_state -> to_state``."""
        return to_state in TRANSITIONS.get(from_state, ())

    def register(self, instance_id: str, state: WorkflowState = S.PENDING) -> None:
        """Start tracking an instance in ``state`` (no transition is recorded)."""
        self._states.setdefault(instance_id, state)
        self._history.setdefault(instance_id, [])

    async def transition(
        self,
        instance_id: str,
        from_state: WorkflowState,
        to_state: WorkflowState,
        reason: str | None = None,
    ) -> StateTransition:
        """Move ``instance_id`` from ``from_state`` to ``to_state`` and record it.

        Raises:
            WorkflowNotFound: The instance is not registered.
            InvalidStateTransition: The instance is not in ``from_state``, or the table
                does not allow the change.
        """
        async with self._lock:
            current = self._states.get(instance_id)
            if current is None:
                raise WorkflowNotFound(instance_id=instance_id)
            if current != from_state:
                raise InvalidStateTransition(
                    from_state=str(current), to_state=str(to_state), instance_id=instance_id
                )
            check_transition(from_state, to_state, instance_id)
            record = StateTransition(from_state, to_state, self.now(), reason)
            self._states[instance_id] = to_state
            self._history[instance_id].append(record)
            return record

    async def get_state(self, instance_id: str) -> WorkflowState:
        """The instance's current state.

        Raises:
            WorkflowNotFound: The instance is not registered.
        """
        try:
            return self._states[instance_id]
        except KeyError:
            raise WorkflowNotFound(instance_id=instance_id) from None

    async def get_state_history(self, instance_id: str) -> list[StateTransition]:
        """Every recorded transition of the instance, oldest first.

        Raises:
            WorkflowNotFound: The instance is not registered.
        """
        try:
            return list(self._history[instance_id])
        except KeyError:
            raise WorkflowNotFound(instance_id=instance_id) from None
