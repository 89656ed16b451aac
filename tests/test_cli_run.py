"""``dagflow run`` through its real entry point: exit codes, --json, --var, --connection,
--auto-approve, progress lines, and errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ENV = {**os.environ, "DAGFLOW_STORE": "memory://"}


def dagflow(*args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dagflow ARGS``; never raises on a non-zero exit."""
    return subprocess.run([sys.executable, "-m", "dagflow", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60, env=env or ENV)


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_run_completes_with_exit_0_and_prints_progress(tmp_path: Path) -> None:
    """A workflow that succeeds exits 0 and prints one line per task step and a summary."""
    wf = write(tmp_path, """
        id: hello
        variables: {who: world}
        tasks:
          - id: greet
            type: {type: Command, command: echo, args: ["hello ${who}"]}
          - id: after
            type: {type: Command, command: echo, args: ["${tasks.greet.stdout}!"]}
            depends_on: [greet]
    """)
    result = dagflow("run", str(wf))
    assert result.returncode == 0, result.stderr
    assert "start   greet" in result.stdout and "done    after" in result.stdout
    assert "hello Completed" in result.stdout and "2 completed" in result.stdout


def test_run_json_prints_only_the_instance(tmp_path: Path) -> None:
    """--json prints the final instance (id, state, task_states, error) and nothing else
    on stdout."""
    wf = write(tmp_path, """
        id: hello
        tasks:
          - id: greet
            type: {type: Command, command: echo, args: ["${who}"]}
    """)
    result = dagflow("run", str(wf), "--json", "--var", "who=ops team")
    assert result.returncode == 0, result.stderr
    instance = json.loads(result.stdout)
    assert instance["state"] == "Completed"
    assert instance["error"] is None
    greet = instance["task_states"]["greet"]
    assert (greet["state"], greet["attempts"], greet["output"]["stdout"]) == (
        "Completed", 1, "ops team\n")
    assert "start   greet" in result.stderr  # progress went to stderr


def test_var_values_are_json_when_they_parse(tmp_path: Path) -> None:
    """--var n=3 is the number 3, --var tags=["a"] a list, --var x=abc the text abc."""
    wf = write(tmp_path, """
        id: vars
        tasks:
          - id: check
            type: {type: Command, command: echo, args: ["ok"]}
            condition: "${n} == 3 and ${tags} == ['a'] and ${x} == 'abc'"
    """)
    result = dagflow("run", str(wf), "--json", "--var", "n=3", "--var", 'tags=["a"]',
                     "--var", "x=abc")
    assert json.loads(result.stdout)["task_states"]["check"]["state"] == "Completed"


def test_var_keeps_text_where_the_workflow_declares_text(tmp_path: Path) -> None:
    """A variable whose default is text stays text as written (version=1.10 is "1.10",
    not the number 1.1); an undeclared one keeps a number only when JSON would write it
    the same way; a declared number is read as JSON."""
    wf = write(tmp_path, """
        id: versions
        variables: {version: "1.0", replicas: 1}
        tasks:
          - id: show
            type: {type: Command, command: echo, args: ["${version}", "${extra}", "${replicas}"]}
            condition: "${replicas} == 3"
    """)
    result = dagflow("run", str(wf), "--json", "--var", "version=1.10", "--var", "extra=1e3",
                     "--var", "replicas=3")
    assert result.returncode == 0, result.stderr
    show = json.loads(result.stdout)["task_states"]["show"]
    assert show["output"]["stdout"] == "1.10 1e3 3\n"


def test_failed_run_exits_1_with_the_error(tmp_path: Path) -> None:
    """A failing task makes the run exit 1 and say which task failed and why."""
    wf = write(tmp_path, """
        id: broken
        tasks:
          - id: boom
            type: {type: Command, command: sh, args: ["-c", "echo nope >&2; exit 3"]}
    """)
    result = dagflow("run", str(wf))
    assert result.returncode == 1
    assert "FAILED  boom: exit code 3: nope" in result.stdout
    assert "workflow failed: task 'boom' failed (above)" in result.stdout
    assert result.stdout.count("exit code 3: nope") == 2  # the task's line and the summary
    assert "broken Failed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_invalid_file_exits_2_with_positions(tmp_path: Path) -> None:
    """A file with mistakes exits 2, listing each with FILE:LINE:COL, and runs nothing."""
    wf = write(tmp_path, """
        id: bad
        tasks:
          - id: a
            type: {type: Command, command: touch, args: [RAN]}
            dependson: [b]
    """)
    result = dagflow("run", str(wf), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{wf}:6:5: unknown key 'dependson'" in result.stderr
    assert not (tmp_path / "RAN").exists()
    assert "Traceback" not in result.stderr


def test_unresolved_variable_exits_2_before_running(tmp_path: Path) -> None:
    """A ${NAME} that resolves nowhere is reported before anything runs (exit 2)."""
    wf = write(tmp_path, """
        id: needs-tag
        tasks:
          - id: build
            type: {type: Command, command: touch, args: ["image-${IMAGE_TAG_NOT_SET}"]}
    """)
    env = {k: v for k, v in ENV.items() if k != "IMAGE_TAG_NOT_SET"}
    result = dagflow("run", str(wf), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "IMAGE_TAG_NOT_SET" in result.stderr and "--var" in result.stderr
    assert list(tmp_path.iterdir()) == [wf]


def test_connection_option_names_a_query_database(tmp_path: Path) -> None:
    """--connection NAME=URL makes a SQLite file available to Query tasks as NAME."""
    wf = write(tmp_path, """
        id: etl
        tasks:
          - id: make
            type: {type: Query, query_type: warehouse, query: "CREATE TABLE t (v TEXT)"}
          - id: put
            type: {type: Query, query_type: warehouse,
                   query: "INSERT INTO t VALUES (:v)", parameters: {v: "${value}"}}
            depends_on: [make]
          - id: get
            type: {type: Query, query_type: warehouse, query: "SELECT v FROM t"}
            depends_on: [put]
    """)
    db = tmp_path / "wh.db"
    result = dagflow("run", str(wf), "--json", "--var", "value=42x",
                     "--connection", f"warehouse=sqlite:///{db}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["task_states"]["get"]["output"]["data"] == [{"v": "42x"}]


def test_bad_option_values_exit_2(tmp_path: Path) -> None:
    """--var without '=' and --connection without a URL are refused with exit 2."""
    wf = write(tmp_path, "id: w\ntasks: [{id: a, type: {type: Command, command: 'true'}}]\n")
    for args in (["--var", "novalue"], ["--connection", "db"]):
        result = dagflow("run", str(wf), *args)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "write NAME=" in result.stderr


def test_auto_approve_passes_gates(tmp_path: Path) -> None:
    """--auto-approve approves every gate as 'system'."""
    wf = write(tmp_path, """
        id: gated
        tasks:
          - id: gate
            type: {type: Approval, approvers: [alice@example.com]}
          - id: deploy
            type: {type: Command, command: echo, args: [deployed]}
            depends_on: [gate]
    """)
    result = dagflow("run", str(wf), "--auto-approve", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["task_states"]["gate"]["output"]["data"]["approvers"] \
        == ["system"]


def test_run_help_teaches(tmp_path: Path) -> None:
    """`dagflow run --help` shows the options, the exit codes and examples."""
    result = dagflow("run", "--help")
    assert result.returncode == 0
    for text in ("--var", "--connection", "--auto-approve", "--json", "--store",
                 "Exit codes", "130", "Examples"):
        assert text in result.stdout


def test_a_store_url_dagflow_cannot_use_is_bad_input(tmp_path: Path) -> None:
    """run --store foo://x exits 2 like every other command, naming the URLs it knows."""
    wf = write(tmp_path, """
        id: one
        tasks:
          - id: a
            type: {type: Command, command: echo}
    """)
    result = dagflow("run", str(wf), "--store", "foo://x")
    assert result.returncode == 2
    assert "unknown store URL 'foo://x'" in result.stderr and "sqlite:///" in result.stderr
    assert "Traceback" not in result.stderr


def test_reading_commands_do_not_create_the_default_store(tmp_path: Path) -> None:
    """In a directory without .dagflow/, list and approvals say there is nothing and leave
    no database behind."""
    env = {k: v for k, v in os.environ.items() if k != "DAGFLOW_STORE"}
    listed = dagflow("list", cwd=tmp_path, env=env)
    pending = dagflow("approvals", cwd=tmp_path, env=env)
    as_json = dagflow("approvals", "--json", cwd=tmp_path, env=env)
    assert (listed.returncode, pending.returncode, as_json.returncode) == (0, 0, 0)
    assert "no approval is waiting" in pending.stdout and json.loads(as_json.stdout) == []
    assert not (tmp_path / ".dagflow").exists()
