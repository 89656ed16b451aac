"""``${...}`` references, single-pass interpolation and the sandboxed condition language."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagflow._expr import (
    TASK_FIELDS,
    Condition,
    ExprError,
    Ref,
    interpolate,
    iter_refs,
    parse_condition,
    parse_ref,
    parse_template,
)


def resolver(values: dict[str, Any]) -> Callable[[Ref], Any]:
    """A resolve callback looking a reference up by its text (``"tasks.a.exit_code"``)."""
    return lambda ref: values[ref.text]


def fail_resolve(ref: Ref) -> Any:
    raise AssertionError(f"resolve must not be called, got {ref.text}")


def evaluate(text: str, **values: Any) -> bool:
    return parse_condition(text).evaluate(resolver(values))


# --------------------------------------------------------------------------- templates


def test_plain_text_is_one_literal() -> None:
    """A string without ``${`` parses to itself."""
    assert parse_template("kubectl apply -f x.yaml $HOME {}") == (
        "kubectl apply -f x.yaml $HOME {}",
    )


def test_literal_text_and_several_refs_keep_their_order() -> None:
    """Literal text and references alternate in the order they are written."""
    parts = parse_template("app:${image_tag} in ${env.HOME}!")
    assert parts == (
        "app:",
        Ref("var", ("image_tag",), "image_tag"),
        " in ",
        Ref("env", ("HOME",), "env.HOME"),
        "!",
    )


def test_adjacent_refs_have_no_empty_literal_between_them() -> None:
    """``${a}${b}`` is two references and nothing else."""
    assert parse_template("${a}${b}") == (
        Ref("var", ("a",), "a"),
        Ref("var", ("b",), "b"),
    )


def test_double_dollar_escapes_a_literal_reference() -> None:
    """``$${x}`` is the literal text ``${x}``, not a reference."""
    assert parse_template("$${x}") == ("${x}",)
    assert parse_template("a$${b}${c}") == ("a${b}", Ref("var", ("c",), "c"))
    assert list(iter_refs("echo $${HOME} and ${USER}")) == [Ref("var", ("USER",), "USER")]


def test_spaces_inside_a_reference_are_ignored() -> None:
    """``${ x }`` is the variable ``x``."""
    assert parse_template("${ x }") == (Ref("var", ("x",), "x"),)


def test_unclosed_reference_is_an_error_at_its_start() -> None:
    """An unclosed ``${`` is an ExprError whose offset points at the ``$``."""
    with pytest.raises(ExprError, match="unclosed") as info:
        parse_template("abc ${x")
    assert info.value.offset == 4


@pytest.mark.parametrize("text", ["${}", "${ }", "a ${} b"])
def test_empty_reference_is_an_error(text: str) -> None:
    """``${}`` names nothing and is refused."""
    with pytest.raises(ExprError, match="empty"):
        parse_template(text)


@pytest.mark.parametrize(
    ("inner", "kind", "parts"),
    [
        ("namespace", "var", ("namespace",)),
        ("config.db.host", "var", ("config", "db", "host")),
        ("image-tag", "var", ("image-tag",)),
        ("env.HOME", "env", ("HOME",)),
        ("env._X1", "env", ("_X1",)),
        ("secrets.API_TOKEN", "secrets", ("API_TOKEN",)),
        ("workflow.id", "workflow", ("id",)),
        ("workflow.instance_id", "workflow", ("instance_id",)),
        ("item", "item", ()),
        ("item.name", "item", ("name",)),
        ("item.a.b", "item", ("a", "b")),
        ("item_index", "item_index", ()),
        ("tasks.test.exit_code", "tasks", ("test", "exit_code")),
        ("tasks.build.data.image.digest", "tasks", ("build", "data", "image", "digest")),
        ("tasks.build.linux.stdout", "tasks", ("build", "linux", "stdout")),
    ],
)
def test_each_reference_kind_parses(inner: str, kind: str, parts: tuple[str, ...]) -> None:
    """Every documented reference form gives its kind and dotted parts."""
    ref = parse_ref(inner)
    assert (ref.kind, ref.parts, ref.text) == (kind, parts, inner)
    assert parse_template("${" + inner + "}") == (ref,)


@pytest.mark.parametrize(
    "inner",
    [
        "env",  # no name
        "env.A.B",  # two names
        "env.1X",  # not an environment variable name
        "secrets",
        "secrets.A.B",
        "workflow",
        "workflow.nope",
        "item_index.x",
        "tasks",
        "tasks.a",  # no field
        "1abc",  # a variable starts with a letter or _
        "a b",
        "a/b",
        "a..b",
        ".a",
        "a.",
        "a[0]",
        "a()",
        "__import__('os')",
    ],
)
def test_malformed_reference_is_an_error(inner: str) -> None:
    """Anything that is not one of the accepted forms is an ExprError."""
    with pytest.raises(ExprError):
        parse_ref(inner)


def test_malformed_reference_error_points_at_its_dollar() -> None:
    """A bad reference in a template reports the offset of its ``${``."""
    with pytest.raises(ExprError) as info:
        parse_template("ab ${1x}")
    assert info.value.offset == 3


def test_task_target_splits_id_field_and_data_path() -> None:
    """``tasks.ID.data.a.b`` gives the task id, the field ``data`` and the path ``(a, b)``."""
    ref = parse_ref("tasks.build.data.image.digest")
    assert ref.task_target({"build"}.__contains__) == ("build", "data", ("image", "digest"))
    assert parse_ref("tasks.test.exit_code").task_target({"test"}.__contains__) == (
        "test", "exit_code", (),
    )


def test_task_ids_with_dots_resolve_to_the_longest_known_prefix() -> None:
    """With tasks ``build`` and ``build.linux``, ``tasks.build.linux.stdout`` is the latter."""
    ids = {"build", "build.linux"}.__contains__
    assert parse_ref("tasks.build.linux.stdout").task_target(ids) == (
        "build.linux", "stdout", (),
    )
    assert parse_ref("tasks.build.linux.data.x").task_target(ids) == (
        "build.linux", "data", ("x",),
    )
    assert parse_ref("tasks.build.stdout").task_target(ids) == ("build", "stdout", ())


@pytest.mark.parametrize("field", sorted(TASK_FIELDS))
def test_every_task_field_is_accepted(field: str) -> None:
    """Each documented task field is a valid ``tasks.ID.FIELD``."""
    assert parse_ref(f"tasks.a.b.{field}").task_target({"a.b"}.__contains__) == (
        "a.b", field, (),
    )


@pytest.mark.parametrize(
    ("inner", "known", "message"),
    [
        ("tasks.nope.status", {"a"}, "names no task"),
        ("tasks.a.colour", {"a"}, "no field"),
        ("tasks.a.stdout.x", {"a"}, "only 'data'"),
        ("tasks.build.linux.stdout", {"build"}, "no field"),
    ],
)
def test_task_target_rejects_unknown_tasks_and_fields(
    inner: str, known: set[str], message: str
) -> None:
    """An unknown task, an unknown field or a path under a non-data field is an ExprError."""
    with pytest.raises(ExprError, match=message):
        parse_ref(inner).task_target(known.__contains__)


# --------------------------------------------------------------------------- interpolation


def test_interpolation_replaces_each_reference_by_its_text() -> None:
    """Strings stay as they are, numbers and booleans read as JSON, null is empty."""
    values = {"s": "abc", "i": 3, "f": 1.5, "t": True, "n": None, "l": [1, "x"], "m": {"k": 1}}
    text = "${s}|${i}|${f}|${t}|${n}|${l}|${m}"
    assert interpolate(text, resolver(values)) == 'abc|3|1.5|true||[1,"x"]|{"k":1}'


def test_interpolated_value_is_never_interpolated_again() -> None:
    """A value containing ``${x}`` stays that text; ``x`` is never resolved."""
    calls: list[str] = []

    def resolve(ref: Ref) -> Any:
        calls.append(ref.text)
        return {"a": "${x} and $${y}", "x": "SECRET"}[ref.text]

    assert interpolate("<${a}>", resolve) == "<${x} and $${y}>"
    assert calls == ["a"]


def test_escaped_reference_is_not_resolved() -> None:
    """``$${name}`` becomes ``${name}`` without asking the resolver."""
    assert interpolate("echo $${name}", fail_resolve) == "echo ${name}"


def test_interpolation_resolves_each_occurrence_once_in_order() -> None:
    """The resolver sees every reference once, left to right."""
    seen: list[str] = []

    def resolve(ref: Ref) -> Any:
        seen.append(ref.text)
        return ref.text.upper()

    assert interpolate("${a}-${b}-${a}", resolve) == "A-B-A"
    assert seen == ["a", "b", "a"]


@given(st.text())
def test_escaping_any_text_gives_it_back(text: str) -> None:
    """Replacing every ``${`` by ``$${`` makes any text interpolate to itself."""
    assert interpolate(text.replace("${", "$${"), fail_resolve) == text


@given(st.text(max_size=200))
def test_template_parser_raises_only_expr_error(text: str) -> None:
    """Any text gives literal parts and references, or an ExprError, nothing else."""
    try:
        parts = parse_template(text)
    except ExprError:
        return
    assert all(isinstance(p, str | Ref) for p in parts)
    if "${" not in text:
        assert parts == (text,)


# --------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not true and false", False),  # (not true) and false
        ("not (true and false)", True),
        ("true or false and false", True),  # true or (false and false)
        ("(true or false) and false", False),
        ("false and true or true", True),  # (false and true) or true
        ("false and (true or true)", False),
        ("not false or false", True),  # (not false) or false
        ("not (false or true)", False),
        ("not not true", True),
        ("not 1 == 2", True),  # not (1 == 2)
        ("1 == 1 and 2 == 3 or 4 == 4", True),
        ("1 == 1 and (2 == 3 or 4 == 5)", False),
        ("((((true))))", True),
    ],
)
def test_boolean_precedence_is_not_then_and_then_or(text: str, expected: bool) -> None:
    """``not`` binds tighter than ``and``, which binds tighter than ``or``; parens override."""
    assert evaluate(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == 1", True), ("1 == 2", False), ("1 != 2", True), ("1 != 1", False),
        ("1 < 2", True), ("2 < 1", False), ("2 < 2", False),
        ("1 <= 1", True), ("2 <= 1", False),
        ("2 > 1", True), ("1 > 2", False), ("2 > 2", False),
        ("2 >= 2", True), ("1 >= 2", False),
        ("1.5 < 2", True), ("-1 < 0", True), ("1e3 == 1000", True), (".5 == 0.5", True),
        ('"a" < "b"', True), ('"b" <= "a"', False), ('"abc" == "abc"', True),
        ('"abc" != "abd"', True), ("null == null", True), ("true != false", True),
    ],
)
def test_comparison_operators(text: str, expected: bool) -> None:
    """Each comparison operator compares numbers, strings, booleans and null."""
    assert evaluate(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 in [1, 2]", True),
        ("3 in [1, 2]", False),
        ("3 not in [1, 2]", True),
        ("1 not in [1, 2]", False),
        ('"b" in "abc"', True),
        ('"z" in "abc"', False),
        ('"z" not in "abc"', True),
        ('"" in "abc"', True),
        ('"prod" in ["dev", "prod"]', True),
        ("null in [null]", True),
        ("[1] in [[1], [2]]", True),
        ("1 in []", False),
        ("1 not in []", True),
    ],
)
def test_membership_on_lists_and_strings(text: str, expected: bool) -> None:
    """``in`` and ``not in`` test list items and substrings."""
    assert evaluate(text) is expected


def test_membership_on_a_referenced_list_and_mapping() -> None:
    """``in`` works on list values and mapping keys that come from references."""
    assert evaluate("${target} in ${allowed}", target="prod", allowed=["dev", "prod"]) is True
    assert evaluate('"k" in ${m}', m={"k": 1}) is True
    assert evaluate('"v" not in ${m}', m={"k": "v"}) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True), ("false", False), ("null", False), ("0", False), ("1", True),
        ('""', False), ('"x"', True), ("[]", False), ("[0]", True),
    ],
)
def test_a_bare_literal_is_its_truth(text: str, expected: bool) -> None:
    """A condition made of one literal is true when the literal is truthy."""
    assert evaluate(text) is expected


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("true", True), ("false", False), ("null", None),
        ("0", 0), ("42", 42), ("-7", -7), ("3.25", 3.25), ("-0.5", -0.5), ("2e3", 2000.0),
        ('"double"', "double"), ("'single'", "single"), ('""', ""),
        (r'"a\"b"', 'a"b'), (r"'it\'s'", "it's"), (r'"tab\there"', "tab\there"),
        (r'"line\nbreak"', "line\nbreak"), (r'"back\\slash"', "back\\slash"),
        ('"don\'t"', "don't"), ("'say \"hi\"'", 'say "hi"'),
        ('"${x}"', "${x}"),  # text inside quotes is a literal, never a reference
    ],
)
def test_literals_have_their_values(literal: str, value: Any) -> None:
    """Literals (with escapes in strings) compare equal to the value they denote."""
    assert parse_condition(f"{literal} == ${{v}}").evaluate(lambda ref: value) is True
    assert parse_condition(f"{literal} != ${{v}}").evaluate(lambda ref: value) is False


def test_referenced_values_keep_their_types() -> None:
    """``${...}`` in a condition stands for the value itself: a number stays a number."""
    assert evaluate("${tasks.test.exit_code} == 0", **{"tasks.test.exit_code": 0}) is True
    assert evaluate('${tasks.test.exit_code} == "0"', **{"tasks.test.exit_code": 0}) is False
    assert evaluate("${n} > 9", n=10) is True


def test_a_value_containing_a_reference_is_one_value_in_a_condition() -> None:
    """A referenced value that looks like an expression is compared as text, never parsed."""
    seen: list[str] = []

    def resolve(ref: Ref) -> Any:
        seen.append(ref.text)
        return {"a": '${b} == "x" or true', "b": "x"}[ref.text]

    assert parse_condition('${a} == "x"').evaluate(resolve) is False
    assert parse_condition('${a} == "${b} == \\"x\\" or true"').evaluate(resolve) is True
    assert set(seen) == {"a"}


def test_the_example_condition_of_the_contract() -> None:
    """``${tasks.test.exit_code} == 0 and ${namespace} != "production"`` works as written."""
    cond = parse_condition('${tasks.test.exit_code} == 0 and ${namespace} != "production"')
    assert [r.text for r in cond.refs] == ["tasks.test.exit_code", "namespace"]
    ok = {"tasks.test.exit_code": 0, "namespace": "staging"}
    assert cond.evaluate(resolver(ok)) is True
    assert cond.evaluate(resolver({**ok, "namespace": "production"})) is False
    assert cond.evaluate(resolver({**ok, "tasks.test.exit_code": 1})) is False


def test_parsed_condition_is_a_reusable_value() -> None:
    """A Condition keeps its text and can be evaluated many times with different values."""
    cond = parse_condition("${x} > 1")
    assert isinstance(cond, Condition)
    assert cond.text == "${x} > 1"
    assert [cond.evaluate(resolver({"x": v})) for v in (0, 2, 5)] == [False, True, True]


# --------------------------------------------------------------------------- type rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == true", False),
        ("0 == false", False),
        ("1 != true", True),
        ("1.0 == true", False),
        ("null == false", False),
        ("null == 0", False),
        ('"" == null', False),
        ('"1" == 1', False),
        ('"true" == true', False),
        ("1 == 1.0", True),
        ("true in [1]", False),
        ("1 in [true]", False),
        ("0 not in [false]", True),
    ],
)
def test_booleans_are_not_numbers(text: str, expected: bool) -> None:
    """Unlike Python, ``1 == true`` is false; ``1 == 1.0`` is true."""
    assert evaluate(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1] == [true]", False),
        ("[0] != [false]", True),
        ("[1] in [[true]]", False),
        ("[1.0] == [1]", True),
        ("${m} == ${n}", False),
    ],
)
def test_booleans_are_not_numbers_inside_lists_and_mappings(text: str, expected: bool) -> None:
    """The ``1 != true`` rule also holds for items of lists and values of mappings."""
    assert evaluate(text, m={"k": 1}, n={"k": True}) is expected


@pytest.mark.parametrize(
    "text",
    [
        '"a" < 1',
        '1 >= "a"',
        "true < false",
        "1 < true",
        "null < 1",
        "null >= null",
        '[1] < [2]',
        '"a" <= null',
        "1 in 2",
        '1 in "abc"',
        "null in null",
        'true not in "true"',
    ],
)
def test_unlike_types_raise_on_ordering_and_membership(text: str) -> None:
    """Ordering unlike types, or ``in`` on a non-container, is an ExprError, not False."""
    cond = parse_condition(text)  # well-formed: the problem is only seen with values
    with pytest.raises(ExprError):
        cond.evaluate(fail_resolve)


def test_ordering_referenced_str_and_int_raises() -> None:
    """A string value compared with ``<`` to a number raises ExprError at evaluation."""
    with pytest.raises(ExprError, match="both sides"):
        evaluate("${x} < 10", x="9")


# --------------------------------------------------------------------------- syntax errors


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "true and", "and", "or true", "not", "()", "(true", "true)", "[1, 2",
        "1 2", "true true", "true == true == true", "1 ==", "== 1", "1 not 2", "[1,]",
        "${}", "${a", "1 !== 1", "1 = 1", "1 <> 2", "'unterminated", '"unterminated',
        "True", "False", "None", "yes", "AND", "x",
    ],
)
def test_malformed_conditions_are_errors_at_parse(text: str) -> None:
    """A condition that does not follow the grammar is an ExprError when parsed."""
    with pytest.raises(ExprError):
        parse_condition(text)


def test_syntax_error_reports_its_offset() -> None:
    """The error's offset points at the offending token."""
    with pytest.raises(ExprError) as info:
        parse_condition("true and 1 + 1")
    assert info.value.offset == 11


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        '__import__("os").system("id")',
        "__import__('os').system('touch /tmp/dagflow-pwned')",
        "open('/etc/passwd')",
        "eval('1')",
        "exec('import os')",
        "compile('1', 'x', 'eval')",
        "globals()",
        "().__class__.__bases__[0].__subclasses__()",
        "''.__class__",
        '"a".upper()',
        "${x}.__class__",
        "${x}.upper()",
        "${x}[0]",
        "${x}()",
        "len(${x})",
        "lambda: 1",
        "1 if true else 0",
        "[x for x in [1]]",
        "1 + 1",
        "2 ** 100 ** 100",
        "-${x}",
        "~1",
        "1; import os",
        "import os",
        "f'{1}'",
        "{'a': 1}",
        "true and __builtins__",
        "x := 1",
        "a.b",
        "@x",
        "`id`",
    ],
)
def test_python_is_never_evaluated(text: str) -> None:
    """Python syntax (names, calls, attributes, subscripts, operators) is refused at parse."""
    with pytest.raises(ExprError):
        parse_condition(text)


def test_conditions_do_not_use_eval_exec_or_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing and evaluating works with ``eval``, ``exec`` and ``compile`` removed."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the condition evaluator must not call eval/exec/compile")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    cond = parse_condition('not (${a} in [1, 2] or ${b} != "x") and 3 >= 2.5')
    assert cond.evaluate(resolver({"a": 3, "b": "x"})) is True


def test_referenced_names_that_look_like_python_are_plain_values() -> None:
    """``${__class__}`` is a variable looked up by the resolver, never an attribute."""
    assert evaluate('${__class__} == "ok"', __class__="ok") is True


@given(st.text(max_size=120))
@settings(max_examples=200, deadline=None)
def test_condition_parser_raises_only_expr_error(text: str) -> None:
    """Any text parses to a Condition or raises ExprError, nothing else."""
    try:
        cond = parse_condition(text)
    except ExprError:
        return
    assert cond.text == text


_ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in", "and", "or"])
_atoms = st.sampled_from(
    ["${a}", "${b}", "1", "2.5", "-3", '"s"', "'t'", "true", "false", "null", "[1, \"s\"]",
     "[]"]
)
_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers()),
)


