"""The ``dagflow`` command through its real entry point (a subprocess, as users run it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conftest import EXAMPLES

VALID = Path(__file__).parent / "valid"


def dagflow(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dagflow ARGS``; never raises on a non-zero exit."""
    return subprocess.run([sys.executable, "-m", "dagflow", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60)


def test_validate_accepts_the_seed_example(seed_example: Path) -> None:
    """The seed's example workflow validates, exit code 0."""
    result = dagflow("validate", str(seed_example))
    assert result.returncode == 0, result.stderr
    assert "valid (9 tasks)" in result.stdout


def test_validate_reports_every_problem_with_position(tmp_path: Path) -> None:
    """An invalid file gives exit 2 and one FILE:LINE:COL line per problem, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: wf\n"
        "tasks:\n"
        "  - id: a\n"
        "    type: {type: Command, command: echo}\n"
        "    depends_on: [ghost]\n"
        "  - id: a\n"
        "    type: {type: Approval}\n"
    )
    result = dagflow("validate", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert f"{bad}:5:18: task 'a' depends on unknown task 'ghost'" in lines
    assert any(line.startswith(f"{bad}:6:9: duplicate task id 'a'") for line in lines)
    assert any(line.startswith(f"{bad}:7:11: an Approval needs at least one approver")
               for line in lines)
    assert "Traceback" not in result.stderr


def test_validate_many_files_counts_valid_and_invalid(tmp_path: Path,
                                                       seed_example: Path) -> None:
    """Several files: each is checked, the summary counts them, any invalid one exits 2."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "x", "tasks": [}')
    result = dagflow("validate", str(seed_example), str(bad))
    assert result.returncode == 2
    assert "1 valid, 1 invalid" in result.stderr
    assert f"{bad}:1:23: invalid JSON" in result.stderr


def test_validate_json_report(tmp_path: Path, seed_example: Path) -> None:
    """``--json`` prints one machine-readable report with every problem's position."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: wf\ntasks:\n  - id: a\n    type: {type: Command, command: echo}\n"
                   "    dependson: [b]\n")
    result = dagflow("validate", "--json", str(seed_example), str(bad))
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert [entry["valid"] for entry in report] == [True, False]
    problem = report[1]["problems"][0]
    assert (problem["line"], problem["col"]) == (5, 5)
    assert "did you mean 'depends_on'" in problem["message"]
    assert report[1]["error"] == "ParseError"


def test_validate_missing_file_is_bad_input(tmp_path: Path) -> None:
    """A file that does not exist is reported on stderr with exit 2, no traceback."""
    result = dagflow("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read file" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_warns_about_plugins_it_cannot_see() -> None:
    """A Plugin not installed as an entry point is a warning, not an error."""
    result = dagflow("validate", str(VALID / "all-task-types.yaml"))
    assert result.returncode == 0
    assert "warning" in result.stderr and "'notify'" in result.stderr


def test_plan_shows_levels_and_critical_path(seed_example: Path) -> None:
    """``plan`` prints the seed's levels, the critical path and the parallelism."""
    result = dagflow("plan", str(seed_example), "--var", "CI_COMMIT_SHA=abc123")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "level 1: validate-manifest, run-tests" in out
    assert "level 8: notify-success" in out
    assert ("critical path (8 steps): run-tests -> build-image -> push-image -> "
            "request-approval -> deploy -> health-check -> smoke-tests -> notify-success") in out
    assert "max parallelism: 2" in out
    assert 'image_tag = "abc123"' in out


def test_plan_json_and_durations(tmp_path: Path, seed_example: Path) -> None:
    """``plan --json --durations`` weighs the critical path in seconds."""
    durations = tmp_path / "d.json"
    durations.write_text(json.dumps({"validate-manifest": 500, "run-tests": 10}))
    result = dagflow("plan", str(seed_example), "--json", "--durations", str(durations),
                     "--var", 'replicas=5')
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["critical_path"] == {
        "tasks": ["validate-manifest", "request-approval", "deploy", "health-check",
                  "smoke-tests", "notify-success"],
        "length": 500.0, "unit": "seconds"}
    assert plan["levels"][0] == ["validate-manifest", "run-tests"]
    assert plan["variables"]["replicas"] == 5
    assert "CI_COMMIT_SHA" in plan["unresolved"]


def test_plan_rejects_a_bad_var() -> None:
    """``--var`` without '=' is bad input with a message saying how to write it."""
    result = dagflow("plan", str(EXAMPLES / "deploy-with-approval.yaml"), "--var", "oops")
    assert result.returncode == 2
    assert "NAME=VALUE" in result.stderr


def test_plan_of_invalid_file_exits_2(tmp_path: Path) -> None:
    """``plan`` on a cyclic workflow prints the cycle and exits 2."""
    bad = tmp_path / "cycle.yaml"
    bad.write_text("id: wf\ntasks:\n  - {id: a, type: {type: Command, command: x}, "
                   "depends_on: [b]}\n  - {id: b, type: {type: Command, command: x}, "
                   "depends_on: [a]}\n")
    result = dagflow("plan", str(bad))
    assert result.returncode == 2
    assert "dependency cycle: a -> b -> a" in result.stderr


def test_schema_prints_a_valid_json_schema(tmp_path: Path) -> None:
    """``schema`` prints a Draft 2020-12 schema; ``-o`` writes the same to a file."""
    result = dagflow("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    out = tmp_path / "s.json"
    assert dagflow("schema", "-o", str(out)).returncode == 0
    assert json.loads(out.read_text()) == schema


@pytest.mark.parametrize("args", [["--help"], ["validate", "--help"], ["plan", "--help"],
                                  ["schema", "--help"]])
def test_help_teaches_with_examples(args: list[str]) -> None:
    """Every command's ``--help`` exits 0 and shows an example invocation."""
    result = dagflow(*args)
    assert result.returncode == 0
    assert ("dagflow " in result.stdout and "xample" in result.stdout) or "Quick start" in \
        result.stdout


def test_unknown_command_is_bad_input() -> None:
    """An unknown command exits 2 with a hint, not a traceback."""
    result = dagflow("frobnicate")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_console_script_is_installed() -> None:
    """The ``dagflow`` console script runs (``--version``)."""
    script = Path(sys.executable).parent / "dagflow"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert "dagflow" in result.stdout


def test_validate_warns_of_a_name_that_is_no_variable(tmp_path: Path) -> None:
    """A misspelt variable is valid (it might come from --var or the environment) but
    validate points at it with a suggestion, and run refuses it with the same one."""
    wf = tmp_path / "wf.yaml"
    wf.write_text('id: r\nvariables: {version: "1"}\ntasks:\n  - id: a\n'
                  '    type: {type: Command, command: echo, args: ["${verison}"]}\n')
    checked = dagflow("validate", str(wf))
    assert checked.returncode == 0
    assert checked.stderr.strip() == (
        f"{wf}:5:49: warning: '${{verison}}' is not a variable of this workflow: it must come "
        "from --var or the environment when it runs (did you mean 'version'?)")
    ran = dagflow("run", str(wf), "--store", "memory://")
    assert ran.returncode == 2 and "(did you mean 'version'?)" in ran.stderr
    assert dagflow("run", str(wf), "--store", "memory://", "--var", "verison=2"
                   ).returncode == 0
