"""Pictures of workflows and of their runs: Mermaid, Graphviz DOT and one HTML page.

Everything here is pure text rendering (no click, no I/O), so a host application can call
it too. The HTML page needs no network: the layout is computed here (the DAG builder's
levels as rows, tasks in definition order within a row) and drawn as inline SVG, with
embedded CSS and a few lines of inline JavaScript for hovering.

Everything user-controlled (names, descriptions, errors, outputs, type names of custom
task types) is escaped for the format it lands in: ``html.escape`` for HTML and SVG,
Mermaid's ``#NN;`` entity codes, and DOT's quoted strings and HTML-like labels.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import pairwise

import attrs

from ._dag import DefaultDagBuilder, WorkflowDag
from ._models import (
    Approval,
    Conditional,
    Loop,
    Subworkflow,
    TaskDefinition,
    TaskState,
    TaskStatus,
    WorkflowDefinition,
    WorkflowInstance,
)

__all__ = ["FORMATS", "GraphEdge", "graph_edges", "render", "to_dot", "to_html", "to_mermaid"]

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


@attrs.frozen
class _Layout:
    """Where each node sits (top-left corners; one width for all nodes) and each row."""

    width: float
    height: float
    node_w: float
    at: Mapping[str, tuple[float, float]]
    rows: Sequence[Sequence[str]]


def _layout(dag: WorkflowDag, details: Mapping[str, str]) -> _Layout:
    """Levels as rows (centred), tasks in definition order within a row; the node width
    fits the longest id (13px bold) and second line (10.5px), within bounds."""
    longest = max((max(7.6 * len(t), 6.0 * len(details.get(t, ""))) for t in dag.ids),
                  default=60.0)
    node_w = min(280.0, max(150.0, longest + 28))
    widest = max((len(b) for b in dag.execution_batches), default=1)
    width = widest * (node_w + H_GAP) - H_GAP + 2 * MARGIN
    at: dict[str, tuple[float, float]] = {}
    for row, batch in enumerate(dag.execution_batches):
        used = len(batch) * (node_w + H_GAP) - H_GAP
        x0 = (width - used) / 2
        for i, task_id in enumerate(batch):
            at[task_id] = (x0 + i * (node_w + H_GAP), MARGIN + row * (NODE_H + V_GAP))
    rows = len(dag.execution_batches)
    height = rows * (NODE_H + V_GAP) - V_GAP + 2 * MARGIN + 12
    return _Layout(width, height, node_w, at, dag.execution_batches)


def _ports(layout: _Layout, edges: Sequence[GraphEdge]
           ) -> dict[tuple[str, str], tuple[float, float]]:
    """Where each edge leaves its source and enters its target: spread along the node's
    bottom/top edge in the order of the other end's x, so that edges do not cross there."""
    w = layout.node_w
    out: dict[str, list[GraphEdge]] = {}
    into: dict[str, list[GraphEdge]] = {}
    for e in edges:
        out.setdefault(e.source, []).append(e)
        into.setdefault(e.target, []).append(e)
    ports: dict[tuple[str, str], tuple[float, float]] = {}

    def spread(group: list[GraphEdge], node: str, other: Callable[[GraphEdge], str],
               slot: int) -> None:
        group.sort(key=lambda e: layout.at[other(e)][0])
        x = layout.at[node][0]
        for i, e in enumerate(group):
            pos = x + w / 2 + (i - (len(group) - 1) / 2) * min(18.0, 0.6 * w / len(group))
            old = ports.get((e.source, e.target), (0.0, 0.0))
            ports[(e.source, e.target)] = (pos, old[1]) if slot == 0 else (old[0], pos)

    for node, group in out.items():
        spread(group, node, lambda e: e.target, 0)
    for node, group in into.items():
        spread(group, node, lambda e: e.source, 1)
    return ports


