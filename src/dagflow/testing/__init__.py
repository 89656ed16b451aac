"""Helpers for testing code that uses dagflow (and dagflow itself).

``import dagflow`` does not load this package; import it from your tests::

    from dagflow.testing import FakeClock

Besides the fakes, it has a conformance kit per seam (``check_storage`` and one per
storage part, ``check_executor``, ``check_dag_builder``, ``check_state_machine``,
``check_approval_system``, ``check_checkpoint_manager``): dagflow's defaults pass them,
and a host application runs them against its own implementations.
"""

from ._approval_system import check_approval_system as check_approval_system
from ._checkpoint_manager import check_checkpoint_manager as check_checkpoint_manager
from ._clock import FakeClock as FakeClock
from ._dag_builder import check_dag_builder as check_dag_builder
from ._executor import check_executor as check_executor
from ._handlers import Call as Call
from ._handlers import RecordingHandler as RecordingHandler
from ._handlers import approve_when_pending as approve_when_pending
from ._handlers import fail as fail
from ._instances import check_instance_store as check_instance_store
from ._parts import check_approval_store as check_approval_store
from ._parts import check_checkpoint_store as check_checkpoint_store
from ._parts import check_control_store as check_control_store
from ._parts import check_lease_store as check_lease_store
from ._state_machine import check_state_machine as check_state_machine
from ._storage import check_storage as check_storage

__all__ = [
    "Call",
    "FakeClock",
    "RecordingHandler",
    "approve_when_pending",
    "check_approval_store",
    "check_approval_system",
    "check_checkpoint_manager",
    "check_checkpoint_store",
    "check_control_store",
    "check_dag_builder",
    "check_executor",
    "check_instance_store",
    "check_lease_store",
    "check_state_machine",
    "check_storage",
    "fail",
]
