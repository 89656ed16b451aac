"""The journal of a run: changes queue up and are committed to the store in order, as few
transactions as possible (group commit), each shielded from cancellation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import attrs

from .._clock import Clock
from .._errors import StorageError
from .._execute._retry import commit_with_retries
from .._models import InstanceChanges, StateTransition, TaskState
from .._protocols import InstanceStore

__all__ = ["MAX_BATCH", "Journal"]

logger = logging.getLogger("dagflow")

#: most changes in one transaction: a burst (5,000 tasks starting after a recovery) is
#: committed in pieces, and the first tasks go on while later pieces are written
MAX_BATCH = 500


@attrs.define(eq=False, repr=False)
class Journal:
    """Group commit: changes queue up and are committed in order, up to MAX_BATCH per
    transaction. Each piece has its own event, set only once that piece is durable.

    Args:
        store: Where the changes go.
        instance_id: Whose changes they are.
        clock: Marked busy while a commit is in flight (a fake clock must not jump).
        on_commit: Called after each durable piece (wakes event followers).
        on_error: Called once when the store refuses a piece; nothing after it is written.
    """

    store: InstanceStore
    instance_id: str
    clock: Clock
    on_commit: Callable[[], None]
    on_error: Callable[[BaseException], None]
    full: list[tuple[list[InstanceChanges], anyio.Event]] = attrs.Factory(list)
    pending: list[InstanceChanges] = attrs.Factory(list)
    batch_done: anyio.Event = attrs.Factory(anyio.Event)
    wake: anyio.Event = attrs.Factory(anyio.Event)
    error: BaseException | None = None
    flushing: bool = False  # the flusher task runs (else drain() commits inline)
    inflight: anyio.Event | None = None  # the piece the flusher is committing

    def __repr__(self) -> str:
        return f"<Journal {self.instance_id} queued={len(self.pending)}>"

    def add(self, changes: InstanceChanges) -> anyio.Event:
        """Queue ``changes``; the returned event is set once they are durable."""
        done = self.batch_done
        self.pending.append(changes)
        if len(self.pending) >= MAX_BATCH:
            self.full.append((self.pending, done))
            self.pending, self.batch_done = [], anyio.Event()
        self.wake.set()
        return done

    def _take(self) -> tuple[list[InstanceChanges], anyio.Event] | None:
        """The oldest piece to commit, or None when nothing is queued."""
        if self.full:
            return self.full.pop(0)
        if self.pending:
            piece = (self.pending, self.batch_done)
            self.pending, self.batch_done = [], anyio.Event()
            return piece
        return None

    async def durable(self, done: anyio.Event) -> None:
        """Wait for a batch; raise if the store could not take it."""
        await done.wait()
        if self.error is not None:
            raise StorageError(f"could not save the workflow's state: {self.error}")

    async def flushed(self) -> None:
        """Until everything queued so far is durable (committing it here if the flusher
        is not running)."""
        if not self.flushing:
            await self.drain()
        elif self.pending:
            await self.durable(self.batch_done)
        elif self.full:
            await self.durable(self.full[-1][1])
        elif self.inflight is not None:
            await self.durable(self.inflight)
        elif self.error is not None:
            await self.durable(self.batch_done)  # raises

    async def flusher(self) -> None:
        """Commit whatever is queued, piece after piece, until cancelled."""
        self.flushing = True
        try:
            while True:
                await self.wake.wait()
                self.wake = anyio.Event()
                while (piece := self._take()) is not None:
                    batch, done = piece
                    self.inflight = done
                    try:
                        # shielded: a batch is either committed and acknowledged, or failed
                        with anyio.CancelScope(shield=True), self.clock.busy():
                            await _commit_with_retries(self.store, self.instance_id,
                                                       _merge(batch))
                    except Exception as exc:
                        self._failed(exc, done)
                        return
                    self.inflight = None
                    done.set()
                    self.on_commit()
        finally:
            self.flushing = False
            self.inflight = None

    def _failed(self, exc: BaseException, done: anyio.Event) -> None:
        self.error = exc
        logger.error("instance %s: store commit failed: %s", self.instance_id, exc)
        done.set()
        for _, later in self.full:  # nothing after a failed write is written
            later.set()
        self.batch_done.set()
        self.on_error(exc)

    async def drain(self) -> None:
        """Commit everything queued so far (the flusher may be gone)."""
        while self.error is None and (piece := self._take()) is not None:
            batch, done = piece
            with self.clock.busy():
                await _commit_with_retries(self.store, self.instance_id, _merge(batch))
            done.set()
            self.on_commit()


def _merge(batch: list[InstanceChanges]) -> InstanceChanges:
    if len(batch) == 1:
        return batch[0]
    fields: dict[str, Any] = {}
    states: dict[str, TaskState] = {}
    events: list[Any] = []
    transitions: list[StateTransition] = []
    for changes in batch:
        fields.update(changes.fields)
        for state in changes.task_states:
            states[state.task_id] = state
        events.extend(changes.events)
        transitions.extend(changes.transitions)
    return InstanceChanges(fields, tuple(states.values()), tuple(events), tuple(transitions))


async def _commit_with_retries(store: InstanceStore, instance_id: str,
                               changes: InstanceChanges) -> None:
    """Commit, retrying a driver's transient error (tenacity, real time: a store is not
    a task that a test's clock should skip)."""
    await commit_with_retries(lambda: store.commit(instance_id, changes))
