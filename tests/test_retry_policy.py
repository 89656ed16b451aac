"""RetryPolicy.jitter in workflow files: parsed, dumped, described by the schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

import dagflow
from dagflow._errors import ParseError
from dagflow._models import RetryPolicy
from dagflow._schema import json_schema

WORKFLOW = """\
id: w
tasks:
  - id: a
    type: {type: Command, command: "true"}
    retry_policy: {jitter: true}
"""


def test_jitter_is_off_by_default_and_read_from_files() -> None:
    """``retry_policy: {jitter: true}`` turns it on; the other fields keep their defaults."""
    assert RetryPolicy().jitter is False
    [task] = dagflow.loads(WORKFLOW).tasks
    assert task.retry_policy == RetryPolicy(jitter=True)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_jitter_round_trips_through_dump(fmt: Any) -> None:
    """dump writes ``jitter`` and loads reads it back, on and off."""
    workflow = dagflow.loads(WORKFLOW)
    assert dagflow.loads(dagflow.dump(workflow, format=fmt), format=fmt) == workflow
    assert json.loads(dagflow.dump(workflow))["tasks"][0]["retry_policy"]["jitter"] is True
    off = dagflow.loads(WORKFLOW.replace("true}", "false}"))
    assert dagflow.loads(dagflow.dump(off, format=fmt), format=fmt) == off


def test_jitter_must_be_a_boolean() -> None:
    """``jitter: yes`` is the text "yes" (YAML 1.2), not a boolean."""
    with pytest.raises(ParseError, match="expected true or false") as info:
        dagflow.loads(WORKFLOW.replace("jitter: true", "jitter: yes"))
    assert info.value.problems[0].path[-1] == "jitter"


def test_schema_describes_jitter() -> None:
    """``dagflow schema`` lists jitter as a boolean defaulting to false."""
    policy = json_schema()["$defs"]["RetryPolicy"]
    assert policy["properties"]["jitter"] == {"type": "boolean", "default": False}
