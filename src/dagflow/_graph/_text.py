"""Mermaid and Graphviz DOT: a workflow (and a run of it) as text for other tools."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence

from .._dag import DefaultDagBuilder
from .._models import (
    Approval,
    Conditional,
    Loop,
    Subworkflow,
    WorkflowDefinition,
    WorkflowInstance,
)
from ._common import (
    _MERMAID_RESERVED,
    _MERMAID_SHAPES,
    STATE_COLOURS,
    T,
    _state_of,
    _summary_lines,
    graph_edges,
    type_name,
)

__all__ = ['H_GAP', 'MARGIN', 'NODE_H', 'V_GAP', 'to_dot', 'to_mermaid']

def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: entity codes for everything Mermaid or the HTML
    it renders could read as syntax."""
    return "".join(f"#{ord(c)};" if c in '"#&<>`\\;|{}[]()' else c
                   for c in " ".join(text.split()))


def _mermaid_ids(ids: Sequence[str]) -> dict[str, str]:
    """Node ids Mermaid cannot misread: the task id when it is a plain word, else a
    sanitised one (``.``/``-`` -> ``_``), made unique."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for task_id in ids:
        name = task_id
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name.lower() in _MERMAID_RESERVED:
            name = "t_" + re.sub(r"[^A-Za-z0-9_]", "_", task_id)
        base, n = name, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        out[task_id] = name
    return out


def to_mermaid(definition: WorkflowDefinition, instance: WorkflowInstance | None = None) -> str:
    """A Mermaid ``flowchart TD`` of ``definition``.

    Args:
        definition: The workflow.
        instance: A run of it: nodes are then coloured by task state (``classDef``).

    Returns:
        The Mermaid source, ending with a newline.
    """
    dag = DefaultDagBuilder().build_dag(definition)
    names = _mermaid_ids(dag.ids)
    lines = ["---", f"title: {json.dumps(definition.name)}", "---", "flowchart TD"]
    for task in definition.tasks:
        start, end = _MERMAID_SHAPES.get(type(task.type), ("[", "]"))
        label = f"{_mermaid_text(task.id)}<br/><small>{_mermaid_text(type_name(task))}</small>"
        lines.append(f'    {names[task.id]}{start}"{label}"{end}')
    for edge in graph_edges(dag):
        arrow = f"-. {edge.label} .->" if edge.label else "-->"
        lines.append(f"    {names[edge.source]} {arrow} {names[edge.target]}")
    if instance is not None:
        by_state: dict[str, list[str]] = {}
        for task_id in dag.ids:
            state = _state_of(instance, task_id)
            assert state is not None
            by_state.setdefault(state.state, []).append(names[task_id])
        for status, members in by_state.items():
            fill, stroke = STATE_COLOURS.get(status, STATE_COLOURS[T.PENDING])
            css = status.lower()
            lines.append(f"    classDef {css} fill:{fill},stroke:{stroke},color:#212529")
            lines.append(f"    class {','.join(members)} {css}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- Graphviz DOT

_DOT_SHAPES: Mapping[type, str] = {
    Approval: "hexagon", Conditional: "diamond", Loop: "box", Subworkflow: "box",
}


def _dq(text: str) -> str:
    """A DOT double-quoted string (backslashes, quotes and newlines escaped)."""
    body = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + body.replace("\r", "").replace("\n", "\\n") + '"'


def to_dot(definition: WorkflowDefinition, instance: WorkflowInstance | None = None) -> str:
    """A Graphviz ``digraph`` of ``definition`` (render with ``dot -Tsvg``).

    Args:
        definition: The workflow.
        instance: A run of it: nodes are then filled by task state, with the state,
            attempts, duration and error in their tooltips.

    Returns:
        The DOT source, ending with a newline.
    """
    dag = DefaultDagBuilder().build_dag(definition)
    lines = [
        f"digraph {_dq(definition.id)} {{",
        "    rankdir=TB;",
        f"    graph [label={_dq(definition.name)}, labelloc=t, fontname=\"Helvetica\"];",
        '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", '
        'fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    for task in definition.tasks:
        kind = html.escape(type_name(task))
        attrs_ = [f'label=<{html.escape(task.id)}<BR/><FONT POINT-SIZE="10">{kind}</FONT>>']
        shape = _DOT_SHAPES.get(type(task.type))
        if shape:
            attrs_.append(f"shape={shape}")
        if isinstance(task.type, Loop | Subworkflow):
            attrs_.append("peripheries=2")
        state = _state_of(instance, task.id)
        if state is not None:
            fill, stroke = STATE_COLOURS.get(state.state, STATE_COLOURS[T.PENDING])
            attrs_ += [f"fillcolor={_dq(fill)}", f"color={_dq(stroke)}"]
        tooltip = "\n".join(_summary_lines(task, state, instance))
        attrs_.append(f"tooltip={_dq(tooltip)}")
        lines.append(f"    {_dq(task.id)} [{', '.join(attrs_)}];")
    for edge in graph_edges(dag):
        extra = f" [style=dashed, label={_dq(edge.label)}]" if edge.label else ""
        lines.append(f"    {_dq(edge.source)} -> {_dq(edge.target)}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML: layout

NODE_H = 52
H_GAP = 36
V_GAP = 64
MARGIN = 24
