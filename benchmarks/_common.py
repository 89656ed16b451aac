"""What the benchmark scripts share: workflows from task lists, and their output.

Every script prints readable tables, one row as soon as it is measured; with ``--json``
it prints one JSON object per row instead (``bench``, ``section`` and the row's fields).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from typing import Any

import dagflow

Task = dict[str, Any]


def definition(tasks: Sequence[Task], workflow_id: str = "bench",
               config: dict[str, Any] | None = None) -> dagflow.WorkflowDefinition:
    """The task list as a workflow of Plugin tasks: ``noop`` ones, or ``sleep`` ones for
    tasks with ``sleep_ms``. ``config=None`` leaves the workflow config at its defaults."""
    doc: dict[str, Any] = {"id": workflow_id, "tasks": []}
    if config is not None:
        doc["config"] = config
    for task in tasks:
        kind: dict[str, Any] = {"type": "Plugin", "plugin_name": "noop"}
        if task.get("sleep_ms"):
            kind = {"type": "Plugin", "plugin_name": "sleep", "config": {"ms": task["sleep_ms"]}}
        entry: dict[str, Any] = {"id": task["id"], "type": kind}
        if task["deps"]:
            entry["depends_on"] = list(task["deps"])
        doc["tasks"].append(entry)
    limits = dagflow.ParseLimits(max_bytes=256 * 1024 * 1024, max_tasks=1_000_000)
    return dagflow.loads(json.dumps(doc), format="json", limits=limits)


def us_per_task(seconds: float, tasks: int) -> float:
    return seconds / tasks * 1e6


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


class Table:
    """Rows printed as they come: aligned text, or JSON lines with ``--json``.

    ``columns`` are ``(key, title, format)``; a format is a ``str.format`` spec such as
    ``"{:,.1f}"``. Missing values print as ``-``, booleans as yes/no. Every key of a row
    goes to JSON, shown or not. Columns are as wide as their title, the first row's cell
    or ``widths[key]``, whichever is widest.
    """

    def __init__(self, bench: str, section: str, title: str,
                 columns: Sequence[tuple[str, str, str]], *, as_json: bool,
                 common: dict[str, Any] | None = None,
                 widths: dict[str, int] | None = None) -> None:
        self.bench, self.section, self.title = bench, section, title
        self.columns = list(columns)
        self.as_json = as_json
        self.common = dict(common or {})
        self.widths = [max(len(title), 8, (widths or {}).get(key, 0))
                       for key, title, _ in self.columns]
        self._header_done = False

    def row(self, **values: Any) -> None:
        if self.as_json:
            record = {"bench": self.bench, "section": self.section, **self.common}
            record.update({k: _jsonable(v) for k, v in values.items()})
            print(json.dumps(record), flush=True)
            return
        cells = [_cell(values.get(key), fmt) for key, _, fmt in self.columns]
        if not self._header_done:
            self.widths = [max(w, len(c) + 1) for w, c in zip(self.widths, cells, strict=True)]
            context = "  ".join(f"{k}={v}" for k, v in self.common.items())
            print(f"\n## {self.title}" + (f"   ({context})" if context else ""))
            print("  ".join(_align(title, w, i) for i, ((_, title, _), w)
                            in enumerate(zip(self.columns, self.widths, strict=True))))
            print("  ".join(("-" * w) for w in self.widths))
            self._header_done = True
        print("  ".join(_align(c, w, i) for i, (c, w)
                        in enumerate(zip(cells, self.widths, strict=True))), flush=True)

    def note(self, text: str) -> None:
        """A line of explanation under the table (text mode only)."""
        if not self.as_json:
            print(f"   {text}", flush=True)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value)


def _align(text: str, width: int, column: int) -> str:
    return text.ljust(width) if column == 0 else text.rjust(width)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
