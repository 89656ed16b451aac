"""The JSON Schema (Draft 2020-12) of workflow files, generated from the model.

Field types, defaults, ranges and id patterns all come from the attrs classes and their
field metadata, so the schema and the parser cannot drift apart. Editors use it for
completion and inline errors (see docs/editor-support.md).
"""

from __future__ import annotations

import datetime as dt
import enum
import inspect
import json
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from ._models import BUILTIN_TASK_TYPES, TaskType, WorkflowDefinition

__all__ = ["SCHEMA_ID", "json_schema"]

SCHEMA_ID = "https://dagflow.dev/schema/workflow.schema.json"
DURATION_PATTERN = (
    r"^\s*[Pp](?!\s*$)(\d+(\.\d+)?[Ww])?(\d+(\.\d+)?[Dd])?"
    r"([Tt](?=\d)(\d+(\.\d+)?[Hh])?(\d+(\.\d+)?[Mm])?(\d+(\.\d+)?[Ss])?)?\s*$"
)
NON_BLANK = r"\S"


def json_schema(task_types: Mapping[str, type[Any]] | None = None) -> dict[str, Any]:
    """The JSON Schema of workflow files, including any custom ``task_types``.

    Returns:
        A JSON-serialisable dict; ``dagflow schema`` prints it.
    """
    registry = dict(BUILTIN_TASK_TYPES)
    registry.update(task_types or {})
    gen = _Generator(registry)
    root = gen.schema_for(WorkflowDefinition)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "dagflow workflow",
        "description": "A dagflow workflow file (YAML or JSON).",
        **root,
        "$defs": gen.defs,
    }


