"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test once per anyio backend."""
    return str(request.param)


@pytest.fixture
def seed_example() -> Path:
    """The seed architecture's example workflow, verbatim."""
    return EXAMPLES / "deploy-with-approval.yaml"


def build_workflow(*tasks: dict[str, Any], **config: Any) -> Any:
    """A definition from task dicts; ``rec:`` in a type means a Plugin task named rec."""
    import json

    import dagflow

    doc: dict[str, Any] = {"id": config.pop("id", "wf"), "tasks": []}
    variables = config.pop("variables", None)
    if variables is not None:
        doc["variables"] = variables
    if config:
        doc["config"] = config
    for task in tasks:
        task = dict(task)
        if "type" not in task:
            task["type"] = {"type": "Plugin", "plugin_name": "rec"}
        doc["tasks"].append(task)
    return dagflow.loads(json.dumps(doc), format="json")


@pytest.fixture
def make_workflow() -> Any:
    """``make_workflow({"id": "a"}, {"id": "b", "depends_on": ["a"]}, max_parallel_tasks=2)``."""
    return build_workflow
