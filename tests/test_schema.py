"""The generated JSON Schema agrees with the parser: valid files pass both, bad ones fail both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

import dagflow
from conftest import EXAMPLES

VALID = sorted([*EXAMPLES.glob("*.yaml"), *(Path(__file__).parent / "valid").glob("*.yaml")])


def _validator() -> jsonschema.Draft202012Validator:
    schema = dagflow.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _data(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def test_schema_is_draft_2020_12() -> None:
    """The schema declares Draft 2020-12 and passes the metaschema."""
    schema = dagflow.json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_files_pass_schema_and_parser(path: Path) -> None:
    """Every example and valid test file is accepted by the parser and by the schema."""
    dagflow.load(path)
    errors = [e.message for e in _validator().iter_errors(_data(path.read_text()))]
    assert errors == []


BASE = "id: wf\ntasks:\n  - id: a\n    type: {type: Command, command: echo}\n"

# Each document is wrong in a way the schema can see: both must reject it.
INVALID = {
    "missing tasks": "id: wf\n",
    "empty tasks": "id: wf\ntasks: []\n",
    "unknown top-level key": BASE + "taks: []\n",
    "unknown task key": BASE + "    dependson: [b]\n",
    "bad workflow id": BASE.replace("id: wf", "id: 'my wf'"),
    "id starting with dash": BASE.replace("id: a", "id: -a"),
    "unknown task type": "id: wf\ntasks:\n  - id: a\n    type: {type: Shell, command: x}\n",
    "unknown key in type": BASE.replace("command: echo", "command: echo, shell: true"),
    "missing required field": "id: wf\ntasks:\n  - id: a\n    type: {type: Http}\n",
    "string for list": BASE + "    depends_on: b\n",
    "string for int": BASE + "    retry_policy: {max_attempts: '3'}\n",
    "string for bool": BASE.replace("command: echo", "command: echo") +
    "    config: {collect_output: 'yes'}\n",
    "float for int": "id: wf\ntasks:\n  - id: a\n    type: {type: Scale, resource: "
                     "deployment/x, replicas: 1.5}\n",
    "negative parallelism": BASE + "config: {max_parallel_tasks: -1}\n",
    "zero attempts": BASE + "    retry_policy: {max_attempts: 0}\n",
    "multiplier below one": BASE + "    retry_policy: {backoff_multiplier: 0.5}\n",
    "bad failure action": BASE + "    config: {on_failure: Explode}\n",
    "bad join": BASE + "    join: some\n",
    "bad duration": BASE + "    timeout: 15 minutes\n",
    "negative timeout": BASE + "    timeout: -5\n",
    "lowercase http method": "id: wf\ntasks:\n  - id: a\n    type: {type: Http, url: "
                             "'http://x', method: get}\n",
    "bad on_timeout": "id: wf\ntasks:\n  - id: a\n    type: {type: Approval, approvers: [a@x],"
                      " on_timeout: approve}\n",
    "approval timeout zero": "id: wf\ntasks:\n  - id: a\n    type: {type: Approval, "
                             "approvers: [a@x], timeout_seconds: 0}\n",
    "loop without template": "id: wf\ntasks:\n  - id: a\n    type: {type: Loop, items: []}\n",
    "plugin name with slash": "id: wf\ntasks:\n  - id: a\n    type: {type: Plugin, "
                              "plugin_name: a/b}\n",
}


@pytest.mark.parametrize("text", list(INVALID.values()), ids=list(INVALID))
def test_invalid_documents_fail_schema_and_parser(text: str) -> None:
    """A document the schema rejects is rejected by the parser too, and vice versa here."""
    with pytest.raises((dagflow.ParseError, dagflow.ValidationError)):
        dagflow.loads(text)
    assert list(_validator().iter_errors(_data(text))), "the schema accepted it"


def test_schema_covers_custom_task_types() -> None:
    """A host application's custom task type appears in the schema it asks for."""
    import attrs

    @attrs.frozen
    class Notify:
        channel: str
        loud: bool = False

    schema = dagflow.json_schema({"Notify": Notify})
    assert "Notify" in schema["$defs"]["TaskType"]["properties"]["type"]["enum"]
    validator = jsonschema.Draft202012Validator(schema)
    good = {"id": "wf", "tasks": [{"id": "a", "type": {"type": "Notify", "channel": "#x"}}]}
    bad = {"id": "wf", "tasks": [{"id": "a", "type": {"type": "Notify", "chanel": "#x"}}]}
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors(bad))
    assert dagflow.loads(str(good).replace("'", '"'), format="json",
                         task_types={"Notify": Notify}).tasks[0].type == Notify("#x")
