"""Text -> plain data, safely: size, depth, alias, tag and duplicate-key limits.

YAML goes through ruamel's event parser (its C extension when installed) and a small
non-recursive builder, so that alias bombs, explicit tags and deep nesting are refused
before any value is built. Valid files take the fast path, which records no positions;
when there is a problem to report the text is parsed again with positions recorded, so
every message can say ``file:line:col``. JSON uses the stdlib decoder with duplicate keys
and NaN refused; its positions are recovered by the same YAML builder (JSON is YAML 1.2).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import attrs
from ruamel.yaml import events as _ev
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .._errors import ParseError, Problem

__all__ = ["ParseLimits", "Positions", "load_data"]


@attrs.frozen
class ParseLimits:
    """Bounds on what a workflow file may contain; raise them for very large workflows.

    Attributes:
        max_bytes: Largest accepted file, checked before decoding (32 MiB: a 100,000-task
            JSON file is about 12 MiB).
        max_depth: Deepest nesting of mappings and lists.
        max_tasks: Most tasks in one workflow.
        max_string_length: Longest single string value, in characters.
        max_pure_fallback_bytes: The C parser (libyaml) refuses a few valid YAML 1.2
            forms, such as ``{url: https://x}`` in flow style; files up to this size
            that it refuses are read again by ruamel's pure-Python parser (about 8 s per
            MB), which decides. Larger files get the C parser's verdict.
    """

    max_bytes: int = 32 * 1024 * 1024
    max_depth: int = 64
    max_tasks: int = 200_000
    max_string_length: int = 1_000_000
    max_pure_fallback_bytes: int = 1024 * 1024


DEFAULT_LIMITS = ParseLimits()

Path = tuple[str | int, ...]

# --------------------------------------------------------------------------- positions


@attrs.define
class Positions:
    """Line and column of every key and item of a parsed document (1-based).

    Built only when a problem needs reporting; maps ``id(container)`` to the positions
    of its keys (mappings) or items (lists).
    """

    root: Any = None
    keys: dict[int, dict[str, tuple[int, int]]] = attrs.Factory(dict)
    values: dict[int, dict[Any, tuple[int, int]]] = attrs.Factory(dict)

    def locate(self, path: Path, *, key: bool = False) -> tuple[int, int] | None:
        """Where the value at ``path`` is (or its key, with ``key=True``).

        A path that goes further than the document (a missing key) gives the position
        of the deepest container it reaches.
        """
        node = self.root
        where: tuple[int, int] | None = self.values.get(0, {}).get(0)
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, dict) and isinstance(part, str) and part in node:
                found = self.keys.get(id(node), {}).get(part) if (key and last) else None
                where = found or self.values.get(id(node), {}).get(part, where)
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                where = self.values.get(id(node), {}).get(part, where)
                node = node[part]
            else:
                break
        return where


# --------------------------------------------------------------------------- YAML

try:  # ruamel's C event parser: same events as the pure one, about 20x faster
    from _ruamel_yaml_clibz import CParser as _CParser
except ImportError:  # pragma: no cover - depends on the platform's wheels
    try:
        from _ruamel_yaml import CParser as _CParser
    except ImportError:
        _CParser = None

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False,
          "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+\Z")
_INT_OCT = re.compile(r"0o[0-7]+\Z")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(?:inf|Inf|INF)\Z|\.(?:nan|NaN|NAN)\Z")
_MAYBE_NUMBER = frozenset("0123456789+-.")


class _Fail(Exception):
    """A problem found while building, with its 0-based mark."""

    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def _resolve_plain(value: str, mark: Any) -> Any:
    """YAML 1.2 core schema for a plain (unquoted) scalar."""
    if value in _NULLS:
        return None
    if value[0] not in _MAYBE_NUMBER:
        return _BOOLS.get(value, value)
    try:
        if _INT.match(value):
            return int(value)
        if _INT_OCT.match(value):
            return int(value[2:], 8)
        if _INT_HEX.match(value):
            return int(value[2:], 16)
    except ValueError:  # more digits than int() converts (CVE-2020-10735's limit)
        raise _Fail("integer has too many digits", mark) from None
    if _FLOAT.match(value):
        if value in ("+", "-", "."):
            return value
        number = float(value)
        if not math.isfinite(number):
            raise _Fail(f"number {value} is too large", mark)
        return number
    if _SPECIAL_FLOAT.match(value):
        raise _Fail(f"{value} is not allowed: numbers must be finite", mark)
    return value


def _events(text: str, pure: bool = False) -> Iterator[Any]:
    if _CParser is not None and not pure:
        parser = _CParser(text)
        get = parser.get_event
        while True:
            event = get()
            yield event
            if type(event) is _ev.StreamEndEvent:
                return
    else:  # pragma: no cover - only without the C extension
        from ruamel.yaml import YAML

        yield from YAML(typ="rt", pure=True).parse(text)


class _Map:
    """A mapping under construction: its dict and the key waiting for a value."""

    __slots__ = ("d", "key", "key_mark")

    def __init__(self, d: dict[str, Any]) -> None:
        self.d = d
        self.key: str | None = None
        self.key_mark: Any = None


def _build_yaml(text: str, limits: ParseLimits, track: Positions | None,
                pure: bool = False) -> Any:
    """Events -> dicts/lists/scalars, refusing what a workflow file never needs."""
    stack: list[Any] = []  # _Map or list
    root: Any = None
    have_root = False
    documents = 0
    max_depth = limits.max_depth
    max_str = limits.max_string_length
    scalar_t, map_t, seq_t = _ev.ScalarEvent, _ev.MappingStartEvent, _ev.SequenceStartEvent
    end_t = (_ev.MappingEndEvent, _ev.SequenceEndEvent)

    for event in _events(text, pure):
        cls = type(event)
        if cls is scalar_t or cls is map_t or cls is seq_t:
            if event.anchor is not None:
                raise _Fail(
                    f"anchors (&{event.anchor}) are not allowed in workflow files",
                    event.start_mark,
                )
            if cls is scalar_t:
                tag = event.tag
                if tag is not None and tag != "!":
                    raise _Fail(f"YAML tags are not allowed (found {tag})", event.start_mark)
                raw = event.value
                if len(raw) > max_str:
                    raise _Fail(f"string longer than {max_str} characters", event.start_mark)
                # plain (unquoted) scalars are typed by the YAML 1.2 core schema
                value = raw if event.style else _resolve_plain(raw, event.start_mark)
                new: Any = None
            else:
                if event.tag is not None:
                    raise _Fail(
                        f"YAML tags are not allowed (found {event.tag})", event.start_mark
                    )
                if len(stack) >= max_depth:
                    raise _Fail(f"nesting deeper than {max_depth} levels", event.start_mark)
                value = new = {} if cls is map_t else []
            # attach the value to its parent
            if stack:
                top = stack[-1]
                if type(top) is list:
                    if track is not None:
                        track.values.setdefault(id(top), {})[len(top)] = _pos(event.start_mark)
                    top.append(value)
                elif top.key is None:  # this node is a key
                    if new is not None:
                        raise _Fail("mapping keys must be strings, not lists or mappings",
                                    event.start_mark)
                    if type(value) is not str:
                        raise _Fail(
                            f"mapping keys must be strings; quote the key '{raw}'",
                            event.start_mark,
                        )
                    if value in top.d:
                        raise _Fail(f"duplicate key {value!r}", event.start_mark)
                    top.key = value
                    top.key_mark = event.start_mark
                else:
                    top.d[top.key] = value
                    if track is not None:
                        node = id(top.d)
                        track.keys.setdefault(node, {})[top.key] = _pos(top.key_mark)
                        track.values.setdefault(node, {})[top.key] = _pos(event.start_mark)
                    top.key = None
            else:
                if have_root:
                    raise _Fail("expected a single document", event.start_mark)
                root, have_root = value, True
                if track is not None:
                    track.root = value
                    track.values[0] = {0: _pos(event.start_mark)}
            if new is not None:
                stack.append(_Map(new) if cls is map_t else new)
        elif cls in end_t:
            stack.pop()
        elif cls is _ev.AliasEvent:
            raise _Fail(
                f"aliases (*{event.anchor}) are not allowed in workflow files",
                event.start_mark,
            )
        elif cls is _ev.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _Fail("expected a single document, found another one",
                            event.start_mark)
            version = getattr(event, "version", None)
            if version is not None and tuple(version) != (1, 2):
                raise _Fail(
                    f"%YAML {'.'.join(map(str, version))} is not supported; "
                    "dagflow reads YAML 1.2",
                    event.start_mark,
                )
            if getattr(event, "tags", None):
                raise _Fail("%TAG directives are not allowed", event.start_mark)
    return root


def _build_text(text: str, limits: ParseLimits, track: Positions | None) -> Any:
    """:func:`_build_yaml` with the C parser, and the pure one where they disagree."""
    try:
        return _build_yaml(text, limits, track)
    except MarkedYAMLError as exc:
        if _CParser is None or len(text) > limits.max_pure_fallback_bytes:
            raise
        c_error = exc
    # libyaml follows YAML 1.1 in places (':' inside flow scalars): the pure parser is
    # the reference for YAML 1.2; when it fails too, libyaml's message is the clearer one
    if track is not None:
        track.keys.clear()
        track.values.clear()
    try:
        return _build_yaml(text, limits, track, pure=True)
    except MarkedYAMLError:
        raise c_error from None


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


# --------------------------------------------------------------------------- JSON

_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # cheap; the exact check is slow
_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed: numbers must be finite")


def _load_json(text: str, filename: str | None, limits: ParseLimits) -> Any:
    bad = _LONE_SURROGATE.search(text) if _MAYBE_SURROGATE.search(text) else None
    if bad:
        raise _problem_at(text, bad.start(), "lone surrogate escape in a string", filename)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise ParseError(
            [Problem(f"invalid JSON: {exc.msg}", filename, exc.lineno, exc.colno)]
        ) from None
    except _DuplicateKey as exc:
        where = relocate(text, limits, filename)
        message = f"duplicate key {exc.args[0]!r}"
        raise ParseError([where or Problem(message, filename)]) from None
    except RecursionError:
        where = relocate(text, limits, filename)
        message = f"nesting deeper than {limits.max_depth} levels"
        raise ParseError([where or Problem(message, filename)]) from None
    except ValueError as exc:  # NaN/Infinity, or an integer with too many digits
        for token in _BAD_TOKEN.finditer(text):
            constant = token.group(1)
            if constant:
                what = (f"{constant} is not allowed: numbers must be finite"
                        if constant[-1] in "Ny" else "integer has too many digits")
                raise _problem_at(text, token.start(1), what, filename) from None
        raise ParseError([Problem(f"invalid JSON: {exc}", filename)]) from None


# strings are matched whole so that a "NaN" inside one is skipped; group 1 is a bare
# constant or a number with more digits than int() converts
_BAD_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN|-?\d{4300,})')


def relocate(text: str, limits: ParseLimits, filename: str | None) -> Problem | None:
    """Find a JSON problem's line by reading the text as YAML (JSON is YAML 1.2)."""
    try:
        _build_yaml(text, limits, Positions())
    except _Fail as exc:
        if exc.mark is not None:
            return Problem(exc.message, filename, exc.mark.line + 1, exc.mark.column + 1)
    except YAMLError:
        return None
    return None


