"""Hostile and random input: the parser raises ParseError/ValidationError or returns a
definition, nothing else ever escapes, and every case finishes in bounded time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dagflow
from dagflow import ParseError, ValidationError, WorkflowDefinition

SEED = (Path(__file__).resolve().parents[1] / "examples" / "deploy-with-approval.yaml")
SEED_TEXT = SEED.read_text(encoding="utf-8")
#: generous for a 2-core CI machine; a hang or an exponential blow-up takes far longer
BOUND_SECONDS = 2.0

# keys the model knows, so that random data reaches deep into the structure
_KEYS = st.sampled_from([
    "id", "name", "tasks", "type", "depends_on", "config", "retry_policy", "timeout",
    "condition", "rollback", "join", "variables", "metadata", "command", "args", "env",
    "url", "method", "headers", "body", "approvers", "timeout_seconds", "auto_approve",
    "min_approvals", "items", "task_template", "parallel", "true_branch", "false_branch",
    "max_attempts", "on_failure", "max_parallel_tasks", "plugin_name", "workflow_id",
    "Command", "Http", "Loop", "Approval", "Conditional", "x", "",
])
_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(["Command", "Http", "Loop", "a", "b", "${x}",
                                              "${tasks.a.stdout}", "PT1M", "-rf"])
)
_DATA = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=30,
)


def parse_bounded(text: str | bytes, fmt: str) -> WorkflowDefinition | None:
    """Parse ``text``; only dagflow's two input errors may escape, within the bound."""
    start = time.perf_counter()
    try:
        return dagflow.loads(text, format=fmt)  # type: ignore[arg-type]
    except (ParseError, ValidationError) as exc:
        assert exc.problems, "an input error lists at least one problem"
        assert all(str(p) for p in exc.problems)
        return None
    finally:
        assert time.perf_counter() - start < BOUND_SECONDS


@given(st.text(max_size=400))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_as_yaml(text: str) -> None:
    """Any text read as YAML gives a definition or a ParseError/ValidationError."""
    parse_bounded(text, "yaml")


@given(st.text(max_size=400))
@settings(max_examples=200, deadline=None)
def test_arbitrary_text_as_json(text: str) -> None:
    """Any text read as JSON gives a definition or a ParseError/ValidationError."""
    parse_bounded(text, "json")


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes(data: bytes) -> None:
    """Any bytes (invalid UTF-8, NUL, BOMs) give a clean error or a definition."""
    parse_bounded(data, "yaml")
    parse_bounded(data, "json")


@given(_DATA)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_yaml_shaped_data(data: Any) -> None:
    """Random documents over the model's own keys, as JSON and as YAML, never crash."""
    parse_bounded(json.dumps(data), "json")
    parse_bounded(json.dumps(data, indent=1), "yaml")  # JSON is YAML 1.2


@given(st.dictionaries(_KEYS, _DATA, max_size=6), st.lists(_DATA, max_size=4))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_workflow_shaped_documents(top: dict[str, Any], tasks: list[Any]) -> None:
    """Documents with an id and a task list of random content reach the validator."""
    doc = {"id": "w", **top, "tasks": tasks}
    parse_bounded(json.dumps(doc), "json")


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_seed_example(data: st.DataObject) -> None:
    """The seed example with random characters deleted, replaced or inserted never crashes."""
    text = SEED_TEXT
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text) - 1))
        op = data.draw(st.sampled_from(["delete", "replace", "insert"]))
        char = data.draw(st.sampled_from([*list(":-[]{}&*!|>'\"#%@`\t\n ,?"), "x", "1"]))
        if op == "delete":
            text = text[:i] + text[i + 1:]
        elif op == "replace":
            text = text[:i] + char + text[i + 1:]
        else:
            text = text[:i] + char + text[i:]
    parse_bounded(text, "yaml")


def test_hostile_shapes_finish_quickly() -> None:
    """Deep nesting, an alias bomb and a wide flat document are each refused or read fast."""
    cases = [
        "a: " + "[" * 5000 + "]" * 5000,
        '{"id": "w", "tasks": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "a: &a [" + ",".join(["x"] * 10) + "]\n" + "".join(
            f"{c}: &{c} [{','.join(['*' + chr(ord(c) - 1)] * 10)}]\n" for c in "bcdefghi"),
        "id: w\ntasks:\n" + "".join(f"  - {{id: t{i}, type: {{type: Command, command: x}}}}\n"
                                    for i in range(5000)),
    ]
    for text in cases:
        fmt = "json" if text.startswith("{") else "yaml"
        parse_bounded(text, fmt)
