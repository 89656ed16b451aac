"""The one cattrs converter: how model values become plain data and back.

Storage, events, ``--json`` output and ``dagflow schema`` all go through
:func:`make_converter`. Structuring is strict: unknown keys are errors, ``"3"`` is not an
int and ``yes`` is not a bool, floats are finite, and a ``type:`` tag is looked up in the
task type registry (host applications add types at run time, so a fixed ``Union`` will
not do).
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import functools
import math
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._models import (
    BUILTIN_TASK_TYPES,
    StateTransition,
    TaskDefinition,
    TaskType,
    WorkflowDefinition,
)

__all__ = [
    "definition_hash",
    "format_duration",
    "make_converter",
    "parse_duration",
    "struct_errors",
    "suggest",
]

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: object) -> dt.timedelta:
    """Read an ISO 8601 duration (``PT15M``, ``P1DT2H``) or a number of seconds.

    Raises:
        ValueError: The value is neither (the message shows the accepted forms).
    """
    if isinstance(value, bool):
        raise TypeError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"duration must be finite, got {value!r}")
        if abs(value) > 1e9:
            raise ValueError(f"duration {value!r} seconds is too large")
        return dt.timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value.strip().upper())
        if match:
            parts = {k: float(v) for k, v in match.groupdict().items() if v}
            if sum(parts.values()) > 1e9:
                raise ValueError(f"duration {value!r} is too large")
            return dt.timedelta(**parts)
        raise ValueError(
            f"invalid duration {value!r}: use ISO 8601 like 'PT30S', 'PT15M', 'PT1H30M', "
            "'P1D', or a number of seconds (years and months are not allowed)"
        )
    raise TypeError(f"expected a duration, got {_describe(value)}")


def format_duration(value: dt.timedelta) -> str:
    """Write a timedelta as ISO 8601 (``PT1H30M``); the inverse of :func:`parse_duration`.

    Exact to the microsecond: integer arithmetic, no float formatting.
    """
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = f"{sign}P{days}D" if days else f"{sign}P"
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if frac:
        time += f"{seconds}.{frac:06d}".rstrip("0") + "S"
    elif seconds or (not days and not time):
        time += f"{seconds}S"
    return out + ("T" + time if time else "")


def _describe(value: object) -> str:
    """``'a number (1.5)'``: how a wrongly typed value is named in messages."""
    kind = {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "a list", tuple: "a list", dict: "a mapping", type(None): "null",
    }.get(type(value), type(value).__name__)
    if isinstance(value, bool | int | float | str) and len(repr(value)) <= 40:
        return f"{kind} ({value!r})" if not isinstance(value, bool) else f"{kind} ({value!s})"
    return kind


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """`` (did you mean 'depends_on'?)`` when a close choice exists, else ``''``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- strict scalars


