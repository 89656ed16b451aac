"""Following an instance's events: the recorded history, then live ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from .._errors import WorkflowNotFound
from .._events import WorkflowEvent
from .._protocols import InstanceStore
from .._state import TERMINAL_STATES

__all__ = ["EventStream", "Waiter"]

#: For an instance running in this process, a function that returns at its next commit
#: (or at its end); ``None`` when it does not run here.
Waiter = Callable[[str], "Callable[[], Awaitable[None]] | None"]


class EventStream:
    """An instance's events, in seq order; see :meth:`Engine.stream_events`."""

    def __init__(self, store: InstanceStore, waiter: Waiter, instance_id: str, after: int,
                 follow: bool, poll_seconds: float) -> None:
        self._store = store
        self._waiter = waiter
        self._instance_id = instance_id
        self._seq = after
        self._follow = follow
        self._poll = poll_seconds
        self._buffer: list[WorkflowEvent] = []
        self._next = 0  # position in _buffer (popping from the front would be quadratic)
        self._checked = False
        self._done = False

    def __repr__(self) -> str:
        return f"<EventStream {self._instance_id} after={self._seq}>"

    def __aiter__(self) -> EventStream:
        return self

    async def _state_is_final(self) -> bool:
        instance = await self._store.load_workflow(self._instance_id)
        if instance is None:
            raise WorkflowNotFound(instance_id=self._instance_id)
        return instance.state in TERMINAL_STATES

    async def __anext__(self) -> WorkflowEvent:
        store, instance_id = self._store, self._instance_id
        if not self._checked:
            await self._state_is_final()  # WorkflowNotFound for an unknown id
            self._checked = True
        while self._next >= len(self._buffer):
            self._buffer, self._next = [], 0
            if self._done:
                raise StopAsyncIteration
            # the waiter is taken before reading, so a commit in between still wakes us
            waiter = self._waiter(instance_id)
            self._buffer = await store.load_events(instance_id, self._seq)
            if self._buffer:
                break
            if not self._follow:
                raise StopAsyncIteration
            if waiter is not None:
                await waiter()
                continue
            if await self._state_is_final() and self._waiter(instance_id) is None:
                self._buffer = await store.load_events(instance_id, self._seq)
                self._done = True
                continue
            await anyio.sleep(self._poll)
        event = self._buffer[self._next]
        self._next += 1
        self._seq = event.seq
        return event
