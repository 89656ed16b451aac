"""``${...}`` at run time: what a definition references, and a task type with its
references replaced (once: a replaced value is never scanned again).

Which fields are templates is decided by the validator's field plan, so the fields it
checks are exactly the fields interpolated here.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from ._expr import ExprError, Ref, parse_template
from ._expr._refs import to_text
from ._models import Loop, TaskDefinition, WorkflowDefinition
from ._parse._validate import _plan
from ._serde import exception_message, has_reference

__all__ = ["definition_refs", "interpolate_spec", "spec_has_refs", "walk_path"]

Resolve = Callable[[Ref], Any]


def walk_path(value: Any, path: tuple[str, ...], what: str) -> Any:
    """``value.a.b`` / ``value.0``: mapping keys and list indexes.

    Raises:
        ExprError: A step of the path does not exist.
    """
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list | tuple) and part.lstrip("-").isdigit() and (
                -len(value) <= int(part) < len(value)):
            value = value[int(part)]
        else:
            shown = type(value).__name__ if not isinstance(value, Mapping) else (
                "keys " + ", ".join(map(repr, list(value)[:8])) if value else "no keys")
            raise ExprError(f"'${{{what}}}': no {part!r} there ({shown})")
    return value


_KINDS: dict[type[Any], tuple[tuple[str, str], ...]] = {}


def _template_kinds(cls: type[Any]) -> tuple[tuple[str, str], ...]:
    """(field, kind) for the template fields of a task type class (cached per class).

    kind: ``str`` (text), ``strs`` (tuple of text), ``map`` (mapping of text) or ``any``
    (free-form data: a string that is exactly one reference keeps the value's type).
    """
    cached = _KINDS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    out = []
    plan: Any = _plan  # functools.cache types its key as Hashable; classes are
    for name in plan(cls)[2]:
        hint = hints.get(name, Any)
        args = typing.get_args(hint)
        origin = typing.get_origin(hint)
        if hint is Any:
            kind = "any"
        elif origin is tuple:
            kind = "strs"
        elif origin is dict:
            kind = "map" if args and args[1] is str else "any"
        else:
            kind = "str"
        out.append((name, kind))
    _KINDS[cls] = result = tuple(out)
    return result


def spec_has_refs(spec: Any) -> bool:
    """Whether any template field of ``spec`` contains ``${`` (or ``$${``)."""
    return any(has_reference(getattr(spec, name)) for name, _ in _template_kinds(spec.__class__))


def interpolate_spec(spec: Any, resolve: Resolve) -> Any:
    """``spec`` with every reference in its template fields replaced.

    Raises:
        ExprError: A reference cannot be resolved, or the task type's own validators
            refuse a value it stands for.
    """
    changes: dict[str, Any] = {}
    for name, kind in _template_kinds(spec.__class__):
        value = getattr(spec, name)
        if value is None or not has_reference(value):
            continue
        if kind == "str":
            changes[name] = _text(value, resolve)
        elif kind == "strs":
            changes[name] = tuple(_text(v, resolve) for v in value)
        elif kind == "map":
            changes[name] = {k: _text(v, resolve) for k, v in value.items()}
        else:
            changes[name] = _data(value, resolve)
    if not changes:
        return spec
    try:
        return attrs.evolve(spec, **changes)
    except (ValueError, TypeError) as exc:  # the type's own validators refuse a value
        raise ExprError(f"with its references replaced: {exception_message(exc)}") from None


def _text(value: str, resolve: Resolve) -> str:
    parts = parse_template(value)
    return "".join(p if isinstance(p, str) else to_text(resolve(p)) for p in parts)


def _data(value: Any, resolve: Resolve) -> Any:
    if isinstance(value, str):
        parts = parse_template(value)
        if len(parts) == 1 and isinstance(parts[0], Ref):
            return resolve(parts[0])  # exactly one reference: the value, typed
        return "".join(p if isinstance(p, str) else to_text(resolve(p)) for p in parts)
    if isinstance(value, Mapping):
        return {k: _data(v, resolve) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_data(v, resolve) for v in value]
    return value


# --------------------------------------------------------------------------- collecting


def _task_strings(task: TaskDefinition) -> Iterator[str]:
    for spec in (task.type, task.rollback):
        if spec is None:
            continue
        for name, _ in _template_kinds(spec.__class__):
            yield from _strings(getattr(spec, name))
    if task.condition:
        yield task.condition
    kind = task.type
    if isinstance(kind, Loop):
        if isinstance(kind.items, str):
            yield kind.items
        yield from _task_strings(kind.task_template)
    condition = getattr(kind, "condition", None)
    if isinstance(condition, str) and condition is not task.condition:
        yield condition


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if "${" in value:
            yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def definition_refs(definition: WorkflowDefinition) -> list[Ref]:
    """Every reference in the tasks of ``definition`` (variables excluded), once each.

    Conditions hold references as ``${...}`` too, so one scan finds them all (once per
    definition: the answer is kept on it).
    """
    cached: list[Ref] | None = definition._derived.get("refs")
    if cached is not None:
        return cached
    seen: dict[str, Ref] = {}
    for task in definition.tasks:
        for text in _task_strings(task):
            try:
                parts = parse_template(text)
            except ExprError:  # the validator reported it already
                continue
            for part in parts:
                if isinstance(part, Ref) and part.text not in seen:
                    seen[part.text] = part
    refs = definition._derived["refs"] = list(seen.values())
    return refs