def _str(value: Any, _: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is int:  # lossless, and common in env maps and args (PORT: 8080)
        return str(value)
    hint = f"; quote it: '{value}'" if isinstance(value, float | bool) else ""
    raise TypeError(f"expected a string, got {_describe(value)}{hint}")


def _int(value: Any, _: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer() and math.isfinite(value):
        return int(value)
    raise TypeError(f"expected an integer, got {_describe(value)}")


def _float(value: Any, _: Any) -> float:
    if type(value) in (int, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return float(value)
    raise TypeError(f"expected a number, got {_describe(value)}")


def _bool(value: Any, _: Any) -> bool:
    if type(value) is bool:
        return value
    raise TypeError(f"expected true or false, got {_describe(value)}")


@functools.cache
def _enum_values(t: type[enum.Enum]) -> dict[Any, enum.Enum]:
    return {member.value: member for member in t}


def _enum_value(member: enum.Enum) -> Any:
    return member.value


def _structure_enum(value: Any, t: type[enum.Enum]) -> Any:
    values = _enum_values(t)
    try:
        return values[value]
    except (KeyError, TypeError):
        pass
    hint = suggest(value, values) if isinstance(value, str) else ""
    names = ", ".join(repr(v) for v in values)
    raise ValueError(f"{value!r} is not one of {names}{hint}")


def _datetime(value: Any, _: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise TypeError(f"expected an ISO 8601 date-time, got {_describe(value)}")


def _any(value: Any, _: Any) -> Any:
    return value


# --------------------------------------------------------------------------- containers


def _is_var_tuple(t: Any) -> bool:
    args = typing.get_args(t)
    return typing.get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_str_dict(t: Any) -> bool:
    args = typing.get_args(t)
    return typing.get_origin(t) is dict and bool(args) and args[0] is str


_ONLY_STR = frozenset({str})


def _make_tuple_hook(converter: cattrs.Converter, t: Any) -> Callable[[Any, Any], Any]:
    item_type = typing.get_args(t)[0]
    if item_type is str:
        def structure_strs(value: Any, _: Any) -> tuple[str, ...]:
            if type(value) is not list and type(value) is not tuple:
                raise TypeError(f"expected a list, got {_describe(value)}")
            if set(map(type, value)) <= _ONLY_STR:  # the common case, at C speed
                return tuple(value)
            return tuple(_collect(_str, value, str, enumerate(value)))
        return structure_strs

    item = converter.get_structure_hook(item_type)

    def structure_tuple(value: Any, _: Any) -> tuple[Any, ...]:
        if type(value) is not list and type(value) is not tuple:
            raise TypeError(f"expected a list, got {_describe(value)}")
        return tuple(_collect(item, value, item_type, enumerate(value)))

    return structure_tuple


def _make_dict_hook(converter: cattrs.Converter, t: Any) -> Callable[[Any, Any], Any]:
    value_type = typing.get_args(t)[1]
    value_hook = converter.get_structure_hook(value_type)

    def structure_dict(value: Any, _: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {_describe(value)}")
        for key in value:
            if type(key) is not str:
                raise TypeError(f"keys must be strings, got {_describe(key)}")
        if value_type is Any:
            return dict(value)
        return dict(zip(value, _collect(value_hook, value, value_type, value.items()),
                        strict=True))

    return structure_dict


def _collect(
    hook: Callable[[Any, Any], Any], container: Any, item_type: Any, pairs: Any
) -> list[Any]:
    """Structure every item, raising one IterableValidationError naming each bad index."""
    out: list[Any] = []
    errors: list[Exception] = []
    for key, raw in pairs:
        try:
            out.append(hook(raw, item_type))
        except Exception as exc:
            exc.__notes__ = [*getattr(exc, "__notes__", []), _Note(key)]
            errors.append(exc)
    if errors:
        raise IterableValidationError("invalid items", errors, type(container))
    return out


def _Note(index: int | str) -> IterableValidationNote:
    """The note cattrs attaches to a failed item, carrying its index or key."""
    return IterableValidationNote(f"item {index!r}", index, object)


# --------------------------------------------------------------------------- task types


_FastHook = tuple[frozenset[str], Callable[[Any, Any], Any]]


def _make_task_type_hooks(
    converter: cattrs.Converter, registry: Mapping[str, type[Any]]
) -> Callable[[str], tuple[type[Any], _FastHook] | None]:
    names = sorted(registry)
    by_class = {cls: name for name, cls in registry.items()}
    # per class: the keys it accepts (plus "type") and a structure function that does not
    # reject "type" as an extra key; used when a mapping has no unknown key at all
    # built on first use: generating them here would fix nested TaskType fields (a Loop's
    # task_template) before the TaskType hook below is registered
    fast_hooks: dict[type[Any], _FastHook] = {}

    def fast_hook(cls: type[Any]) -> _FastHook | None:
        got = fast_hooks.get(cls)
        if got is None and attrs.has(cls):
            got = fast_hooks[cls] = (
                frozenset(a.name for a in attrs.fields(cls)) | {"type"},
                make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=False),
            )
        return got

    def structure_task_type(value: Any, _: Any) -> Any:
        if type(value) is dict:  # the hot path: a known type and no unknown key
            name = value.get("type")
            cls = registry.get(name) if type(name) is str else None
            fast = fast_hooks.get(cls) if cls is not None else None
            if fast is not None and cls is not None and value.keys() <= fast[0]:
                return _checked_later(fast[1], value, cls)
        return structure_task_type_checked(value)

    def structure_task_type_checked(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(
                f"expected a mapping with a 'type' key (one of {', '.join(names)}), "
                f"got {_describe(value)}"
            )
        if "type" not in value:
            raise _MissingTypeKey(f"missing key 'type': name one of {', '.join(names)}")
        name = value["type"]
        cls = registry.get(name) if isinstance(name, str) else None
        if cls is None:
            exc = _UnknownTaskType(
                f"unknown task type {name!r}{suggest(str(name), names)}; "
                f"known types: {', '.join(names)}"
            )
            exc.__notes__ = [_Note("type")]
            raise IterableValidationError("invalid task type", [exc], dict)
        fast = fast_hook(cls)
        if fast is not None and value.keys() <= fast[0]:
            # no unknown key: skip copying the mapping without its "type"
            return _checked_later(fast[1], value, cls)
        rest = {k: v for k, v in value.items() if k != "type"}
        return _checked_later(converter.structure, rest, cls)

    # built on first use, for the same reason as fast_hooks: a Loop's task_template holds
    # a TaskType field whose hook must already be registered when Loop's is generated
    plain: dict[type[Any], Callable[[Any], dict[str, Any]]] = {}

    def unstructure_task_type(value: Any) -> dict[str, Any]:
        cls = type(value)
        name = by_class.get(cls) or getattr(cls, "type_name", cls.__name__)
        fields = plain.get(cls)
        if fields is None:
            fields = plain[cls] = make_dict_unstructure_fn(cls, converter)
        return {"type": name, **fields(value)}

    # a predicate, not a class: singledispatch would send the subclasses here too
    converter.register_structure_hook_func(lambda t: t is TaskType, structure_task_type)
    converter.register_unstructure_hook_func(
        lambda t: isinstance(t, type) and (t is TaskType or t in by_class),
        unstructure_task_type,
    )

    def by_name(name: str) -> tuple[type[Any], _FastHook] | None:
        cls = registry.get(name)
        fast = fast_hook(cls) if cls is not None else None
        return (cls, fast) if cls is not None and fast is not None else None

    return by_name


def _checked_later(hook: Callable[[Any, Any], Any], value: Any, cls: type[Any]) -> Any:
    """``hook(value, cls)``; when the settings hold ``${...}`` references and the class's
    own attrs validators refuse them, the object is built without its validators, which
    then run on the values the references stand for, when the task runs
    (:func:`dagflow._interp.interpolate_spec`)."""
    try:
        return hook(value, cls)
    except (ValueError, TypeError, ClassValidationError):
        if not has_reference(value):
            raise
    with attrs.validators.disabled():
        return hook(value, cls)


def has_reference(value: Any) -> bool:
    """Whether ``value`` (a string, or strings in mappings and lists) holds ``${``."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, Mapping):
        return any(has_reference(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_reference(v) for v in value)
    return False


_PLAIN_TASK_KEYS = frozenset({"id", "type", "name", "depends_on"})


def _make_task_hook(
    converter: cattrs.Converter,
    task_type_by_name: Callable[[str], tuple[type[Any], _FastHook] | None],
) -> None:
    """Tasks with only ``id``, ``type``, ``name`` and ``depends_on`` (most of a big
    generated workflow) are built directly; anything else, and anything wrong, goes
    through the generated hook, which reports every problem with its path."""
    full = make_dict_structure_fn(TaskDefinition, converter)
    fast_types: dict[str, tuple[type[Any], _FastHook] | None] = {}

    def structure_task(value: Any, cls: Any) -> TaskDefinition:
        if type(value) is dict and value.keys() <= _PLAIN_TASK_KEYS:
            try:  # any surprise (a missing key, an unhashable name) -> the full hook
                task_id = value["id"]
                name = value.get("name", task_id)
                deps = value.get("depends_on", ())
                kind = value["type"]
                type_name = kind["type"]
                fast = fast_types.get(type_name)
                if fast is None:
                    fast = fast_types[type_name] = task_type_by_name(type_name)
                if (fast is not None and type(task_id) is str and type(name) is str
                        and type(kind) is dict and kind.keys() <= fast[1][0]
                        and (deps == () or (type(deps) is list
                                            and set(map(type, deps)) <= _ONLY_STR))):
                    return TaskDefinition(task_id, fast[1][1](kind, fast[0]), name, tuple(deps))
            except Exception:
                pass
        return full(value, cls)

    converter.register_structure_hook(TaskDefinition, structure_task)


class _MissingTypeKey(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class _UnknownTaskType(ValueError):
    pass


def _structure_items(converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> str | tuple[Any, ...]:
        if type(value) is str:
            return value
        if type(value) is list or type(value) is tuple:
            return tuple(value)
        raise TypeError(
            "expected a list, a variable name or a '${...}' reference, "
            f"got {_describe(value)}"
        )

    return structure


# --------------------------------------------------------------------------- the converter


@functools.lru_cache(maxsize=16)
def _cached_converter(registry: tuple[tuple[str, type[Any]], ...]) -> cattrs.Converter:
    return _build(dict(registry))


def make_converter(task_types: Mapping[str, type[Any]] | None = None) -> cattrs.Converter:
    """Return the converter for the built-in task types plus ``task_types``.

    Converters are cached per registry, so calling this is cheap.
    """
    registry = dict(BUILTIN_TASK_TYPES)
    if task_types:
        registry.update(task_types)
    return _cached_converter(tuple(sorted(registry.items(), key=lambda kv: kv[0])))


def _build(registry: Mapping[str, type[Any]]) -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    # exact-type predicates: a class hook would also catch str/int subclasses (StrEnum)
    # cattrs dispatches classes through singledispatch first, so these replace its lax
    # defaults; StrEnum is registered too, or its str base would catch enum fields
    conv.register_structure_hook(str, _str)
    conv.register_structure_hook(int, _int)
    conv.register_structure_hook(float, _float)
    conv.register_structure_hook(bool, _bool)
    conv.register_structure_hook(enum.Enum, _structure_enum)
    conv.register_structure_hook(enum.StrEnum, _structure_enum)
    conv.register_structure_hook(typing.Any, _any)
    conv.register_unstructure_hook(enum.Enum, _enum_value)
    conv.register_unstructure_hook(enum.StrEnum, _enum_value)
    conv.register_structure_hook(dt.datetime, _datetime)
    conv.register_unstructure_hook(dt.datetime, lambda v: v.isoformat())
    conv.register_structure_hook(dt.timedelta, lambda v, _: parse_duration(v))
    conv.register_unstructure_hook(dt.timedelta, format_duration)
    conv.register_structure_hook_factory(_is_var_tuple, lambda t: _make_tuple_hook(conv, t))
    conv.register_structure_hook_factory(_is_str_dict, lambda t: _make_dict_hook(conv, t))
    conv.register_unstructure_hook_factory(
        _is_var_tuple, lambda t: lambda v: [conv.unstructure(i) for i in v]
    )
    conv.register_structure_hook(str | tuple[typing.Any, ...], _structure_items(conv))
    task_type_by_name = _make_task_type_hooks(conv, registry)
    _make_task_hook(conv, task_type_by_name)
    # where a definition was loaded from is not part of it: never written, never read
    internal = override(omit=True)
    conv.register_structure_hook(
        WorkflowDefinition,
        make_dict_structure_fn(WorkflowDefinition, conv, source_path=internal),
    )
    conv.register_unstructure_hook(
        WorkflowDefinition,
        make_dict_unstructure_fn(WorkflowDefinition, conv, source_path=internal),
    )
    # the seed serialises StateTransition with "from"/"to"
    frm, to = override(rename="from"), override(rename="to")
    conv.register_structure_hook(
        StateTransition,
        make_dict_structure_fn(StateTransition, conv, from_state=frm, to_state=to),
    )
    conv.register_unstructure_hook(
        StateTransition,
        make_dict_unstructure_fn(StateTransition, conv, from_state=frm, to_state=to),
    )
    return conv


def definition_hash(definition: WorkflowDefinition) -> str:
    """SHA-256 of the definition's canonical JSON (computed once per definition value)."""
    got: str | None = definition._derived.get("hash")
    if got is None:
        import hashlib
        import json

        data = make_converter().unstructure(definition)
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        got = definition._derived["hash"] = hashlib.sha256(text.encode()).hexdigest()
    return got


def struct_errors(
    exc: BaseException, path: tuple[str | int, ...] = ()
) -> list[tuple[tuple[str | int, ...], str, str]]:
    """Flatten a cattrs error tree into ``(path, kind, message)`` triples.

    ``kind`` is ``"unknown"`` for a forbidden extra key (the path then ends with the key),
    ``"missing"`` for a required key, ``"value"`` for a well-typed but wrong value (a bad
    duration, an unknown task type or enum value) and ``"type"`` otherwise.
    """
    out: list[tuple[tuple[str | int, ...], str, str]] = []
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            key = getattr(note, "name", None)
            if key is None:
                key = getattr(note, "index", None)
            out.extend(struct_errors(sub, (*path, key) if key is not None else path))
        for sub in without:
            out.extend(struct_errors(sub, path))
        return out
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        return [((*path, key), "unknown", f"unknown key {key!r}{suggest(key, allowed)}")
                for key in sorted(exc.extra_fields)]
    if isinstance(exc, KeyError) and not isinstance(exc, _MissingTypeKey):
        name = path[-1] if path else "?"
        return [(path, "missing", f"missing required key {name!r}")]
    if isinstance(exc, _MissingTypeKey):
        return [(path, "missing", str(exc))]
    # a wrong value (bad duration, unknown enum value) is well-formed but wrong
    return [(path, "value" if isinstance(exc, ValueError) else "type", exception_message(exc))]


def exception_message(exc: BaseException) -> str:
    """What an exception says: attrs' own validators raise with the message first and
    the attribute, the rule and the value after it, which ``str()`` would all show."""
    if len(exc.args) > 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)
