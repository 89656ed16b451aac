"""The sandboxed condition language: a recursive-descent parser over a whitelisted grammar.

Never Python ``eval``: there are no names but ``${...}`` references, no attribute access,
no calls, no subscripts. ::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") operand)?
    operand := ${ref} | 'string' | "string" | number | true | false | null
             | "[" [operand ("," operand)*] "]" | "(" expr ")"

A ``${...}`` stands for the referenced value itself (a number stays a number), and that
value is never parsed again. Comparing unlike types with ``<`` is an error, not ``False``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from ._refs import ExprError, Ref, parse_ref

__all__ = ["Condition", "parse_condition"]

MAX_LENGTH = 4096
MAX_DEPTH = 32
MAX_TOKENS = 256

_TOKENS = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<ref>\$\{[^}]*\})
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<num>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_WORDS = {"and", "or", "not", "in", "true", "false", "null"}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


@attrs.frozen
class _Tok:
    kind: str
    value: Any
    offset: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKENS.match(text, pos)
        if match is None:
            raise ExprError(f"unexpected character {text[pos]!r} in condition", pos)
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "ref":
            tokens.append(_Tok("ref", parse_ref(raw[2:-1], pos), pos))
        elif kind == "str":
            body = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), raw[1:-1])
            tokens.append(_Tok("lit", body, pos))
        elif kind == "num":
            number: float | int = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(_Tok("lit", number, pos))
        elif kind == "word":
            if raw not in _WORDS:
                hint = (f" (write ${{{raw}}} to use a variable)" if raw not in
                        {"True", "False", "None"} else f" (write {raw.lower()})")
                raise ExprError(f"unknown name {raw!r} in condition{hint}", pos)
            if raw in ("true", "false", "null"):
                tokens.append(_Tok("lit", {"true": True, "false": False, "null": None}[raw], pos))
            else:
                tokens.append(_Tok("op", raw, pos))
        elif kind == "op":
            tokens.append(_Tok("op", raw, pos))
        pos = match.end()
        if len(tokens) > MAX_TOKENS:
            raise ExprError(f"condition has more than {MAX_TOKENS} tokens", pos)
    return tokens


# An AST node is a tuple: ("lit", v) ("ref", Ref) ("list", [..]) ("not", a)
# ("and", a, b) ("or", a, b) ("cmp", op, a, b)
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, tokens: list[_Tok], length: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.length = length

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next_is(self, *values: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "op" and tok.value in values

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ExprError("condition ends too early", self.length)
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        tok = self.peek()
        if tok is None or tok.kind != "op" or tok.value != value:
            where = tok.offset if tok else self.length
            raise ExprError(f"expected {value!r} in condition", where)
        self.i += 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            tok = self.peek()
            raise ExprError(f"condition nests deeper than {MAX_DEPTH} levels",
                            tok.offset if tok else self.length)

    def parse_or(self) -> Node:
        self.enter()
        node = self.parse_and()
        while self.next_is("or"):
            self.i += 1
            node = ("or", node, self.parse_and())
        self.depth -= 1
        return node

    def parse_and(self) -> Node:
        node = self.parse_not()
        while self.next_is("and"):
            self.i += 1
            node = ("and", node, self.parse_not())
        return node

    def parse_not(self) -> Node:
        if self.next_is("not"):
            self.i += 1
            self.enter()
            node = ("not", self.parse_not())
            self.depth -= 1
            return node
        return self.parse_compare()

    def parse_compare(self) -> Node:
        left = self.parse_operand()
        tok = self.peek()
        if tok is not None and tok.kind == "op":
            if tok.value in ("==", "!=", "<", "<=", ">", ">=", "in"):
                self.i += 1
                return ("cmp", tok.value, left, self.parse_operand())
            if tok.value == "not":
                nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
                if nxt is not None and nxt.kind == "op" and nxt.value == "in":
                    self.i += 2
                    return ("cmp", "not in", left, self.parse_operand())
        return left

    def parse_operand(self) -> Node:
        tok = self.take()
        if tok.kind == "lit":
            return ("lit", tok.value)
        if tok.kind == "ref":
            return ("ref", tok.value)
        if tok.value == "(":
            node = self.parse_or()
            self.expect(")")
            return node
        if tok.value == "[":
            self.enter()
            items: list[Node] = []
            if not self.next_is("]"):
                items.append(self.parse_operand())
                while self.next_is(","):
                    self.i += 1
                    items.append(self.parse_operand())
            self.expect("]")
            self.depth -= 1
            return ("list", items)
        raise ExprError(f"unexpected {tok.value!r} in condition", tok.offset)


@attrs.frozen
class Condition:
    """A parsed condition; :meth:`evaluate` gives its truth for given reference values."""

    text: str
    tree: Node = attrs.field(repr=False)
    refs: tuple[Ref, ...] = attrs.field(repr=False)

    def evaluate(self, resolve: Callable[[Ref], Any]) -> bool:
        """Evaluate with ``resolve`` supplying each reference's value.

        Raises:
            ExprError: Unlike types compared with an ordering operator, or ``in`` on a
                value that is not a list, string or mapping.
        """
        return bool(_eval(self.tree, resolve))


def _eval(node: Node, resolve: Callable[[Ref], Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ref":
        return resolve(node[1])
    if kind == "list":
        return [_eval(item, resolve) for item in node[1]]
    if kind == "not":
        return not _eval(node[1], resolve)
    if kind == "and":
        return bool(_eval(node[1], resolve)) and bool(_eval(node[2], resolve))
    if kind == "or":
        return bool(_eval(node[1], resolve)) or bool(_eval(node[2], resolve))
    op, left, right = node[1], _eval(node[2], resolve), _eval(node[3], resolve)
    return _compare(op, left, right)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op in ("in", "not in"):
        if isinstance(right, str):
            if not isinstance(left, str):
                raise ExprError(f"'{op}' a string needs a string on the left, got {left!r}")
            found = left in right
        elif isinstance(right, list | dict):
            found = any(_equal(left, r) for r in right)
        else:
            raise ExprError(f"'{op}' needs a list, string or mapping on the right, got {right!r}")
        return found if op == "in" else not found
    numbers = (int, float)
    ok = (isinstance(left, numbers) and isinstance(right, numbers)
          and not isinstance(left, bool) and not isinstance(right, bool)) or (
        isinstance(left, str) and isinstance(right, str))
    if not ok:
        raise ExprError(f"cannot compare {left!r} {op} {right!r}: both sides must be numbers "
                        "or both strings")
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def _equal(left: Any, right: Any) -> bool:
    """``1 == true`` is false here (unlike Python), also inside lists and mappings;
    ``1 == 1.0`` is true."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_equal(v, right[k]) for k, v in left.items())
    return bool(left == right)


