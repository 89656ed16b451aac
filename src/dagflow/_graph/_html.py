"""The HTML page: the SVG graph, and for a run its summary, timeline (Gantt) and task
table, in one self-contained file."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator, Sequence

import attrs

from .._dag import DefaultDagBuilder
from .._models import (
    Approval,
    Conditional,
    Loop,
    Subworkflow,
    TaskState,
    WorkflowDefinition,
    WorkflowInstance,
)
from ._common import (
    _WORKFLOW_COLOURS,
    ARROW,
    CRITICAL,
    DASHED,
    DOT_SEP,
    STATE_COLOURS,
    T,
    _duration,
    _seconds,
    _short,
    _when,
    type_name,
)
from ._svg import (
    _NICE_STEPS,
    AXIS_H,
    BAR_H,
    PLOT_W,
    ROW_H,
    _e,
    _graph_svg,
    _num,
)

#: width of the timeline's label column, from the longest task id
LABEL_MIN, LABEL_MAX = 130.0, 280.0

__all__ = ['to_html']

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