class _Lanes:
    """Vertical lanes for edges that skip levels: each runs through the free space of the
    rows it crosses (beside or between their nodes), never through a node."""

    PAD = 10.0
    SPACING = 7.0

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        self.taken: list[tuple[float, int, int]] = []  # (x, first row, last row)

    def _free(self, row: int) -> list[tuple[float, float]]:
        lay, pad = self.layout, self.PAD
        xs = [lay.at[t][0] for t in lay.rows[row]]
        edges = [6.0, *(v for x in xs for v in (x - pad, x + lay.node_w + pad)),
                 lay.width - 6.0]
        return [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b > a]

    def pick(self, first: int, last: int, want: float) -> float:
        """A lane x through rows ``first..last``, as close to ``want`` as there is room."""
        free = [(6.0, self.layout.width - 6.0)]
        for row in range(first, last + 1):
            free = [(max(a, c), min(b, d)) for a, b in free for c, d in self._free(row)
                    if min(b, d) > max(a, c)]
        if not free:  # cannot happen (the margins are free), but never fail a drawing
            return want
        best = want
        for step in range(0, 400):
            # try want, then alternately further right and left of it
            offset = (step + 1) // 2 * self.SPACING * (1 if step % 2 else -1)
            x = want + offset
            inside = any(a <= x <= b for a, b in free)
            crowded = any(abs(x - tx) < self.SPACING and fa <= last and first <= la
                          for tx, fa, la in self.taken)
            if inside and not crowded:
                best = x
                break
        else:
            best = min((min(max(want, a), b) for a, b in free), key=lambda x: abs(x - want))
        self.taken.append((best, first, last))
        return best


# --------------------------------------------------------------------------- HTML: pieces

def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _shape(kind: type, w: float, h: float) -> str:
    """The outline of a node of task type ``kind``, ``w`` by ``h`` at the origin."""
    if kind is Approval:
        pts = [(14, 0), (w - 14, 0), (w, h / 2), (w - 14, h), (14, h), (0, h / 2)]
    elif kind is Conditional:
        pts = [(-10, h / 2), (w / 2, -8), (w + 10, h / 2), (w / 2, h + 8)]
    else:
        outline = f'<rect class="shape" width="{_num(w)}" height="{h}" rx="8"/>'
        if kind in (Loop, Subworkflow):
            outline += (f'<path class="inner" d="M9 0V{h}M{_num(w - 9)} 0V{h}"/>')
        return outline
    return f'<polygon class="shape" points="{" ".join(f"{_num(x)},{_num(y)}" for x, y in pts)}"/>'


def _graph_svg(definition: WorkflowDefinition, dag: WorkflowDag,
               instance: WorkflowInstance | None, critical: Sequence[str]) -> str:
    details = {t.id: _node_detail(t, _state_of(instance, t.id)) for t in definition.tasks}
    layout = _layout(dag, details)
    edges = graph_edges(dag)
    ports = _ports(layout, edges)
    on_path = set(critical)
    hops = set(pairwise(critical))
    w = layout.node_w
    parts = [f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" role="img" '
             f'width="{_num(layout.width)}" height="{_num(layout.height)}" '
             f'viewBox="0 0 {_num(layout.width)} {_num(layout.height)}" '
             f'aria-label="{_e("graph of " + definition.name)}">',
             "<defs>"]
    for name, colour in (("arrow", "#495057"), ("arrow-crit", CRITICAL)):
        parts.append(f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" '
                     f'markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" '
                     f'orient="auto-start-reverse">'
                     f'<path d="M0 0L10 5L0 10z" fill="{colour}"/></marker>')
    parts.append("</defs>")
    lanes = _Lanes(layout)
    for edge in edges:
        d, (lx, ly) = _route(dag, layout, lanes, edge, ports[(edge.source, edge.target)])
        classes = ["edge"]
        if edge.label:
            classes.append("branch")
        crit = (edge.source, edge.target) in hops
        if crit:
            classes.append("critical")
        parts.append(
            f'<path class="{" ".join(classes)}" data-from="{_e(edge.source)}" '
            f'data-to="{_e(edge.target)}" d="{d}" '
            f'marker-end="url(#{"arrow-crit" if crit else "arrow"})"/>')
        if edge.label:
            parts.append(f'<text class="edge-label" x="{_num(lx)}" y="{_num(ly + 4)}">'
                         f"{_e(edge.label)}</text>")
    chars = max(8, int((w - 20) / 7.2))
    for task in definition.tasks:
        x, y = layout.at[task.id]
        state = _state_of(instance, task.id)
        classes = ["node", f"type-{type_name(task).lower()}"]
        if state is not None:
            classes.append(f"state-{state.state.lower()}")
        if task.id in on_path:
            classes.append("critical")
        tip = "\n".join(_summary_lines(task, state, instance))
        parts.append(
            f'<g class="{_e(" ".join(classes))}" data-task="{_e(task.id)}" '
            f'transform="translate({_num(x)},{_num(y)})" tabindex="0">'
            f"<title>{_e(tip)}</title>{_shape(type(task.type), w, NODE_H)}"
            f'<text class="id" x="{_num(w / 2)}" y="22">{_e(_short(task.id, chars))}</text>'
            f'<text class="type" x="{_num(w / 2)}" y="39">'
            f"{_e(_short(details[task.id], int((w - 16) / 6.0)))}</text></g>")
    parts.append("</svg>")
    return "\n".join(parts)


