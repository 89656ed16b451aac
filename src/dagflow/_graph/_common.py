"""What the pictures share: edges, state colours, durations and task summaries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import attrs

from .._dag import WorkflowDag
from .._models import (
    Approval,
    Conditional,
    Loop,
    Subworkflow,
    TaskDefinition,
    TaskState,
    TaskStatus,
    WorkflowInstance,
)

__all__ = [
    "ARROW",
    "CRITICAL",
    "DASHED",
    "DOT_SEP",
    "STATE_COLOURS",
    "GraphEdge",
    "T",
    "graph_edges",
    "type_name",
]

T = TaskStatus

#: task state -> (fill, stroke): light fills for graph nodes, the strokes for timeline bars
STATE_COLOURS: Mapping[str, tuple[str, str]] = {
    T.COMPLETED: ("#d3f9d8", "#2b8a3e"),
    T.FAILED: ("#ffe3e3", "#c92a2a"),
    T.RUNNING: ("#d0ebff", "#1971c2"),
    T.SKIPPED: ("#e9ecef", "#868e96"),
    T.CANCELLED: ("#fff3bf", "#e67700"),
    T.PENDING: ("#ffffff", "#868e96"),
    T.WAITING_APPROVAL: ("#e5dbff", "#6741d9"),
}
#: workflow states that have no task state of the same name
_WORKFLOW_COLOURS = {"Paused": STATE_COLOURS[T.CANCELLED], "RolledBack": STATE_COLOURS[T.FAILED],
                     "Draft": STATE_COLOURS[T.PENDING], "Validated": STATE_COLOURS[T.PENDING],
                     "Archived": STATE_COLOURS[T.SKIPPED]}
CRITICAL = "#e8590c"
ARROW = " \u2192 "
DOT_SEP = " \u00b7 "
DASHED = ' stroke-dasharray="3 2"'


@attrs.frozen
class GraphEdge:
    """``source`` must finish before ``target``; ``label`` is ``true``/``false`` for a
    Conditional's branch (an implicit edge), else empty."""

    source: str
    target: str
    label: str = ""


def type_name(task: TaskDefinition) -> str:
    """The ``type:`` tag of a task (a custom type without one shows its class name)."""
    return str(getattr(task.type, "type_name", "") or type(task.type).__name__)


def graph_edges(dag: WorkflowDag) -> list[GraphEdge]:
    """Every edge of the graph, by target in definition order, branch edges labelled."""
    branch: dict[tuple[str, str], list[str]] = {}
    for task in dag.definition.tasks:
        if isinstance(task.type, Conditional):
            for label, targets in (("true", task.type.true_branch),
                                   ("false", task.type.false_branch)):
                for target in targets:
                    branch.setdefault((task.id, target), []).append(label)
    return [GraphEdge(source, target, "/".join(branch.get((source, target), ())))
            for target in dag.ids for source in dag.dependencies(target)]


def _seconds(state: TaskState | None) -> float | None:
    if state is None or state.started_at is None or state.completed_at is None:
        return None
    return max(0.0, (state.completed_at - state.started_at).total_seconds())


def _duration(value: float) -> str:
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else "-"


def _state_of(instance: WorkflowInstance | None, task_id: str) -> TaskState | None:
    if instance is None:
        return None
    return instance.task_states.get(task_id) or TaskState(task_id)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def _summary_lines(task: TaskDefinition, state: TaskState | None,
                   instance: WorkflowInstance | None) -> list[str]:
    """What a tooltip says about a task (plain text, escaped by the caller)."""
    lines = [task.id if task.name == task.id else f"{task.id}: {task.name}",
             f"type: {type_name(task)}"]
    if isinstance(task.type, Loop):
        lines[-1] += f" (of {type_name(task.type.task_template)})"
    if task.depends_on:
        lines.append(f"after: {', '.join(task.depends_on)}")
    if state is None:
        return lines
    attempts = f"{state.attempts} attempt{'s' if state.attempts != 1 else ''}"
    took = _seconds(state)
    lines.append(f"state: {state.state} \u00b7 {attempts}"
                 + (f" \u00b7 {_duration(took)}" if took is not None else ""))
    if isinstance(task.type, Loop) and instance is not None:
        runs = [s for k, s in instance.task_states.items()
                if k.startswith(task.id + "[") and k.endswith("]")]
        if runs:
            done = sum(1 for s in runs if s.state == T.COMPLETED)
            lines.append(f"iterations: {len(runs)} ({done} completed)")
    if state.output is not None and state.output.exit_code is not None:
        lines.append(f"exit code: {state.output.exit_code}")
    if state.error:
        lines.append(f"error: {_short(state.error, 300)}")
    if state.output is not None and state.output.stdout:
        lines.append(f"stdout: {_short(state.output.stdout, 200)}")
    return lines


# --------------------------------------------------------------------------- Mermaid

_MERMAID_RESERVED = {"end", "graph", "flowchart", "subgraph", "style", "class", "classdef",
                     "click", "linkstyle", "direction", "call", "href", "default",
                     "interpolate", "acctitle", "accdescr"}
_MERMAID_SHAPES: Mapping[type, tuple[str, str]] = {
    Approval: ("{{", "}}"), Conditional: ("{", "}"), Loop: ("[[", "]]"),
    Subworkflow: ("[[", "]]"),
}
