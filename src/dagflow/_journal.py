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

@attrs.define(eq=False, repr=False)
class Journal:
    """Group commit: changes queue up and one store commit takes them all, in order."""

    run: Any  # the Run it belongs to
    pending: list[InstanceChanges] = attrs.Factory(list)
    batch_done: anyio.Event = attrs.Factory(anyio.Event)
    wake: anyio.Event = attrs.Factory(anyio.Event)
    error: BaseException | None = None

    def add(self, changes: InstanceChanges) -> anyio.Event:
        """Queue ``changes``; the returned event is set once they are durable."""
        self.pending.append(changes)
        self.wake.set()
        return self.batch_done

    async def durable(self, done: anyio.Event) -> None:
        """Wait for a batch; raise if the store could not take it."""
        await done.wait()
        if self.error is not None:
            raise StorageError(f"could not save the workflow's state: {self.error}")

    async def flusher(self) -> None:
        """Commit whatever is queued, batch after batch, until cancelled."""
        store, run = self.run.engine.store, self.run
        while True:
            await self.wake.wait()
            self.wake = anyio.Event()
            while self.pending:
                batch, self.pending = self.pending, []
                done, self.batch_done = self.batch_done, anyio.Event()
                merged = _merge(batch)
                try:
                    # shielded: a batch is either committed and acknowledged, or failed
                    with anyio.CancelScope(shield=True), run.engine.clock.busy():
                        run.engine.crash_point("before-commit")
                        await _commit_with_retries(store, run.instance_id, merged)
                        run.engine.crash_point("after-commit")
                except Exception as exc:
                    self.error = exc
                    logger.error("instance %s: store commit failed: %s", run.instance_id, exc)
                    done.set()
                    run.storage_failed(exc)
                    return
                done.set()
                run.changed()

    async def drain(self) -> None:
        """Commit everything queued so far (the flusher may be gone)."""
        while self.pending and self.error is None:
            batch, self.pending = self.pending, []
            done, self.batch_done = self.batch_done, anyio.Event()
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
