"""Every file in ``tests/invalid`` must be rejected with the right error, line and message.

YAML files state what they expect on their first line::

    # expect: ParseError line=7 keyword="unknown key"

``line=`` is the 1-based line of the first reported problem (``line=none`` when no line is
knowable) and ``keyword=`` a case-insensitive substring of that problem's message. Files that
cannot hold a comment (JSON, the empty file) have their expectation in ``HEADERLESS`` below.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import NamedTuple

import pytest

import dagflow

CORPUS = Path(__file__).parent / "invalid"
FILES = sorted(p for p in CORPUS.iterdir() if p.suffix in {".yaml", ".yml", ".json"})

HEADER = re.compile(
    r"^# expect: (?P<cls>ParseError|ValidationError|CycleDetected)"
    r' line=(?P<line>\d+|none) keyword="(?P<keyword>[^"]+)"\s*$'
)


class Expect(NamedTuple):
    cls: str
    line: int | None
    keyword: str


#: Expectations for files that cannot carry a header comment.
HEADERLESS: dict[str, Expect] = {
    "01-empty.yaml": Expect("ParseError", 1, "empty"),
    "08-duplicate-key.json": Expect("ParseError", 7, "duplicate key 'id'"),
    "23-nan.json": Expect("ParseError", 7, "NaN"),
    "24-lone-surrogate.json": Expect("ParseError", 6, "surrogate"),
    "66-json-trailing-comma.json": Expect("ParseError", 7, "invalid JSON"),
    "67-json-deep-nesting.json": Expect("ParseError", 3, "nesting deeper"),
    "68-json-unknown-key.json": Expect("ParseError", 7, "unknown key 'retry'"),
}

ERROR_CLASSES = {
    "ParseError": dagflow.ParseError,
    "ValidationError": dagflow.ValidationError,
    "CycleDetected": dagflow.CycleDetected,
}


def expectation(path: Path) -> Expect:
    """Read a file's expectation from ``HEADERLESS`` or its first line."""
    if path.name in HEADERLESS:
        return HEADERLESS[path.name]
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8")
    match = HEADER.match(first)
    assert match, f"{path.name}: first line is not an '# expect: ...' header: {first!r}"
    line = None if match["line"] == "none" else int(match["line"])
    return Expect(match["cls"], line, match["keyword"])


@functools.cache
def rejection(path: Path) -> BaseException | None:
    """Load ``path`` and return what it raised (``None`` if it loaded)."""
    try:
        dagflow.load(path)
    except BaseException as exc:  # a raw traceback is itself a finding
        return exc
    return None


def describe(exc: BaseException) -> str:
    problems = getattr(exc, "problems", ())
    lines = [f"{type(exc).__name__}: {exc}"]
    lines += [f"  line={p.line} col={p.col} path={p.path}: {p.message}" for p in problems]
    return "\n".join(lines)


def test_corpus_has_at_least_40_files() -> None:
    """The invalid corpus holds at least 40 workflow files."""
    assert len(FILES) >= 40


def test_headerless_expectations_name_existing_files() -> None:
    """Every expectation kept outside a file header names a file of the corpus."""
    assert set(HEADERLESS) <= {p.name for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_invalid_file_is_rejected_as_expected(path: Path) -> None:
    """Each invalid file raises its exact error class, with the first problem's keyword and
    line as stated, and an error text naming the file."""
    want = expectation(path)
    exc = rejection(path)
    assert exc is not None, f"{path.name} loaded without error"
    assert isinstance(exc, dagflow.WorkflowError), (
        f"{path.name} raised a non-dagflow error {type(exc).__name__}: {exc}"
    )
    wrong = []
    if type(exc) is not ERROR_CLASSES[want.cls]:
        wrong.append(f"class {type(exc).__name__}, expected {want.cls}")
    problems = exc.problems  # type: ignore[attr-defined]
    if not problems:
        wrong.append("no problems reported")
    else:
        first = problems[0]
        if want.keyword.lower() not in first.message.lower():
            wrong.append(f"first message lacks {want.keyword!r}")
        if first.line != want.line:
            wrong.append(f"first problem on line {first.line}, expected {want.line}")
    if path.name not in str(exc):
        wrong.append("error text does not name the file")
    assert not wrong, f"{path.name}: {'; '.join(wrong)}\n{describe(exc)}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_problem_has_a_line(path: Path) -> None:
    """Every problem reported for a corpus file carries a line, unless marked line=none."""
    want = expectation(path)
    exc = rejection(path)
    if not isinstance(exc, dagflow.WorkflowError):
        pytest.skip("not rejected with a dagflow error (reported by the test above)")
    if want.line is None:
        return
    missing = [p for p in exc.problems if p.line is None]  # type: ignore[attr-defined]
    assert not missing, f"{path.name}: problems without a line\n{describe(exc)}"


def test_a_misspelt_key_does_not_hide_the_other_problems() -> None:
    """An unknown key and a dependency on an unknown task are reported together, each at
    its line, so one round of fixes is enough."""
    path = CORPUS / "71-unknown-key-and-unknown-dependency.yaml"
    with pytest.raises(dagflow.ParseError) as info:
        dagflow.load(path)
    found = [(p.line, p.col, p.message) for p in info.value.problems]
    assert found == [
        (6, 5, "unknown key 'dependson' (did you mean 'depends_on'?)"),
        (10, 18, "task 'deploy' depends on unknown task 'aprove' (did you mean 'approve'?)"),
    ]


def test_wrong_values_do_not_hide_the_other_problems() -> None:
    """A misspelt key, a duration that is not ISO 8601, a reference to no task and an
    unknown dependency: all four in one report, in file order."""
    path = CORPUS / "72-four-problems-of-three-kinds.yaml"
    with pytest.raises(dagflow.ParseError) as info:
        dagflow.load(path)
    found = [(p.line, p.message.split(":")[0]) for p in info.value.problems]
    assert found == [
        (6, "unknown key 'dependson' (did you mean 'depends_on'?)"),
        (7, "invalid duration '5m'"),
        (9, "'${tasks.nope.stdout}' names no task of this workflow"),
        (10, "task 'b' depends on unknown task 'zz'"),
    ]
