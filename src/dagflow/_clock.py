"""The real clock: wall time in UTC and anyio's sleep."""

from __future__ import annotations

import contextlib
import datetime as dt
from contextlib import AbstractContextManager

import anyio

__all__ = ["SystemClock"]

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
