"""How the instance commands write times, durations, tables and JSON lists."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["duration", "elapsed", "json_list", "short_line", "table", "when"]


def duration(value: float) -> str:
    """``4.2s``, ``3m05s``, ``2h10m``."""
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def when(value: dt.datetime | None) -> str:
    """``2024-05-01 12:00:00 UTC``, or ``-`` when it has not happened."""
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else "-"


def elapsed(start: dt.datetime | None, end: dt.datetime | None) -> str:
    """From ``start`` to ``end``; to now with a ``+`` while it goes on; blank unstarted."""
    if start is None:
        return ""
    if end is None:
        return duration((dt.datetime.now(dt.UTC) - start).total_seconds()) + "+"
    return duration((end - start).total_seconds())


def short_line(text: str | None, width: int = 60) -> str:
    """The first line of ``text``, cut to ``width`` characters with ``...``."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[:width - 3] + "..."


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` (the first is the header) as lines of left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def json_list(values: Sequence[Any]) -> str:
    """``values`` as an indented JSON list."""
    return json.dumps(list(values), indent=2, default=str)
