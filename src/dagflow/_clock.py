"""The clock seam and the real clock: wall time in UTC and anyio's sleep."""

from __future__ import annotations

import contextlib
import datetime as dt
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Every wait goes through the engine's clock, so tests can skip time."""

    def now(self) -> dt.datetime:
        """The current time (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...

    def busy(self) -> AbstractContextManager[None]:
        """Mark real work (a subprocess, a request, a store write) in progress.

        A fake clock does not jump ahead while any work is busy, except work that is
        itself sleeping on the clock. The system clock ignores it.
        """
        ...

_NOT_BUSY = contextlib.nullcontext()


class SystemClock:
    """The default :class:`~dagflow.Clock`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SystemClock()"

    def now(self) -> dt.datetime:
        """The current time, UTC."""
        return dt.datetime.now(dt.UTC)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time."""
        await anyio.sleep(max(0.0, seconds))

    def busy(self) -> AbstractContextManager[None]:
        """Nothing to track on the real clock."""
        return _NOT_BUSY
