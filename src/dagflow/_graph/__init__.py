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

from collections.abc import Callable, Mapping

from .._models import WorkflowDefinition, WorkflowInstance
from ._common import (
    GraphEdge,
    graph_edges,
)
from ._html import (
    to_html,
)
from ._text import (
    to_dot,
    to_mermaid,
)

__all__ = ["FORMATS", "GraphEdge", "graph_edges", "render", "to_dot", "to_html", "to_mermaid"]

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