def _route(dag: WorkflowDag, layout: _Layout, lanes: _Lanes, edge: GraphEdge,
           ports: tuple[float, float]) -> tuple[str, tuple[float, float]]:
    """An edge's SVG path and where its label goes: one S-curve between adjacent rows, or
    down a lane (see :class:`_Lanes`) when it skips rows."""
    x1, x2 = ports
    top = dag.definition.task
    y1 = layout.at[edge.source][1] + NODE_H + (
        8 if isinstance(top(edge.source).type, Conditional) else 0)
    y2 = layout.at[edge.target][1] - (8 if isinstance(top(edge.target).type, Conditional)
                                      else 0)
    first = dag.level[dag.index[edge.source]] + 1
    last = dag.level[dag.index[edge.target]] - 1
    if last < first:
        bend = max(24.0, (y2 - y1) / 2)
        d = (f"M{_num(x1)} {_num(y1)}C{_num(x1)} {_num(y1 + bend)} {_num(x2)} "
             f"{_num(y2 - bend)} {_num(x2)} {_num(y2)}")
        return d, ((x1 + x2) / 2, (y1 + y2) / 2)
    lane = lanes.pick(first, last, (x1 + x2) / 2)
    ya = MARGIN + first * (NODE_H + V_GAP)  # the top of the first row crossed
    yb = MARGIN + last * (NODE_H + V_GAP) + NODE_H  # the bottom of the last
    h1, h2 = (ya - y1) / 2, (y2 - yb) / 2
    d = (f"M{_num(x1)} {_num(y1)}C{_num(x1)} {_num(y1 + h1)} {_num(lane)} {_num(ya - h1)} "
         f"{_num(lane)} {_num(ya)}L{_num(lane)} {_num(yb)}C{_num(lane)} {_num(yb + h2)} "
         f"{_num(x2)} {_num(y2 - h2)} {_num(x2)} {_num(y2)}")
    return d, ((x1 + lane) / 2, (y1 + ya) / 2)


def _node_detail(task: TaskDefinition, state: TaskState | None) -> str:
    """The small second line of a node: the type, and in a run the state and duration."""
    text = type_name(task)
    if state is not None:
        if state.state != T.COMPLETED:  # green says Completed; other states are spelt out
            text += f"{DOT_SEP}{state.state}"
        took = _seconds(state)
        if took is not None:
            text += f"{DOT_SEP}{_duration(took)}"
    return text


# --------------------------------------------------------------------------- HTML: timeline

LABEL_MIN, LABEL_MAX = 130.0, 280.0
PLOT_W = 760.0
ROW_H = 22
BAR_H = 14
AXIS_H = 30
_NICE_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
               60, 120, 300, 600, 900, 1800, 3600, 7200, 14_400, 21_600, 43_200, 86_400)


@attrs.frozen
class _Row:
    key: str
    depth: int
    state: TaskState


