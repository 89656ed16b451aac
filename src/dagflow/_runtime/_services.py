"""The services a run depends on: the engine's seams and settings, bundled, and nothing
of the engine itself (a run never calls back into ``Engine``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from .._clock import Clock
from .._context import Resources
from .._protocols import (
    ApprovalSystem,
    CheckpointManager,
    ControlStore,
    DagBuilder,
    InstanceStore,
    LeaseStore,
    SecretProvider,
    StateMachine,
    TaskExecutor,
)
from .._settings import EngineSettings

if TYPE_CHECKING:
    from .._approval.notify import Notifier, SmtpSettings

__all__ = ["Services"]


@attrs.frozen(eq=False, repr=False)
class Services:
    """Everything a run uses, chosen once by the engine.

    Attributes:
        instances: Where instances, task states and events are committed.
        leases: Who drives which instance.
        controls: Cancel/pause/resume requests from other processes.
        checkpoints: Recovery points.
        approvals: Approval gates.
        executor: Runs leaf task attempts.
        state_machine: Referee of every workflow state change.
        dag_builder: Builds the graph each run is scheduled by.
        clock: Every wait and timestamp.
        secrets: ``${secrets.NAME}``.
        settings: Engine-wide knobs.
        environ: What ``${env.X}`` reads and subprocesses start from.
        resources: What task handlers share (HTTP client, connections, cluster).
        notifiers: Where notifications go.
        smtp: The mail server, if any (for the "no SMTP server" notice).
        owner: This engine's name in leases (host, process, a random part).
        durable: Whether commits are worth waiting for: False for the plain memory
            store (a crash loses everything anyway, so a task need not wait for its
            Running record before it starts); a subclass of it may fail like a real
            store, so it counts as durable.
    """

    instances: InstanceStore
    leases: LeaseStore
    controls: ControlStore
    checkpoints: CheckpointManager
    approvals: ApprovalSystem
    executor: TaskExecutor
    state_machine: StateMachine
    dag_builder: DagBuilder
    clock: Clock
    secrets: SecretProvider
    settings: EngineSettings
    environ: Mapping[str, str]
    resources: Resources
    notifiers: Sequence[Notifier]
    smtp: SmtpSettings | None
    owner: str
    durable: bool = True

    def __repr__(self) -> str:
        return f"<Services store={type(self.instances).__name__} owner={self.owner}>"
