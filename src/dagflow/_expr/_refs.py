"""``${...}`` references: parse them out of strings, and interpolate them once.

The grammar is tiny on purpose (no template engine, no expressions inside ``${}``)::

    ${name}  ${name.path}  ${env.NAME}  ${secrets.NAME}  ${workflow.id}
    ${tasks.ID.status|exit_code|stdout|stderr|data|error|attempts}  ${tasks.ID.data.a.b}
    ${item}  ${item.a}  ${item_index}          $${ is a literal ${
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import attrs

__all__ = [
    "TASK_FIELDS",
    "ExprError",
    "Ref",
    "interpolate",
    "parse_ref",
    "parse_template",
]

#: What ``${tasks.ID.<field>}`` may name.
TASK_FIELDS = frozenset({"status", "exit_code", "stdout", "stderr", "data", "error", "attempts"})
WORKFLOW_FIELDS = frozenset({"id", "instance_id", "name"})
_PART = re.compile(r"[A-Za-z0-9_-]+\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_TOKEN = re.compile(r"\$\$\{|\$\{")


class ExprError(ValueError):
    """A reference or condition that cannot be parsed; ``offset`` is where, 0-based."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@attrs.frozen
class Ref:
    """One ``${...}`` reference.

    Attributes:
        kind: ``var``, ``env``, ``secrets``, ``tasks``, ``workflow``, ``item`` or
            ``item_index``.
        parts: The dotted parts after the kind (for ``var``, the name and its path).
        text: The reference as written, without ``${`` and ``}``.
    """

    kind: str
    parts: tuple[str, ...]
    text: str

    def task_target(self, task_ids: Callable[[str], bool]) -> tuple[str, str, tuple[str, ...]]:
        """For ``tasks.`` refs: (task id, field, data path); ids may contain dots.

        The longest dotted prefix that names a known task wins.

        Raises:
            ExprError: No known task id prefixes the reference, or the field is unknown.
        """
        for end in range(len(self.parts) - 1, 0, -1):
            candidate = ".".join(self.parts[:end])
            if task_ids(candidate):
                field, path = self.parts[end], self.parts[end + 1:]
                if field not in TASK_FIELDS:
                    raise ExprError(
                        f"'${{{self.text}}}': tasks.{candidate} has no field {field!r} "
                        f"(use one of {', '.join(sorted(TASK_FIELDS))})"
                    )
                if path and field != "data":
                    raise ExprError(f"'${{{self.text}}}': only 'data' has sub-fields")
                return candidate, field, path
        raise ExprError(f"'${{{self.text}}}' names no task of this workflow")


def parse_ref(text: str, offset: int = 0) -> Ref:
    """Parse the inside of one ``${...}``.

    Raises:
        ExprError: The reference is not one of the accepted forms.
    """
    inner = text.strip()
    if not inner:
        raise ExprError("empty reference '${}'", offset)
    parts = tuple(inner.split("."))
    for part in parts:
        if not _PART.match(part):
            raise ExprError(
                f"invalid reference '${{{inner}}}': names use letters, digits, '_' and '-', "
                "separated by '.'", offset,
            )
    head = parts[0]
    if head in ("env", "secrets"):
        if len(parts) != 2 or not _ENV_NAME.match(parts[1]):
            raise ExprError(f"'${{{inner}}}': write ${{{head}.NAME}} with one name", offset)
        return Ref(head, parts[1:], inner)
    if head == "tasks":
        if len(parts) < 3:
            raise ExprError(
                f"'${{{inner}}}': write ${{tasks.ID.FIELD}}, FIELD one of "
                f"{', '.join(sorted(TASK_FIELDS))}", offset,
            )
        return Ref("tasks", parts[1:], inner)
    if head == "workflow":
        if len(parts) != 2 or parts[1] not in WORKFLOW_FIELDS:
            raise ExprError(
                f"'${{{inner}}}': workflow has {', '.join(sorted(WORKFLOW_FIELDS))}", offset
            )
        return Ref("workflow", parts[1:], inner)
    if head == "item_index":
        if len(parts) != 1:
            raise ExprError(f"'${{{inner}}}': item_index has no fields", offset)
        return Ref("item_index", (), inner)
    if head == "item":
        return Ref("item", parts[1:], inner)
    if not _VAR_NAME.match(head):
        raise ExprError(f"invalid variable name in '${{{inner}}}'", offset)
    return Ref("var", parts, inner)


def parse_template(text: str) -> tuple[str | Ref, ...]:
    """Split a string into literal text and references (``$${`` stays a literal ``${``).

    Raises:
        ExprError: An unclosed or malformed ``${...}``.
    """
    if "${" not in text:
        return (text,)
    out: list[str | Ref] = []
    literal: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        start = match.start()
        if start < pos:  # inside a reference already consumed
            continue
        literal.append(text[pos:start])
        if match.group() == "$${":
            literal.append("${")
            pos = match.end()
            continue
        close = text.find("}", match.end())
        if close < 0:
            raise ExprError("unclosed '${': add '}' (or write '$${' for a literal '${')", start)
        if literal and "".join(literal):
            out.append("".join(literal))
        literal = []
        out.append(parse_ref(text[match.end():close], start))
        pos = close + 1
    literal.append(text[pos:])
    if "".join(literal):
        out.append("".join(literal))
    return tuple(out)


def iter_refs(text: str) -> Iterator[Ref]:
    """Every reference in ``text``, in order."""
    for part in parse_template(text):
        if isinstance(part, Ref):
            yield part


def to_text(value: Any) -> str:
    """How a referenced value reads inside a string: JSON for structures, '' for null."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def interpolate(text: str, resolve: Callable[[Ref], Any]) -> str:
    """Replace every reference in ``text`` by ``resolve(ref)`` as text, in one pass.

    The replacement is never scanned again, so a value containing ``${...}`` stays text.
    """
    parts = parse_template(text)
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    return "".join(p if isinstance(p, str) else to_text(resolve(p)) for p in parts)
