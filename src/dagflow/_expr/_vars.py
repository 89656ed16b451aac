"""Resolve a workflow's variables once, when an instance is created.

Precedence for a bare ``${NAME}``: run-time variables > definition variables > the
environment. Definition variables may reference each other and the environment; run-time
values are data, never templates. A string that is exactly one reference takes the
referenced value as it is (``replicas: "${count}"`` stays a number); any other string is
text. Each value is interpolated once: a resolved value is never scanned again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._refs import ExprError, Ref, parse_template, to_text

__all__ = ["UnresolvedVariables", "resolve_variables"]


class UnresolvedVariables(ExprError):
    """One or more variables reference names that exist nowhere.

    Attributes:
        missing: ``{variable: [missing names]}``.
    """

    def __init__(self, missing: Mapping[str, list[str]]) -> None:
        self.missing = dict(missing)
        parts = [f"{var!r} uses {', '.join('${' + m + '}' for m in names)}"
                 for var, names in self.missing.items()]
        super().__init__("unresolved variables: " + "; ".join(parts)
                         + " (set them with --var NAME=VALUE or in the environment)")


def resolve_variables(
    definition: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    workflow: Mapping[str, str] | None = None,
    *,
    partial: bool = False,
) -> dict[str, Any]:
    """Return every variable with its references replaced.

    Args:
        definition: The workflow's ``variables``.
        overrides: Run-time variables (``--var``, ``variables=``): taken literally.
        environ: The environment for ``${env.X}`` and bare names (default: none).
        workflow: Values for ``${workflow.id}``, ``${workflow.name}`` and
            ``${workflow.instance_id}``.
        partial: Leave unresolvable references as written (``${X}``) instead of raising;
            for previews such as ``dagflow plan``.

    Raises:
        UnresolvedVariables: A reference resolves nowhere.
        ExprError: Variables reference each other in a loop, or a reference is malformed,
            or one uses ``tasks.``/``item`` (unknown before any task runs).
    """
    overrides = dict(overrides or {})
    environ = environ or {}
    workflow = workflow or {}
    resolved: dict[str, Any] = dict(overrides)
    missing: dict[str, list[str]] = {}
    visiting: list[str] = []

    def value_of(name: str) -> Any:
        if name in resolved:
            return resolved[name]
        if name in visiting:
            loop = [*visiting[visiting.index(name):], name]
            raise ExprError(f"variables reference each other in a loop: {' -> '.join(loop)}")
        visiting.append(name)
        try:
            result = resolve(definition[name], name)
        finally:
            visiting.pop()
        resolved[name] = result
        return result

    def lookup(ref: Ref, owner: str) -> Any:
        if ref.kind == "env":
            if ref.parts[0] in environ:
                return environ[ref.parts[0]]
        elif ref.kind == "var":
            head = ref.parts[0]
            if head in overrides or head in definition:
                value = value_of(head)
                for part in ref.parts[1:]:
                    if isinstance(value, Mapping) and part in value:
                        value = value[part]
                    else:
                        missing.setdefault(owner, []).append(ref.text)
                        return "${" + ref.text + "}" if partial else None
                return value
            if len(ref.parts) == 1 and head in environ:
                return environ[head]
        elif ref.kind == "workflow":
            if ref.parts[0] in workflow:
                return workflow[ref.parts[0]]
        else:
            raise ExprError(f"variable {owner!r} cannot use '${{{ref.text}}}': variables are "
                            "resolved before any task runs")
        missing.setdefault(owner, []).append(ref.text)
        return "${" + ref.text + "}" if partial else None

    def resolve(value: Any, owner: str) -> Any:
        if isinstance(value, str):
            if "${" not in value:
                return value
            parts = parse_template(value)
            if len(parts) == 1 and isinstance(parts[0], Ref):
                return lookup(parts[0], owner)
            return "".join(p if isinstance(p, str) else to_text(lookup(p, owner))
                           for p in parts)
        if isinstance(value, dict):
            return {k: resolve(v, owner) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [resolve(v, owner) for v in value]
        return value

    for name in definition:
        if name not in overrides:
            value_of(name)
    if missing and not partial:
        raise UnresolvedVariables(missing)
    return resolved

