"""The examples in examples/ run through their real entry points and produce what they say.

YAML examples run with ``python -m dagflow run ... --json``; Python examples as scripts.
Each runs with a temporary directory as its working directory and its store there.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import EXAMPLES

DAGFLOW = [sys.executable, "-m", "dagflow"]

# what examples/data-pipeline/pipeline.yaml loads, aggregated by hand
REGION_TOTALS = [
    {"region": "amer", "orders": 3, "total": 350.0},
    {"region": "apac", "orders": 1, "total": 42.0},
    {"region": "emea", "orders": 2, "total": 200.5},
]


def _env(tmp_path: Path) -> dict[str, str]:
    """The environment of an example: its store in tmp_path, this Python's python3 first."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return {**os.environ, "DAGFLOW_STORE": f"sqlite:///{tmp_path}/s.db", "PATH": path}


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60, check=False)


def _run_workflow(tmp_path: Path, *args: str) -> dict[str, Any]:
    """``dagflow run ARGS --json`` in tmp_path; the final instance, which must be Completed."""
    done = _run([*DAGFLOW, "run", *args, "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    instance: dict[str, Any] = json.loads(done.stdout)
    assert instance["state"] == "Completed"
    assert all(t["state"] == "Completed" for t in instance["task_states"].values())
    return instance


def test_every_yaml_example_validates(tmp_path: Path) -> None:
    """`dagflow validate` accepts every *.yaml file under examples/, so none can rot."""
    files = sorted(EXAMPLES.rglob("*.yaml"))
    assert len(files) >= 5
    done = _run([*DAGFLOW, "validate", *map(str, files)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(files)} valid, 0 invalid" in done.stdout
    for file in files:
        assert f"{file}: valid" in done.stdout


def test_data_pipeline_aggregates_per_region_and_writes_the_report(tmp_path: Path) -> None:
    """The data pipeline loads its rows into SQLite, aggregates each region in a Loop and
    writes the report, twice in a row with the same result (it starts from a fresh table)."""
    shutil.copytree(EXAMPLES / "data-pipeline", tmp_path / "data-pipeline")
    workdir = tmp_path / "data-pipeline"
    for _ in range(2):
        # the README's command, from the directory that holds data-pipeline/
        instance = _run_workflow(tmp_path, "data-pipeline/pipeline.yaml",
                                 "--connection", "warehouse=sqlite:///warehouse.db")
        tasks = instance["task_states"]
        assert [i["data"] for i in tasks["load-rows"]["output"]["data"]] == [
            {"rowcount": 1}] * 6
        assert tasks["regions"]["output"]["data"] == [
            {"region": "amer"}, {"region": "apac"}, {"region": "emea"}]
        per_region = tasks["per-region"]["output"]["data"]
        assert [row for i in per_region for row in i["data"]] == REGION_TOTALS
        assert tasks["report"]["output"]["stdout"] == "wrote report.md: 3 regions\n"

    # the relative paths are relative to the workflow file's directory
    assert not (tmp_path / "warehouse.db").exists()
    with sqlite3.connect(workdir / "warehouse.db") as db:
        assert db.execute("SELECT COUNT(*), SUM(amount) FROM sales").fetchone() == (6, 592.5)
    assert (workdir / "report.md").read_text(encoding="utf-8") == (
        "# Sales per region\n"
        "\n"
        "| region | orders | total |\n"
        "| --- | ---: | ---: |\n"
        "| amer | 3 | 350.00 |\n"
        "| apac | 1 | 42.00 |\n"
        "| emea | 2 | 200.50 |\n"
        "\n"
        "6 orders, 592.50 in total\n")


def test_release_runs_build_twice_and_publishes_both_artifacts(tmp_path: Path) -> None:
    """release.yaml runs build.yaml as two child instances with different inputs and its
    publish task uses the stdout of each child's compile task."""
    instance = _run_workflow(tmp_path, str(EXAMPLES / "subworkflows" / "release.yaml"),
                             "--var", "version=1.4.0")
    tasks = instance["task_states"]
    for component in ("api", "web"):
        child = tasks[f"build-{component}"]["output"]["data"]
        assert child["state"] == "Completed"
        assert child["instance_id"] == f"{instance['id']}.build-{component}"
        assert child["tasks"]["test"]["stdout"] == f"testing {component} 1.4.0: 3 passed\n"
        assert child["tasks"]["compile"]["stdout"] == f"{component}-1.4.0.tar.gz"
    assert tasks["publish"]["output"]["stdout"] == (
        "published api-1.4.0.tar.gz and web-1.4.0.tar.gz\n")


def test_custom_task_type_example_runs_its_handler(tmp_path: Path) -> None:
    """custom_task_type.py registers Notify, and its handler gets the interpolated settings
    and returns the data a later task reads."""
    done = _run([sys.executable, str(EXAMPLES / "custom_task_type.py")], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[#releases] @alice built app 2.3.1",
        "state: Completed",
        'announce data: {"channel": "#releases", "text": "@alice built app 2.3.1", '
        '"attempt": 1}',
        "confirm: announced in #releases",
    ]


def test_host_app_runs_two_workflows_and_grants_the_gate(tmp_path: Path) -> None:
    """host_app.py follows two background runs at once, grants the deploy's gate from its
    approval desk, and prints a summary with both Completed."""
    done = _run([sys.executable, str(EXAMPLES / "host_app.py")], tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    summary = lines[lines.index("summary:") + 1:]
    assert summary == [
        "  nightly-report: Completed (2/2 tasks completed)",
        "  deploy: Completed (3/3 tasks completed)",
        "  approved by lead@example.com: ['ship it']",
        "  deploy said: shipped app-2.0.1.tar.gz",
    ]
    assert "[desk] lead@example.com granted 'approve' of deploy" in lines
    deploy = [line.split(" ", 2)[-1] for line in lines if line.startswith("[deploy]")]
    assert deploy == [
        "WorkflowStarted", "TaskCompleted build", "ApprovalRequired approve",
        "ApprovalGranted approve", "TaskCompleted approve", "TaskCompleted ship",
        "WorkflowCompleted"]
    assert [line for line in lines if line.startswith("[nightly]")][-1].endswith(
        "WorkflowCompleted")
    assert os.listdir(tmp_path) == []  # its store was in a temporary directory


def test_host_app_keeps_its_instances_in_the_given_directory(tmp_path: Path) -> None:
    """Given a directory, host_app.py keeps its SQLite store there, and `dagflow list`
    finds both instances Completed in it afterwards."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    done = _run([sys.executable, str(EXAMPLES / "host_app.py"), str(state_dir)], tmp_path)
    assert done.returncode == 0, done.stderr
    listed = _run([*DAGFLOW, "list", "--json", "--store",
                   f"sqlite:///{state_dir / 'dagflow.db'}"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    instances = json.loads(listed.stdout)
    assert sorted((i["workflow_id"], i["state"]) for i in instances) == [
        ("deploy", "Completed"), ("nightly-report", "Completed")]