# --------------------------------------------------------------------------- entry point


def _problem_at(text: str, index: int, message: str, filename: str | None) -> ParseError:
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return ParseError([Problem(message, filename, line, col)])


def decode(data: bytes | str, filename: str | None, limits: ParseLimits) -> str:
    """Bytes -> text: size limit first, strict UTF-8, one BOM dropped, no control chars."""
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    if size > limits.max_bytes:
        raise ParseError([Problem(
            f"document is {size} bytes, over the limit of {limits.max_bytes} "
            "(raise ParseLimits.max_bytes to allow it)", filename,
        )])
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise ParseError([Problem(
                f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                filename, line,
            )]) from None
    else:
        text = data
    if text.startswith("\ufeff"):
        text = text[1:]
    # control characters need no scan here: both parsers refuse them with a position
    if not isinstance(data, bytes):  # decoded bytes cannot hold a lone surrogate
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _problem_at(text, exc.start, "lone surrogate character", filename) from None
    return text


def load_data(
    data: bytes | str,
    *,
    format: str,
    filename: str | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> tuple[Any, str]:
    """Parse ``data`` into plain dicts/lists/scalars; return them and the decoded text.

    Raises:
        ParseError: With every position known, for anything that is not a safe,
            single, well-formed document.
    """
    text = decode(data, filename, limits)
    if not text.strip() or (format != "json" and _only_comments(text)):
        raise ParseError([Problem("empty document: a workflow needs 'id' and 'tasks'",
                                  filename, 1, 1)])
    if format == "json":
        return _load_json(text, filename, limits), text
    try:
        return _build_text(text, limits, None), text
    except _Fail as exc:
        mark = exc.mark
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        raise ParseError([Problem(exc.message, filename, line, col)]) from None
    except MarkedYAMLError as exc:
        raise ParseError([_yaml_problem(exc, filename, text)]) from None

    except YAMLError as exc:  # ReaderError: has a character position, not a line
        position = getattr(exc, "position", None)
        message = f"invalid YAML: {getattr(exc, 'reason', None) or exc}"
        if isinstance(position, int):
            raise _problem_at(text, position, message, filename) from None
        raise ParseError([Problem(message, filename)]) from None
    except RecursionError:
        raise ParseError([Problem(f"nesting deeper than {limits.max_depth} levels",
                                  filename)]) from None


def positions_for(text: str, limits: ParseLimits) -> Positions | None:
    """Parse ``text`` again, recording where every key and value is."""
    track = Positions()
    try:
        _build_text(text, limits, track)
    except (_Fail, YAMLError, RecursionError):
        return None
    return track


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _yaml_problem(exc: MarkedYAMLError, filename: str | None, text: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    index = getattr(mark, "index", None)
    if isinstance(index, int) and 0 <= index < len(text) and text[index] == "\t":
        problem = "found a tab: YAML indentation must use spaces, not tabs"
        return Problem(problem, filename, mark.line + 1, mark.column + 1)
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        problem = f"{problem} ({exc.context} at line {exc.context_mark.line + 1})"
    elif exc.context:
        problem = f"{problem} ({exc.context})"
    if mark is None:
        return Problem(f"invalid YAML: {problem}", filename)
    return Problem(f"invalid YAML: {problem}", filename, mark.line + 1, mark.column + 1)
