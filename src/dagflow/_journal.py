"""The journal of a run: changes queue up and are committed to the store in order, as few
transactions as possible (group commit), each shielded from cancellation."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import attrs

from ._errors import (
    StorageError,
    WorkflowError,
)
from ._models import (
    InstanceChanges,
    StateTransition,
    TaskState,
)

__all__ = ["Journal"]

logger = logging.getLogger("dagflow")

#: most changes in one transaction: a burst (5,000 tasks starting after a recovery) is
#: committed in pieces, and the first tasks go on while later pieces are written
MAX_BATCH = 500


@attrs.define(eq=False, repr=False)
class Journal:
    """Group commit: changes queue up and are committed in order, up to MAX_BATCH per
    transaction. Each piece has its own event, set only once that piece is durable."""

    run: Any  # the Run it belongs to
    full: list[tuple[list[InstanceChanges], anyio.Event]] = attrs.Factory(list)
    pending: list[InstanceChanges] = attrs.Factory(list)
    batch_done: anyio.Event = attrs.Factory(anyio.Event)
    wake: anyio.Event = attrs.Factory(anyio.Event)
    error: BaseException | None = None

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

    async def flusher(self) -> None:
        """Commit whatever is queued, piece after piece, until cancelled."""
        store, run = self.run.engine.store, self.run
        while True:
            await self.wake.wait()
            self.wake = anyio.Event()
            while (piece := self._take()) is not None:
                batch, done = piece
                merged = _merge(batch)
                try:
                    # shielded: a batch is either committed and acknowledged, or failed
                    with anyio.CancelScope(shield=True), run.engine.clock.busy():
                        run.engine._crash_point("before-commit")
                        await _commit_with_retries(store, run.instance_id, merged)
                        run.engine._crash_point("after-commit")
                except Exception as exc:
                    self.error = exc
                    logger.error("instance %s: store commit failed: %s", run.instance_id, exc)
                    done.set()
                    for _, later in self.full:  # nothing after a failed write is written
                        later.set()
                    self.batch_done.set()
                    run.storage_failed(exc)
                    return
                done.set()
                run.changed()

    async def drain(self) -> None:
        """Commit everything queued so far (the flusher may be gone)."""
        while self.error is None and (piece := self._take()) is not None:
            batch, done = piece
            with self.run.engine.clock.busy():
                await _commit_with_retries(self.run.engine.store, self.run.instance_id,
                                           _merge(batch))
            done.set()
            self.run.changed()


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


async def _commit_with_retries(store: Any, instance_id: str, changes: InstanceChanges) -> None:
    delay = 0.05
    for attempt in range(4):
        try:
            await store.commit(instance_id, changes)
            return
        except WorkflowError:
            raise
        except Exception as exc:  # a driver error: transient until proven otherwise
            if attempt == 3:
                raise StorageError(str(exc)) from exc
            logger.warning("store commit failed (%s); retrying in %.2fs", exc, delay)
            await anyio.sleep(delay)
            delay *= 4