@given(
    st.lists(st.tuples(st.sampled_from(["", "not ", "("]), _atoms, _ops), min_size=1,
             max_size=6),
    _atoms,
    _values,
    _values,
)
@settings(max_examples=200, deadline=None)
def test_evaluation_yields_a_bool_or_expr_error(
    pieces: list[tuple[str, str, str]], last: str, a: Any, b: Any
) -> None:
    """Well-formed or not, a condition evaluates to a bool or raises ExprError, nothing else."""
    text = " ".join(f"{prefix}{atom} {op}" for prefix, atom, op in pieces) + " " + last
    text += ")" * text.count("(")
    try:
        cond = parse_condition(text)
        result = cond.evaluate(lambda ref: {"a": a, "b": b}[ref.text])
    except ExprError:
        return
    assert type(result) is bool


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("true or " * 600 + "true", "longer than"),
        ('"' + "a" * 5000 + '"', "longer than"),
        ("(" * 40 + "1" + ")" * 40, "deeper"),
        ("[" * 40 + "]" * 40, "deeper"),
        ("not " * 40 + "true", "deeper"),
        ("1 == 1 and " * 100 + "true", "tokens"),
        ("[" + ",".join(["1"] * 300) + "]", "tokens"),
    ],
    ids=["length", "string-length", "paren-depth", "list-depth", "not-depth", "tokens",
         "list-tokens"],
)
def test_limits_raise_expr_error_quickly(text: str, message: str) -> None:
    """Too long, too deep or too many tokens is an ExprError within milliseconds."""
    start = time.perf_counter()
    with pytest.raises(ExprError, match=message):
        parse_condition(text)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "text",
    [
        "(" * 100_000,
        "not " * 100_000,
        "$" * 1_000_000,
        '"' + "\\" * 1_000_000,
        "${" + "a" * 1_000_000,
        "1" * 1_000_000,
    ],
    ids=["parens", "nots", "dollars", "backslashes", "ref", "digits"],
)
def test_huge_conditions_are_refused_without_scanning_them(text: str) -> None:
    """Megabyte-sized conditions fail fast with ExprError (no recursion, no quadratic scan)."""
    start = time.perf_counter()
    with pytest.raises(ExprError):
        parse_condition(text)
    assert time.perf_counter() - start < 0.5


def test_conditions_within_the_limits_parse() -> None:
    """Nesting and token counts just under the limits are accepted."""
    assert evaluate("(" * 20 + "true" + ")" * 20) is True
    assert evaluate(" and ".join(["true"] * 100)) is True