def _timeline_rows(definition: WorkflowDefinition, instance: WorkflowInstance) -> list[_Row]:
    """Tasks by start time (tasks that did not start last, in definition order), each
    followed by its loop iterations (``ID[k]``) and rollback step (``ID:rollback``)."""
    states = instance.task_states
    ids = [t.id for t in definition.tasks]
    known = set(ids)
    children: dict[str, list[str]] = {}
    orphans: list[str] = []
    for key in states:
        if key in known:
            continue
        match = re.fullmatch(r"(.+)\[(\d+)\]", key)
        parent = match.group(1) if match else key.rpartition(":")[0]
        if parent and (parent in known or parent in states):
            children.setdefault(parent, []).append(key)
        else:
            orphans.append(key)

    def order(key: str) -> tuple[int, int, str]:
        match = re.search(r"\[(\d+)\]$", key)
        return (0 if match else 1, int(match.group(1)) if match else 0, key)

    def walk(key: str, depth: int) -> Iterator[_Row]:
        yield _Row(key, depth, states.get(key) or TaskState(key))
        for child in sorted(children.get(key, ()), key=order):
            yield from walk(child, depth + 1)

    far = dt.datetime.max.replace(tzinfo=dt.UTC)

    def start(i: int) -> tuple[bool, dt.datetime, int]:
        state = states.get(ids[i])
        began = state.started_at if state is not None else None
        return (began is None, began or far, i)

    rows: list[_Row] = []
    for i in sorted(range(len(ids)), key=start):
        rows.extend(walk(ids[i], 0))
    for key in orphans:
        rows.extend(walk(key, 0))
    return rows


def _tick(value: float, step: float) -> str:
    if step >= 60:
        minutes, seconds = divmod(round(value), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{decimals}f}s"


