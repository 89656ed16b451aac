"""The workflow state machine: the allowed transitions as data, and the default referee.

The seed's diagram plus ``Running <-> Paused``, ``Running <-> WaitingApproval`` and the
edges that pausing, cancelling and retrying need. Anything else raises
:class:`~dagflow.InvalidStateTransition`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

import attrs

from ._errors import InvalidStateTransition
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
    """The default :class:`~dagflow.StateMachine`: the transition table above.

    The engine asks it about every change of an instance's state and records the
    :class:`~dagflow.StateTransition` it returns in the instance's ``state_history``.
    Subclass it to refuse more (or fewer) changes, or to be told of each one.

    Args:
        now: Where timestamps come from (the engine passes its clock's ``now``).
    """

    now: Callable[[], dt.datetime] = _utcnow

    def is_valid_transition(self, from_state: WorkflowState, to_state: WorkflowState) -> bool:
        """Whether the table allows ``from_state -> to_state``."""
        return to_state in TRANSITIONS.get(from_state, ())

    def transition(
        self,
        instance_id: str,
        from_state: WorkflowState,
        to_state: WorkflowState,
        reason: str | None = None,
    ) -> StateTransition:
        """The record of ``instance_id``'s move from ``from_state`` to ``to_state``.

        Raises:
            InvalidStateTransition: The table does not allow the change.
        """
        if not self.is_valid_transition(from_state, to_state):
            raise InvalidStateTransition(
                from_state=str(from_state), to_state=str(to_state), instance_id=instance_id
            )
        return StateTransition(from_state, to_state, self.now(), reason)
