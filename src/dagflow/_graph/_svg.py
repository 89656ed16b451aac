"""The graph of the HTML page: levels as rows, edges routed through lanes between
nodes, drawn as inline SVG."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise

import attrs

from .._dag import WorkflowDag
from .._models import (
    Approval,
    Conditional,
    Loop,
    Subworkflow,
    TaskDefinition,
    TaskState,
    WorkflowDefinition,
    WorkflowInstance,
)
from ._common import (
    CRITICAL,
    DOT_SEP,
    GraphEdge,
    T,
    _duration,
    _seconds,
    _short,
    _state_of,
    _summary_lines,
    graph_edges,
    type_name,
)
from ._text import (
    H_GAP,
    MARGIN,
    NODE_H,
    V_GAP,
)

__all__ = ['AXIS_H', 'BAR_H', 'PLOT_W', 'ROW_H']

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
    rows it crosses (beside or between their nodes), never through a node, and lanes sit
    on a grid of ``SPACING`` so that two of them never overlap while there is room."""

    PAD = 10.0
    SPACING = 7.0
    TRIES = 80  # grid slots tried on each side before sharing one (huge graphs only)

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        self.free = [self._free(row) for row in range(len(layout.rows))]
        self.taken: list[set[int]] = [set() for _ in layout.rows]  # grid slots per row

    def _free(self, row: int) -> list[tuple[float, float]]:
        lay, pad = self.layout, self.PAD
        xs = sorted(lay.at[t][0] for t in lay.rows[row])
        bounds = [6.0, *(v for x in xs for v in (x - pad, x + lay.node_w + pad)),
                  lay.width - 6.0]
        return [(a, b) for a, b in zip(bounds[::2], bounds[1::2], strict=True) if b > a]

    @staticmethod
    def _intersect(one: list[tuple[float, float]], two: list[tuple[float, float]]
                   ) -> list[tuple[float, float]]:
        """The overlap of two sorted lists of disjoint intervals (a merge, linear)."""
        out, i, j = [], 0, 0
        while i < len(one) and j < len(two):
            lo, hi = max(one[i][0], two[j][0]), min(one[i][1], two[j][1])
            if hi > lo:
                out.append((lo, hi))
            if one[i][1] < two[j][1]:
                i += 1
            else:
                j += 1
        return out

    def pick(self, first: int, last: int, want: float) -> float:
        """A lane x through rows ``first..last``, as close to ``want`` as there is room."""
        free = [(6.0, self.layout.width - 6.0)]
        for row in range(first, last + 1):
            free = self._intersect(free, self.free[row])
        if not free:  # cannot happen (the margins are free), but never fail a drawing
            return want
        rows = self.taken[first:last + 1]
        home = round(want / self.SPACING)
        fallback = None
        for step in range(2 * self.TRIES):
            slot = home + (step + 1) // 2 * (1 if step % 2 else -1)
            x = slot * self.SPACING
            if any(a <= x <= b for a, b in free):
                fallback = fallback if fallback is not None else slot
                if not any(slot in taken for taken in rows):
                    break
        else:
            if fallback is None:
                x = min((min(max(want, a), b) for a, b in free), key=lambda v: abs(v - want))
                return x
            slot = fallback
        for taken in rows:
            taken.add(slot)
        return slot * self.SPACING


def _route(layout: _Layout, lanes: _Lanes, levels: Mapping[str, int],
           conditionals: set[str], edge: GraphEdge, ports: tuple[float, float]
           ) -> tuple[str, tuple[float, float]]:
    """An edge's SVG path and where its label goes: one S-curve between adjacent rows, or
    down a lane (see :class:`_Lanes`) when it skips rows."""
    x1, x2 = ports
    y1 = layout.at[edge.source][1] + NODE_H + (8 if edge.source in conditionals else 0)
    y2 = layout.at[edge.target][1] - (8 if edge.target in conditionals else 0)
    first, last = levels[edge.source] + 1, levels[edge.target] - 1
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
    levels = dict(zip(dag.ids, dag.level, strict=True))
    conditionals = {t.id for t in definition.tasks if isinstance(t.type, Conditional)}
    for edge in edges:
        d, (lx, ly) = _route(layout, lanes, levels, conditionals, edge,
                             ports[(edge.source, edge.target)])
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

PLOT_W = 760.0
ROW_H = 22
BAR_H = 14
AXIS_H = 30
_NICE_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
               60, 120, 300, 600, 900, 1800, 3600, 7200, 14_400, 21_600, 43_200, 86_400)
