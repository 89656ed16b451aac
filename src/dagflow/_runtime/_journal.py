"""The journal of a run: changes queue up and are committed to the store in order, as few
transactions as possible (group commit), each shielded from cancellation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .._clock import Clock
from .._errors import StorageError
from .._events import WorkflowEvent
from .._execute._retry import commit_with_retries
from .._models import InstanceChanges, StateTransition, TaskState
from .._protocols import InstanceStore

if TYPE_CHECKING:
    from ._committer import Committer
    from ._committer import Piece as AnyPiece

__all__ = ["MAX_BATCH", "Journal", "Piece"]

logger = logging.getLogger("dagflow")

#: most changes in one transaction: a burst (5,000 tasks starting after a recovery) is
#: committed in pieces, and the first tasks go on while later pieces are written
MAX_BATCH = 500


@attrs.define(eq=False, repr=False)
class Piece:
    """What one transaction will write, gathered change by change (a task state replaces
    the same task's earlier one), and the event set once it is durable."""

    fields: dict[str, Any] = attrs.Factory(dict)
    states: dict[str, TaskState] = attrs.Factory(dict)
    events: list[WorkflowEvent] = attrs.Factory(list)
    transitions: list[StateTransition] = attrs.Factory(list)
    size: int = 0
    done: anyio.Event = attrs.Factory(anyio.Event)

    def changes(self) -> InstanceChanges:
        return InstanceChanges(self.fields, tuple(self.states.values()), tuple(self.events),
                               tuple(self.transitions))


@attrs.define(eq=False, repr=False)
class Journal:
    """Group commit: changes queue up and are committed in order, up to MAX_BATCH per
    transaction. Each piece has its own event, set only once that piece is durable.

    Pieces are committed by the engine's :class:`Committer` together with other runs'
    while the engine is entered, else by the run's own :meth:`flusher`.

    Args:
        store: Where the changes go.
        instance_id: Whose changes they are.
        clock: Marked busy while a commit is in flight (a fake clock must not jump).
        on_commit: Called after each durable piece (wakes event followers).
        on_error: Called once when the store refuses a piece; nothing after it is written.
        committer: The engine's group commit, if any.
    """

    store: InstanceStore
    instance_id: str
    clock: Clock
    on_commit: Callable[[], None]
    on_error: Callable[[BaseException], None]
    committer: Committer | None = None
    full: list[Piece] = attrs.Factory(list)
    pending: Piece = attrs.Factory(Piece)
    wake: anyio.Event = attrs.Factory(anyio.Event)
    error: BaseException | None = None
    flushing: bool = False  # the flusher task runs (else drain() commits inline)
    inflight: anyio.Event | None = None  # the piece the flusher is committing
    _poked: bool = False  # wake is set and the flusher has not taken it yet

    def __repr__(self) -> str:
        return f"<Journal {self.instance_id} queued={self.pending.size}>"

    def add(self, state: TaskState | None = None, events: tuple[WorkflowEvent, ...] = (),
            fields: Mapping[str, Any] | None = None,
            transitions: tuple[StateTransition, ...] = ()) -> anyio.Event:
        """Queue a change; the returned event is set once it is durable."""
        piece = self.pending
        if state is not None:
            piece.states[state.task_id] = state
        if events:
            piece.events.extend(events)
        if fields:
            piece.fields.update(fields)
        if transitions:
            piece.transitions.extend(transitions)
        piece.size += 1
        if piece.size >= MAX_BATCH:
            self.full.append(piece)
            self.pending = Piece()
        if not self._poked:
            self._poked = True
            committer = self.committer
            if committer is not None and committer.running:
                committer.mark(self)
            else:
                self.wake.set()
        return piece.done

    @property
    def shared(self) -> bool:
        """Whether the engine's committer commits this journal's pieces now."""
        return self.committer is not None and self.committer.running

    def take(self) -> Piece | None:
        """The oldest piece to commit (the committer's side); none once a piece failed."""
        self._poked = False
        return self._take() if self.error is None else None

    def has_more(self) -> bool:
        """Whether pieces are still queued (and the committer should come back)."""
        more = bool(self.full or self.pending.size)
        if more:
            self._poked = True
        return more

    def committed(self, piece: AnyPiece) -> None:
        """``piece`` is durable."""
        piece.done.set()
        self.on_commit()

    def _take(self) -> Piece | None:
        """The oldest piece to commit, or None when nothing is queued."""
        if self.full:
            return self.full.pop(0)
        if self.pending.size:
            piece, self.pending = self.pending, Piece()
            return piece
        return None

    async def durable(self, done: anyio.Event) -> None:
        """Wait for a batch; raise if the store could not take it."""
        await done.wait()
        if self.error is not None:
            raise StorageError(f"could not save the workflow's state: {self.error}")

    async def flushed(self) -> None:
        """Until everything queued so far is durable (committing it here if neither the
        engine's committer nor the run's flusher is running)."""
        if not (self.flushing or self.shared):
            await self.drain()
        elif self.pending.size:
            await self.durable(self.pending.done)
        elif self.full:
            await self.durable(self.full[-1].done)
        elif self.inflight is not None:
            await self.durable(self.inflight)
        elif self.error is not None:
            await self.durable(self.pending.done)  # raises

    async def flusher(self) -> None:
        """Commit whatever is queued, piece after piece, until cancelled."""
        self.flushing = True
        try:
            while True:
                await self.wake.wait()
                self.wake = anyio.Event()
                self._poked = False
                while (piece := self._take()) is not None:
                    self.inflight = piece.done
                    try:
                        # shielded: a piece is either committed and acknowledged, or failed
                        with anyio.CancelScope(shield=True), self.clock.busy():
                            await _commit(self.store, self.instance_id, piece.changes())
                    except Exception as exc:
                        self.failed(exc, piece)
                        return
                    self.inflight = None
                    piece.done.set()
                    self.on_commit()
        finally:
            self.flushing = False
            self.inflight = None

    def failed(self, exc: BaseException, piece: AnyPiece) -> None:
        """The store refused ``piece``: nothing after it is written."""
        self.error = exc
        logger.error("instance %s: store commit failed: %s", self.instance_id, exc)
        piece.done.set()
        for later in self.full:  # nothing after a failed write is written
            later.done.set()
        self.pending.done.set()
        self.on_error(exc)

    async def drain(self) -> None:
        """Commit everything queued so far (the flusher may be gone)."""
        if self.shared:  # the engine's committer does it, in order
            await self.flushed()
            return
        if self.inflight is not None:  # the committer's last piece lands first
            await self.inflight.wait()
        while self.error is None and (piece := self._take()) is not None:
            with self.clock.busy():
                await _commit(self.store, self.instance_id, piece.changes())
            piece.done.set()
            self.on_commit()


async def _commit(store: InstanceStore, instance_id: str, changes: InstanceChanges) -> None:
    """Commit, retrying a driver's transient error (tenacity, real time: a store is not
    a task that a test's clock should skip)."""
    await commit_with_retries(lambda: store.commit(instance_id, changes))