def _timeline_svg(definition: WorkflowDefinition, instance: WorkflowInstance,
                  now: dt.datetime) -> str:
    rows = _timeline_rows(definition, instance)
    began = [r.state.started_at for r in rows if r.state.started_at is not None]
    if instance.started_at is not None:
        began.append(instance.started_at)
    if not began:
        return '<p class="empty">No task has started yet.</p>'
    t0 = min(began)
    end_of = instance.completed_at or now
    ends = [r.state.completed_at or end_of for r in rows if r.state.started_at is not None]
    span = max(max(ends, default=t0) - t0, dt.timedelta(milliseconds=1)).total_seconds()
    label_w = min(LABEL_MAX, max(LABEL_MIN, 7.2 * max(len(r.key) + 2 * r.depth
                                                      for r in rows) + 20))
    width = label_w + PLOT_W + 30
    height = AXIS_H + len(rows) * ROW_H + 10
    step = next((s for s in _NICE_STEPS if span / s <= 8), _NICE_STEPS[-1])

    def x_of(moment: dt.datetime) -> float:
        return label_w + (moment - t0).total_seconds() / span * PLOT_W

    parts = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" role="img" '
             f'width="{_num(width)}" height="{height}" viewBox="0 0 {_num(width)} {height}" '
             f'aria-label="timeline of the run">',
             f'<g class="axis"><line x1="{_num(label_w)}" y1="{AXIS_H - 6}" '
             f'x2="{_num(label_w + PLOT_W)}" y2="{AXIS_H - 6}"/>']
    k = 0
    while k * step <= span + 1e-9:
        x = label_w + k * step / span * PLOT_W
        parts.append(f'<line class="grid" x1="{_num(x)}" y1="{AXIS_H - 10}" x2="{_num(x)}" '
                     f'y2="{height - 6}"/><text x="{_num(x)}" y="{AXIS_H - 14}">'
                     f"{_tick(k * step, step)}</text>")
        k += 1
    parts.append("</g>")
    for i, row in enumerate(rows):
        y = AXIS_H + i * ROW_H
        state = row.state
        css = f"state-{state.state.lower()}"
        sub = " sub" if row.depth else ""
        parts.append(f'<text class="row-label{sub}" x="{8 + 14 * row.depth}" '
                     f'y="{y + 15}">{_e(_short(row.key, int((label_w - 16) / 7.2)))}</text>')
        lines = [row.key, f"state: {state.state} \u00b7 {state.attempts} attempt"
                 + ("s" if state.attempts != 1 else "")]
        if state.started_at is None:
            # at the moment it was skipped or cancelled, kept inside the plot
            where = x_of(state.completed_at) if state.completed_at else label_w
            where = min(where, label_w + PLOT_W - 60)
            if state.error:
                lines.append(f"error: {_short(state.error, 300)}")
            parts.append(f'<text class="not-run {css}" x="{_num(where + 4)}" '
                         f'y="{y + 15}"><title>{_e(chr(10).join(lines))}</title>'
                         f"{_e(str(state.state).lower())}</text>")
            continue
        finish = state.completed_at or end_of
        seconds = max(0.0, (finish - state.started_at).total_seconds())
        offset = _duration((state.started_at - t0).total_seconds())
        lines.append(f"started: {_when(state.started_at)} (+{offset})")
        lines.append(f"took: {_duration(seconds)}"
                     + ("" if state.completed_at else " (still running)"))
        if state.error:
            lines.append(f"error: {_short(state.error, 300)}")
        x = x_of(state.started_at)
        parts.append(
            f'<rect class="bar {css}{sub}" data-task="{_e(row.key)}" '
            f'data-seconds="{seconds:.6f}" x="{_num(x)}" y="{y + (ROW_H - BAR_H) / 2:.0f}" '
            f'width="{max(1.0, seconds / span * PLOT_W):.3f}" height="{BAR_H}" rx="2">'
            f"<title>{_e(chr(10).join(lines))}</title></rect>")
    parts.append("</svg>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- HTML: page

_CSS = """
:root { color-scheme: light; --ink: #212529; --muted: #6c757d; --line: #dee2e6; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px; color: var(--ink); background: #f8f9fa;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.meta { color: var(--muted); margin: 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px;
  overflow: auto; }
.card.graph { text-align: center; }
.summary { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px;
  margin: 16px 0 0; }
.summary dt { color: var(--muted); } .summary dd { margin: 0; }
.badge { display: inline-block; padding: 1px 10px; border-radius: 10px; font-weight: 600;
  border: 1px solid; }
pre.error { margin: 0; white-space: pre-wrap; word-break: break-word; color: #c92a2a;
  font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 0 0 8px; color: var(--muted);
  font-size: 12px; align-items: center; }
.legend svg { vertical-align: middle; margin-right: 4px; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
.node .shape { fill: #fff; stroke: #868e96; stroke-width: 1.5; }
.node .inner { stroke: #868e96; stroke-width: 1.2; }
.node text { text-anchor: middle; fill: var(--ink); }
.node text.id { font-size: 13px; font-weight: 600; }
.node text.type { font-size: 10.5px; fill: var(--muted); }
.node.critical .shape { stroke: #e8590c; stroke-width: 3; }
.node:hover .shape, .node:focus .shape { stroke-width: 3; }
.node:focus { outline: none; }
.edge { fill: none; stroke: #495057; stroke-width: 1.4; }
.edge.branch { stroke-dasharray: 6 4; }
.edge.critical { stroke: #e8590c; stroke-width: 2.6; }
.edge.hot { stroke: #1971c2; stroke-width: 3; }
.edge-label { font-size: 11px; text-anchor: middle; fill: #495057; paint-order: stroke;
  stroke: #fff; stroke-width: 4px; font-style: italic; }
.axis line { stroke: #adb5bd; } .axis line.grid { stroke: #f1f3f5; }
.axis text { font-size: 10.5px; fill: var(--muted); text-anchor: middle; }
.row-label { font-size: 12px; fill: var(--ink); } .row-label.sub { fill: var(--muted); }
.not-run { font-size: 11px; font-style: italic; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.sub { padding-left: 24px; color: var(--muted); }
td .error { color: #c92a2a; white-space: pre-wrap; word-break: break-word; }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
"""

# hovering a node highlights its edges; nothing else needs script
_JS = """
(function () {
  var svg = document.getElementById("graph");
  if (!svg) { return; }
  var edges = svg.querySelectorAll(".edge");
  function mark(id, on) {
    for (var i = 0; i < edges.length; i++) {
      var e = edges[i];
      if (e.getAttribute("data-from") === id || e.getAttribute("data-to") === id) {
        e.classList.toggle("hot", on);
      }
    }
  }
  var nodes = svg.querySelectorAll(".node");
  for (var i = 0; i < nodes.length; i++) {
    (function (node) {
      var id = node.getAttribute("data-task");
      node.addEventListener("mouseenter", function () { mark(id, true); });
      node.addEventListener("mouseleave", function () { mark(id, false); });
      node.addEventListener("focus", function () { mark(id, true); });
      node.addEventListener("blur", function () { mark(id, false); });
    })(nodes[i]);
  }
})();
"""


def _state_css() -> str:
    rules = []
    for status, (fill, stroke) in STATE_COLOURS.items():
        css = status.lower()
        rules.append(f".node.state-{css} .shape {{ fill: {fill}; stroke: {stroke}; }}\n"
                     f".bar.state-{css} {{ fill: {stroke}; }}\n"
                     f".not-run.state-{css} {{ fill: {stroke}; }}")
    rules.append(".bar.sub { opacity: .75; }")
    return "\n".join(rules)


def _swatch(fill: str, stroke: str, dashed: bool = False) -> str:
    return (f'<svg width="22" height="12" aria-hidden="true"><rect x="1" y="1" width="20" '
            f'height="10" rx="2" fill="{fill}" stroke="{stroke}" stroke-width="1.5"'
            f"{DASHED if dashed else ''}/></svg>")


def _legend(definition: WorkflowDefinition, instance: WorkflowInstance | None,
            critical: Sequence[str], length: str) -> str:
    kinds = {type(t.type) for t in definition.tasks}
    items = ['<span><svg width="22" height="12" aria-hidden="true"><line x1="1" y1="6" '
             f'x2="21" y2="6" stroke="{CRITICAL}" stroke-width="3"/></svg>critical path '
             f"({_e(length)}): {_e(ARROW.join(critical))}</span>"]
    shapes = [(Approval, "approval", '<polygon points="4,1 18,1 21,6 18,11 4,11 1,6" '),
              (Conditional, "conditional", '<polygon points="1,6 11,0 21,6 11,12" '),
              (Loop, "loop / subworkflow", '<rect x="1" y="1" width="20" height="10" '),
              (Subworkflow, "loop / subworkflow", '<rect x="1" y="1" width="20" height="10" ')]
    seen: set[str] = set()
    for kind, label, svg in shapes:
        if kind in kinds and label not in seen:
            seen.add(label)
            items.append(f'<span><svg width="22" height="12" aria-hidden="true">{svg}'
                         'fill="#fff" stroke="#868e96" stroke-width="1.5"/></svg>'
                         f"{label}</span>")
    if any(isinstance(t.type, Conditional) for t in definition.tasks):
        items.append('<span><svg width="22" height="12" aria-hidden="true"><line x1="1" '
                     'y1="6" x2="21" y2="6" stroke="#495057" stroke-width="1.4" '
                     'stroke-dasharray="4 3"/></svg>branch (true / false)</span>')
    if instance is not None:
        for status, (fill, stroke) in STATE_COLOURS.items():
            items.append(f"<span>{_swatch(fill, stroke)}{_e(status)}</span>")
    return '<div class="legend">' + "".join(items) + "</div>"


def _summary(instance: WorkflowInstance, now: dt.datetime) -> str:
    fill, stroke = STATE_COLOURS.get(instance.state,
                                     _WORKFLOW_COLOURS.get(instance.state,
                                                           STATE_COLOURS[T.PENDING]))
    took = "-"
    if instance.started_at is not None:
        seconds = ((instance.completed_at or now) - instance.started_at).total_seconds()
        took = _duration(seconds) + ("" if instance.completed_at else " (so far)")
    counts: dict[str, int] = {}
    for task in instance.definition.tasks:
        state = instance.task_states.get(task.id)
        name = str(state.state if state is not None else T.PENDING)
        counts[name] = counts.get(name, 0) + 1
    rows = [
        ("state", f'<span class="badge" style="background:{fill};border-color:{stroke}">'
                  f"{_e(instance.state)}</span>"),
        ("instance", _e(instance.id)),
        ("started", _e(_when(instance.started_at))),
        ("completed", _e(_when(instance.completed_at))),
        ("duration", _e(took)),
        ("tasks", _e(", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())))),
    ]
    if instance.created_by:
        rows.append(("started by", _e(instance.created_by)))
    if instance.error:
        rows.append(("error", f'<pre class="error">{_e(instance.error)}</pre>'))
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<dl class="summary">{body}</dl>'


def _task_table(definition: WorkflowDefinition, instance: WorkflowInstance) -> str:
    head = ("<tr><th>task</th><th>type</th><th>state</th><th>attempts</th><th>started</th>"
            "<th>took</th><th>error</th></tr>")
    kinds = {t.id: type_name(t) for t in definition.tasks}
    body = []
    for row in _timeline_rows(definition, instance):
        state = row.state
        took = _seconds(state)
        started = f"{state.started_at:%H:%M:%S.%f}"[:-3] if state.started_at else "-"
        body.append(
            f'<tr><td class="{"sub" if row.depth else ""}">{_e(row.key)}</td>'
            f"<td>{_e(kinds.get(row.key, ''))}</td><td>{_e(state.state)}</td>"
            f"<td>{state.attempts}</td><td>{started}</td>"
            f"<td>{_duration(took) if took is not None else '-'}</td>"
            f'<td><span class="error">{_e(_short(state.error or "", 500))}</span></td></tr>')
    return f"<table>{head}{''.join(body)}</table>"


def to_html(definition: WorkflowDefinition, instance: WorkflowInstance | None = None, *,
            now: dt.datetime | None = None) -> str:
    """One self-contained HTML page: the graph as SVG, and for a run its summary, a
    timeline (Gantt chart) and a table of task states.

    Args:
        definition: The workflow.
        instance: A run of it (nodes coloured by state; timeline and summary added).
        now: Where running tasks' bars end (default: the current time).

    Returns:
        The HTML document. It loads nothing from anywhere.
    """
    now = now or dt.datetime.now(dt.UTC)
    dag = DefaultDagBuilder().build_dag(definition)
    durations = None
    unit = " steps"
    if instance is not None:
        measured = {k: s for k in dag.ids if (s := _seconds(instance.task_states.get(k)))}
        if measured:
            durations, unit = measured, "s"
    length, critical = dag.critical_path(durations)
    length_text = _duration(length) if unit == "s" else f"{length:g}{unit}"
    title = definition.name if instance is None else f"{definition.name} \u2014 run {instance.id}"
    meta = [f"workflow {definition.id}"]
    if definition.version:
        meta.append(f"version {definition.version}")
    meta.append(f"{len(definition.tasks)} tasks in {len(dag.execution_batches)} levels")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="dagflow graph">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}{_state_css()}</style>",
        "</head>",
        "<body>",
        f"<header><h1>{_e(definition.name)}</h1>",
        f'<p class="meta">{_e(DOT_SEP.join(meta))}</p>',
    ]
    if definition.description:
        parts.append(f'<p class="meta">{_e(definition.description)}</p>')
    if instance is not None:
        parts.append(_summary(instance, now))
    parts.append("</header>")
    parts.append("<section><h2>Graph</h2>")
    parts.append(_legend(definition, instance, critical, length_text))
    parts.append(f'<div class="card graph">{_graph_svg(definition, dag, instance, critical)}'
                 "</div>")
    parts.append("</section>")
    if instance is not None:
        parts.append("<section><h2>Timeline</h2>")
        parts.append(f'<div class="card">{_timeline_svg(definition, instance, now)}</div>')
        parts.append("</section>")
        parts.append("<section><h2>Tasks</h2>")
        parts.append(f'<div class="card">{_task_table(definition, instance)}</div>')
        parts.append("</section>")
    parts.append(f"<footer>drawn by dagflow graph \u00b7 {_e(_when(now))}</footer>")
    parts.append(f"<script>{_JS}</script>")
    parts.append("</body>")
    parts.append("</html>")
    return "\n".join(parts) + "\n"


FORMATS: Mapping[str, Callable[[WorkflowDefinition, WorkflowInstance | None], str]] = {
    "mermaid": to_mermaid,
    "dot": to_dot,
    "html": to_html,
}


def render(definition: WorkflowDefinition, format: str = "mermaid",
           instance: WorkflowInstance | None = None) -> str:
    """Draw ``definition`` (and a run of it) as ``mermaid``, ``dot`` or ``html``.

    Raises:
        ValueError: ``format`` is none of these.
    """
    try:
        draw = FORMATS[format]
    except KeyError:
        raise ValueError(f"unknown graph format {format!r}: use one of "
                         f"{', '.join(FORMATS)}") from None
    return draw(definition, instance)