def _doc(cls: type[Any]) -> str:
    return (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")


class _Generator:
    def __init__(self, registry: Mapping[str, type[Any]]) -> None:
        self.registry = registry
        self.defs: dict[str, Any] = {}

    def schema_for(self, tp: Any, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        meta = meta or {}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any or tp is object:
            return {}
        if tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer", **_numeric(meta)}
        if tp is float:
            return {"type": "number", **_numeric(meta)}
        if tp is str:
            # integers are accepted where text is expected (PORT: 8080); see _serde._str
            out: dict[str, Any] = {"type": ["string", "integer"]}
            if "pattern" in meta:
                out = {"type": ["string", "integer"], "pattern": meta["pattern"]}
            elif "min_length" in meta:
                out = {"type": ["string", "integer"], "pattern": NON_BLANK}
            if "enum" in meta:
                out = {"enum": list(meta["enum"])}
            return out
        if tp is dt.timedelta:
            return {
                "description": "ISO 8601 duration (PT15M, PT1H30M, P1D) or seconds",
                "anyOf": [
                    {"type": "string", "pattern": DURATION_PATTERN},
                    {"type": "number", **_numeric(meta)},
                ],
            }
        if tp is dt.datetime:
            return {"type": "string", "format": "date-time"}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"enum": [m.value for m in tp]}
        if tp is TaskType:
            return self._task_type()
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            out = {"type": "array", "items": self.schema_for(args[0])}
            if "min_items" in meta:
                out["minItems"] = meta["min_items"]
            return out
        if origin is dict:
            return {"type": "object", "additionalProperties": self.schema_for(args[1])}
        if origin in (typing.Union, _UnionType):
            options = [self.schema_for(a, meta) for a in args]
            if len(options) == 2 and {"type": "null"} in options:
                other = next(o for o in options if o != {"type": "null"})
                if list(other) == ["$ref"]:
                    return {"anyOf": [other, {"type": "null"}]}
            return {"anyOf": options}
        if attrs.has(tp):
            return {"$ref": f"#/$defs/{self._define(tp)}"}
        raise TypeError(f"no JSON Schema for {tp!r}")  # pragma: no cover - a model bug

    def _define(self, cls: type[Any], tag: str | None = None) -> str:
        name = tag or cls.__name__
        if name in self.defs:
            return name
        self.defs[name] = {}  # placeholder, so recursive types terminate
        hints = typing.get_type_hints(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        if tag is not None:
            properties["type"] = {"const": tag}
            required.append("type")
        for field in attrs.fields(cls):
            if field.metadata.get("internal") or not field.init:
                continue  # not part of the file format
            prop = self.schema_for(hints[field.name], field.metadata)
            if field.default is attrs.NOTHING:
                required.append(field.name)
            else:
                default = _default(field)
                if default is not _UNSHOWN:
                    prop = {**prop, "default": default}
            properties[field.name] = prop
        self.defs[name] = {
            "type": "object",
            "description": _doc(cls),
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }
        return name

    def _task_type(self) -> dict[str, Any]:
        if "TaskType" not in self.defs:
            self.defs["TaskType"] = {}
            options = [
                {"$ref": f"#/$defs/{self._define(cls, tag=name)}"}
                for name, cls in sorted(self.registry.items())
            ]
            self.defs["TaskType"] = {
                "description": "A task type: 'type' names the variant, the other keys are "
                "its fields.",
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": sorted(self.registry)}},
                "oneOf": options,
            }
        return {"$ref": "#/$defs/TaskType"}


_UnionType = type(int | None)


def _numeric(meta: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for ours, theirs in (("minimum", "minimum"), ("maximum", "maximum"),
                         ("exclusive_minimum", "exclusiveMinimum")):
        if ours in meta:
            out[theirs] = meta[ours]
    return out


_UNSHOWN = object()


def _default(field: attrs.Attribute[Any]) -> Any:
    """A field's default as JSON, or ``_UNSHOWN`` (``name`` defaults to the ``id``)."""
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        assert default is not None
        if default.takes_self:
            return _UNSHOWN
        default = default.factory()
    if attrs.has(type(default)):
        from ._serde import make_converter

        return make_converter().unstructure(default)
    if isinstance(default, enum.Enum):
        return default.value
    if isinstance(default, tuple):
        return list(default)
    if isinstance(default, str | int | float | bool | dict | list) or default is None:
        return default
    return _UNSHOWN


def markdown_reference(task_types: Mapping[str, type[Any]] | None = None) -> str:
    """The field reference of the file format as Markdown, generated from the schema.

    ``docs/reference.md`` is this text; a test keeps the two equal, and
    ``python -m dagflow._schema > docs/reference.md`` regenerates it.
    """
    schema = json_schema(task_types)
    defs = schema["$defs"]
    lines = [
        "# Workflow file reference",
        "",
        "<!-- generated by `python -m dagflow._schema > docs/reference.md`; do not edit -->",
        "",
        "Every key of a workflow file, its type, default and allowed values. Keys not",
        "listed are errors. Durations are ISO 8601 (`PT15M`) or seconds.",
        "",
    ]
    order = ["WorkflowDefinition", "WorkflowConfig", "NotificationConfig", "TaskDefinition",
             "TaskConfig", "RetryPolicy"]
    order += sorted(name for name in defs if name not in order and name != "TaskType")
    for name in order:
        spec = defs[name]
        title = "Task type `" + name + "`" if "type" in spec["properties"] and \
            "const" in spec["properties"]["type"] else "`" + name + "`"
        lines += [f"## {title}", "", spec.get("description", ""), "",
                  "| key | type | default | rules |", "| --- | --- | --- | --- |"]
        required = set(spec.get("required", ()))
        for key, prop in spec["properties"].items():
            if "const" in prop:
                lines.append(f"| `{key}` | `\"{prop['const']}\"` | required | |")
                continue
            default = "required" if key in required else (
                f"`{json.dumps(prop['default'])}`" if "default" in prop else "see below")
            if "$ref" in prop and isinstance(prop.get("default"), dict):
                default = "its defaults"
            if key == "name":
                default = "the `id`"
            lines.append(f"| `{key}` | {_type_name(prop)} | {default} | {_rules(prop)} |")
        lines.append("")
    return "\n".join(lines)


def _type_name(prop: Mapping[str, Any]) -> str:
    if "$ref" in prop:
        target = prop["$ref"].rsplit("/", 1)[-1]
        return "task type" if target == "TaskType" else f"`{target}`"
    if "anyOf" in prop:
        if any("pattern" in p and p.get("type") == "string" for p in prop["anyOf"]) and \
                any(p.get("type") == "number" for p in prop["anyOf"]):
            return "duration"
        return " or ".join(_type_name(p) for p in prop["anyOf"])
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type_name(prop['items'])}"
    if kind == "object":
        return f"mapping to {_type_name(prop.get('additionalProperties', {}))}"
    if isinstance(kind, list):
        return "text" if "string" in kind else "/".join(kind)
    names = {"string": "text", "integer": "integer", "number": "number",
             "boolean": "boolean", "null": "null", "any": "any value"}
    return names.get(str(kind), str(kind))


def _options(prop: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out = [prop]
    for option in prop.get("anyOf", ()):
        out += _options(option)
    return out


def _rules(prop: Mapping[str, Any]) -> str:
    out = []
    for option in _options(prop):
        for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<=")):
            if key in option:
                out.append(f"{word} {option[key]}")
        if "minItems" in option:
            out.append(f"at least {option['minItems']} item")
        if option.get("pattern") == NON_BLANK:
            out.append("not blank")
        elif "pattern" in option and option.get("pattern") != DURATION_PATTERN:
            out.append("an id: ASCII letters, digits, `-` `_` `.`, not starting with `-`/`.`")
    return "; ".join(dict.fromkeys(out))


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown_reference())