def _collect_refs(node: Node, out: list[Ref]) -> None:
    kind = node[0]
    if kind == "ref":
        out.append(node[1])
    elif kind == "list":
        for item in node[1]:
            _collect_refs(item, out)
    elif kind in ("not",):
        _collect_refs(node[1], out)
    elif kind in ("and", "or"):
        _collect_refs(node[1], out)
        _collect_refs(node[2], out)
    elif kind == "cmp":
        _collect_refs(node[2], out)
        _collect_refs(node[3], out)


def parse_condition(text: str) -> Condition:
    """Parse a condition string.

    Raises:
        ExprError: With the 0-based offset of the problem in ``text``.
    """
    if len(text) > MAX_LENGTH:
        raise ExprError(f"condition longer than {MAX_LENGTH} characters", MAX_LENGTH)
    tokens = _tokenize(text)
    if not tokens:
        raise ExprError("empty condition", 0)
    parser = _Parser(tokens, len(text))
    tree = parser.parse_or()
    if parser.i != len(tokens):
        tok = tokens[parser.i]
        raise ExprError(f"unexpected {tok.value!r} in condition (missing 'and'/'or'?)",
                        tok.offset)
    refs: list[Ref] = []
    _collect_refs(tree, refs)
    return Condition(text, tree, tuple(refs))
