"""Following an instance's events: the recorded history, then live ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ._events import WorkflowEvent
from ._state import TERMINAL_STATES

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["EventStream"]


class EventStream:
    """An instance's events, in seq order; see :meth:`Engine.stream_events`."""

    def __init__(self, engine: Engine, instance_id: str, after: int, follow: bool,
                 poll_seconds: float) -> None:
        self._engine = engine
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

    async def __anext__(self) -> WorkflowEvent:
        engine, instance_id = self._engine, self._instance_id
        if not self._checked:
            await engine._load(instance_id)
            self._checked = True
        while self._next >= len(self._buffer):
            self._buffer, self._next = [], 0
            if self._done:
                raise StopAsyncIteration
            run = engine._runs.get(instance_id)
            # the waiter is taken before reading, so a commit in between still wakes us
            waiter = run.wait_changed if run is not None else None
            self._buffer = await engine.store.load_events(instance_id, self._seq)
            if self._buffer:
                break
            if not self._follow:
                raise StopAsyncIteration
            if waiter is not None:
                await waiter()
                continue
            instance = await engine._load(instance_id)
            if instance.state in TERMINAL_STATES and instance_id not in engine._runs:
                self._buffer = await engine.store.load_events(instance_id, self._seq)
                self._done = True
                continue
            await anyio.sleep(self._poll)
        event = self._buffer[self._next]
        self._next += 1
        self._seq = event.seq
        return event
