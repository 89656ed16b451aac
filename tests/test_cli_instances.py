"""The instance commands (status, list, events, resume, pause, cancel, rollback, retry,
recover, archive, checkpoints, restore) through the real entry point, on a SQLite store
shared by separate ``dagflow`` processes, as users run them."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV = {k: v for k, v in os.environ.items() if k != "DAGFLOW_STORE"}


def dagflow(*args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dagflow ARGS``; never raises on a non-zero exit."""
    return subprocess.run([sys.executable, "-m", "dagflow", *args], capture_output=True,
                          text=True, timeout=60, env=env or ENV)


class Background:
    """A ``dagflow`` process running alongside the test, its stdout read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "dagflow", *args], text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=ENV)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 15) -> str:
        """The first line (from the start) containing ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                if text in line:
                    return line
            try:
                self.seen.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} in {self.seen}") from None

    @property
    def instance_id(self) -> str:
        """The id from ``instance ID of WORKFLOW``, the first line of ``dagflow run``."""
        return self.wait_for("instance ").split()[1]

    def finish(self, timeout: float = 15) -> int:
        """Wait for the exit code (and keep the rest of the output in ``seen``)."""
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code


@pytest.fixture
def background() -> Iterator[list[Background]]:
    """Background processes started by a test; killed if the test leaves them running."""
    started: list[Background] = []
    yield started
    for bg in started:
        if bg.proc.poll() is None:
            bg.proc.kill()
        bg.proc.wait()
        bg.reader.join(timeout=5)


def write(directory: Path, text: str, name: str = "wf.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def store_of(directory: Path) -> str:
    return f"sqlite:///{directory}/s.db"


def status_json(instance_id: str, store: str) -> dict[str, object]:
    result = dagflow("status", instance_id, "--json", "--store", store)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def states(instance: dict[str, object]) -> dict[str, tuple[str, int]]:
    task_states = instance["task_states"]
    assert isinstance(task_states, dict)
    return {k: (v["state"], v["attempts"]) for k, v in task_states.items()}


def lines_of(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# A step that appends its name to `log`, and one that needs the file `needed`.
def log(name: str, then: str = "") -> str:
    return (f'{{type: Command, command: sh, args: ["-c", "echo {name} >> log'
            f'{"; " + then if then else ""}"]}}')


SLOW = f"""
    id: slow
    tasks:
      - id: first
        type: {log("first")}
      - id: nap
        depends_on: [first]
        type: {log("nap", "sleep 1")}
      - id: last
        depends_on: [nap]
        type: {log("last")}
"""

# `nap` sleeps on its first attempt only: long enough to be interrupted, quick on resume
NAP_ONCE = SLOW.replace("id: slow", "id: nap-once").replace(
    "sleep 1", "test -f napped || { touch napped; sleep 20; }")

NEEDS_FILE = f"""
    id: needs-file
    tasks:
      - id: one
        type: {log("one")}
      - id: two
        depends_on: [one]
        type: {log("two", "test -f needed")}
      - id: three
        depends_on: [two]
        type: {log("three")}
"""


# --------------------------------------------------------------------------- reading


class Runs:
    """A store holding one Completed run (with a loop) and, newer, one Failed run."""

    def __init__(self, directory: Path) -> None:
        self.store = store_of(directory)
        wf = write(directory, f"""
            id: looped
            tasks:
              - id: prepare
                type: {log("prepare")}
              - id: each
                depends_on: [prepare]
                type:
                  type: Loop
                  items: [red, green, blue]
                  task_template:
                    id: paint
                    type: {{type: Command, command: echo, args: ["${{item}}"]}}
        """)
        done = dagflow("run", str(wf), "--store", self.store, "--json")
        assert done.returncode == 0, done.stderr
        self.completed: str = json.loads(done.stdout)["id"]
        bad = write(directory, """
            id: broken
            tasks:
              - id: boom
                type: {type: Command, command: sh, args: ["-c", "echo no disk >&2; exit 3"]}
        """, "broken.yaml")
        failed = dagflow("run", str(bad), "--store", self.store, "--json")
        assert failed.returncode == 1
        self.failed: str = json.loads(failed.stdout)["id"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Two finished runs, shared by the tests that only read."""
    return Runs(tmp_path_factory.mktemp("runs"))


def test_status_shows_state_times_and_tasks_with_loop_iterations(runs: Runs) -> None:
    """status prints the state, times and one row per task, iterations under their loop."""
    result = dagflow("status", runs.completed, "--store", runs.store)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^state\s+Completed$", out, re.M)
    assert re.search(r"^created\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", out, re.M)
    assert re.search(r"^completed\s+.* \(took ", out, re.M)
    assert re.search(r"^prepare\s+Completed\s+1\s+\d", out, re.M)
    rows = [line for line in out.splitlines() if "each" in line]
    assert [row.split()[0] for row in rows] == ["each", "each[0]", "each[1]", "each[2]"]
    assert rows[1].startswith("  each[0]")


def test_status_of_a_failed_run_shows_the_error_and_what_to_do(runs: Runs) -> None:
    """A Failed instance shows its error, the task's shortened error, and the retry command."""
    result = dagflow("status", runs.failed, "--store", runs.store)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^error\s+task 'boom' failed: exit code 3", result.stdout, re.M)
    assert re.search(r"^boom\s+Failed\s+1\s+\S+\s+exit code 3", result.stdout, re.M)
    assert f"dagflow retry {runs.failed} --store {runs.store}" in result.stdout


def test_status_json_is_the_instance_like_run_json(runs: Runs) -> None:
    """status --json prints the instance: id, state, task_states with attempts, error."""
    instance = status_json(runs.failed, runs.store)
    assert (instance["id"], instance["state"]) == (runs.failed, "Failed")
    assert instance["error"] == "task 'boom' failed: exit code 3: no disk"
    assert states(instance) == {"boom": ("Failed", 1)}


def test_list_prints_newest_first_and_filters(runs: Runs) -> None:
    """list shows one line per instance, newest first; --state (any case), --workflow and
    --limit narrow it."""
    result = dagflow("list", "--store", runs.store)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["id", "workflow", "state", "created", "duration"]
    assert [row.split()[:3] for row in rows] == [[runs.failed, "broken", "Failed"],
                                                 [runs.completed, "looped", "Completed"]]
    completed = dagflow("list", "--state", "completed", "--store", runs.store).stdout
    assert runs.completed in completed and runs.failed not in completed
    failed = dagflow("list", "--state", "FAILED", "--store", runs.store).stdout
    assert runs.failed in failed and runs.completed not in failed
    assert runs.completed not in dagflow("list", "--workflow", "broken", "--store",
                                         runs.store).stdout
    limited = dagflow("list", "--limit", "1", "--store", runs.store)
    assert runs.failed in limited.stdout and runs.completed not in limited.stdout
    assert "--limit 0 shows all" in limited.stderr


def test_list_json_is_a_list_of_instances(runs: Runs) -> None:
    """list --json prints only a JSON list of instances, newest first."""
    result = dagflow("list", "--json", "--store", runs.store)
    instances = json.loads(result.stdout)
    assert [(i["id"], i["state"]) for i in instances] == [(runs.failed, "Failed"),
                                                          (runs.completed, "Completed")]


def test_list_with_a_bad_state_exits_2_naming_the_valid_ones(runs: Runs) -> None:
    """An unknown --state is bad input: exit 2, listing the states."""
    result = dagflow("list", "--state", "sleeping", "--store", runs.store)
    assert result.returncode == 2
    assert result.stderr.startswith("dagflow: error: --state 'sleeping' is not a state")
    assert "Running" in result.stderr and "RolledBack" in result.stderr


def test_events_prints_the_history_with_sequence_numbers(runs: Runs) -> None:
    """events prints one numbered line per event, from the start to the end of the run."""
    result = dagflow("events", runs.completed, "--store", runs.store)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [int(line.split()[0]) for line in lines] == list(range(1, len(lines) + 1))
    assert "workflow started" in lines[0] and "workflow completed" in lines[-1]
    assert any(re.search(r"done\s+each\[2\]", line) for line in lines)


def test_events_json_is_one_event_per_line_and_after_skips(runs: Runs) -> None:
    """events --json prints jsonl; --after N starts after sequence number N."""
    every = dagflow("events", runs.completed, "--json", "--store", runs.store)
    events = [json.loads(line) for line in every.stdout.splitlines()]
    assert events[0]["type"] == "WorkflowStarted" and events[-1]["type"] == "WorkflowCompleted"
    later = dagflow("events", runs.completed, "--json", "--after", "3", "--store", runs.store)
    assert [json.loads(line) for line in later.stdout.splitlines()] == events[3:]
    text = dagflow("events", runs.completed, "--after", str(len(events) - 1), "--store",
                   runs.store)
    assert len(text.stdout.splitlines()) == 1 and "workflow completed" in text.stdout


@pytest.mark.parametrize("args", [
    ["status", "ID"], ["events", "ID"], ["resume", "ID"], ["pause", "ID"], ["cancel", "ID"],
    ["rollback", "ID"], ["retry", "ID"], ["checkpoints", "ID"], ["restore", "ID", "CP"],
])
def test_unknown_id_exits_2_without_traceback(runs: Runs, args: list[str]) -> None:
    """Every command taking an id says there is no such instance (exit 2), no traceback."""
    args = [a.replace("ID", "no-such-id") for a in args]
    result = dagflow(*args, "--store", runs.store)
    assert result.returncode == 2
    assert result.stderr == f"dagflow: error: no workflow instance no-such-id in {runs.store}\n"


def test_missing_store_file_is_not_created_by_reading(tmp_path: Path) -> None:
    """Reading from a store file that does not exist reports it (exit 2) and creates
    nothing; list and recover just find nothing."""
    store = store_of(tmp_path)
    result = dagflow("status", "abc", "--store", store)
    assert result.returncode == 2
    assert "no workflow instance abc" in result.stderr and "no such file" in result.stderr
    assert dagflow("list", "--store", store).returncode == 0
    assert dagflow("list", "--json", "--store", store).stdout.strip() == "[]"
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(("command", "options"), [
    ("status", ["--json", "--store"]),
    ("list", ["--state", "--limit", "--workflow", "--json", "--store"]),
    ("events", ["--follow", "--after", "--json", "--store"]),
    ("resume", ["--store", "--connection", "--auto-approve", "--json"]),
    ("pause", ["--store"]),
    ("cancel", ["--reason", "--store"]),
    ("rollback", ["--store", "--json"]),
    ("retry", ["--from", "--store", "--json"]),
    ("recover", ["--store"]),
    ("archive", ["--older-than", "--json", "--store"]),
    ("checkpoints", ["--json", "--store"]),
    ("restore", ["--store"]),
])
def test_help_teaches_options_and_examples(command: str, options: list[str]) -> None:
    """Each command's --help names its options and shows examples of itself."""
    result = dagflow(command, "--help")
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout
    assert "Examples:" in result.stdout and f"dagflow {command}" in result.stdout


# --------------------------------------------------------------------------- live runs


def test_events_follow_shows_a_run_of_another_process_to_its_end(
        tmp_path: Path, background: list[Background]) -> None:
    """events --follow of a run in another process prints its live events and ends with it."""
    wf = write(tmp_path, SLOW)
    run = Background("run", str(wf), "--store", store_of(tmp_path))
    background.append(run)
    run.wait_for("start   first")
    follow = dagflow("events", run.instance_id, "--follow", "--store", store_of(tmp_path))
    assert follow.returncode == 0, follow.stderr
    assert re.search(r"done\s+nap", follow.stdout)
    assert follow.stdout.splitlines()[-1].endswith("workflow completed")
    assert run.finish() == 0


def interrupted_run(tmp_path: Path, background: list[Background]) -> tuple[str, str]:
    """A run stopped by Ctrl-C while ``nap`` ran (exit 130): its id and store."""
    wf = write(tmp_path, NAP_ONCE)
    store = store_of(tmp_path)
    run = Background("run", str(wf), "--store", store)
    background.append(run)
    run.wait_for("start   nap")
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130
    return run.instance_id, store


def test_resume_completes_an_interrupted_run(tmp_path: Path,
                                             background: list[Background]) -> None:
    """Ctrl-C leaves the run Paused (exit 130) with a checkpoint; resume runs the
    interrupted task again (attempt 2), not the completed one, and exits 0."""
    instance_id, store = interrupted_run(tmp_path, background)
    assert status_json(instance_id, store)["state"] == "Paused"
    listed = dagflow("checkpoints", instance_id, "--json", "--store", store)
    assert [c["workflow_state"] for c in json.loads(listed.stdout)] == ["Paused"]

    resumed = dagflow("resume", instance_id, "--store", store)
    assert resumed.returncode == 0, resumed.stderr
    assert "start   nap (attempt 2)" in resumed.stdout
    assert "nap-once Completed" in resumed.stdout
    assert states(status_json(instance_id, store)) == {
        "first": ("Completed", 1), "nap": ("Completed", 2), "last": ("Completed", 1)}
    assert lines_of(tmp_path / "log") == ["first", "nap", "nap", "last"]

    again = dagflow("resume", instance_id, "--store", store)
    assert again.returncode == 2 and "already ended (Completed)" in again.stderr


def test_restore_rewinds_to_a_checkpoint_and_runs_on(tmp_path: Path,
                                                     background: list[Background]) -> None:
    """restore ID CHECKPOINT_ID runs an interrupted instance on from its checkpoint."""
    instance_id, store = interrupted_run(tmp_path, background)
    listed = dagflow("checkpoints", instance_id, "--store", store)
    found = re.search(r"^(\S+)\s+\d{4}-\S+ \S+ UTC\s+Paused\s+first$", listed.stdout, re.M)
    assert found, listed.stdout
    missing = dagflow("restore", instance_id, "cp_nope", "--store", store)
    assert missing.returncode == 2 and "has no checkpoint cp_nope" in missing.stderr

    restored = dagflow("restore", instance_id, found.group(1), "--store", store, "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["state"] == "Completed"
    assert lines_of(tmp_path / "log") == ["first", "nap", "nap", "last"]


def two_steps(tmp_path: Path, background: list[Background]) -> tuple[Background, str]:
    """``dagflow run`` of a then b, in the background, once a started; a runs until the
    test creates the file ``release`` (so no other command races its end)."""
    wf = write(tmp_path, f"""
        id: two-steps
        tasks:
          - id: a
            type: {log("a", "while [ ! -e release ]; do sleep 0.05; done")}
          - id: b
            depends_on: [a]
            type: {log("b")}
    """)
    store = store_of(tmp_path)
    run = Background("run", str(wf), "--store", store)
    background.append(run)
    run.wait_for("start   a")
    return run, store


def test_pause_and_resume_a_run_of_another_process(tmp_path: Path,
                                                   background: list[Background]) -> None:
    """pause lets the running task finish and starts nothing new; resume makes that
    process carry on to the end."""
    run, store = two_steps(tmp_path, background)
    paused = dagflow("pause", run.instance_id, "--store", store)
    assert paused.returncode == 0, paused.stderr
    assert f"instance {run.instance_id}: Paused" in paused.stdout
    (tmp_path / "release").touch()
    run.wait_for("done    a")
    time.sleep(0.3)
    assert lines_of(tmp_path / "log") == ["a"]  # b did not start
    assert status_json(run.instance_id, store)["state"] == "Paused"
    assert dagflow("pause", run.instance_id, "--store", store).returncode == 2

    resumed = dagflow("resume", run.instance_id, "--store", store)
    assert resumed.returncode == 0, resumed.stderr
    assert "resume requested" in resumed.stdout and "two-steps Completed" in resumed.stdout
    assert run.finish() == 0
    assert lines_of(tmp_path / "log") == ["a", "b"]


def test_cancel_stops_a_run_of_another_process(tmp_path: Path,
                                               background: list[Background]) -> None:
    """cancel of a run in another process stops it within seconds (that process exits 1);
    cancelling it again is exit 2."""
    wf = write(tmp_path, """
        id: forever
        tasks:
          - id: wait
            type: {type: Command, command: sleep, args: ["30"]}
    """)
    store = store_of(tmp_path)
    run = Background("run", str(wf), "--store", store)
    background.append(run)
    run.wait_for("start   wait")
    began = time.monotonic()
    cancelled = dagflow("cancel", run.instance_id, "--reason", "wrong tag", "--store", store)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"instance {run.instance_id}: Cancelled (wrong tag)" in cancelled.stdout
    assert run.finish(timeout=10) == 1
    assert time.monotonic() - began < 8
    instance = status_json(run.instance_id, store)
    assert (instance["state"], instance["error"]) == ("Cancelled", "wrong tag")
    again = dagflow("cancel", run.instance_id, "--store", store)
    assert again.returncode == 2
    assert "already ended (Cancelled): nothing to cancel" in again.stderr


def test_pause_and_cancel_report_the_instance_as_json(tmp_path: Path,
                                                      background: list[Background]) -> None:
    """pause --json and cancel --json print the instance as it is once the request is
    handled: Paused with the running task finished, then Cancelled with the reason."""
    run, store = two_steps(tmp_path, background)
    paused = dagflow("pause", run.instance_id, "--store", store, "--json")
    assert paused.returncode == 0, paused.stderr
    instance = json.loads(paused.stdout)
    assert (instance["id"], instance["state"]) == (run.instance_id, "Paused")
    cancelled = dagflow("cancel", run.instance_id, "--reason", "not today", "--store", store,
                        "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    instance = json.loads(cancelled.stdout)
    assert (instance["state"], instance["error"]) == ("Cancelled", "not today")
    assert "b" not in instance["task_states"] or (
        instance["task_states"]["b"]["state"] == "Cancelled")
    run.finish(timeout=10)
    assert lines_of(tmp_path / "log") == ["a"]


# --------------------------------------------------------------------------- after failure


def test_rollback_runs_the_undo_steps_of_a_failed_run(tmp_path: Path) -> None:
    """rollback runs each completed task's rollback step and ends RolledBack (exit 0)."""
    wf = write(tmp_path, """
        id: deploy
        tasks:
          - id: create
            type: {type: Command, command: touch, args: [created]}
            rollback: {type: Command, command: touch, args: [undone]}
          - id: check
            depends_on: [create]
            type: {type: Command, command: "false"}
    """)
    store = store_of(tmp_path)
    run = dagflow("run", str(wf), "--store", store, "--json")
    assert run.returncode == 1
    instance_id = json.loads(run.stdout)["id"]
    result = dagflow("rollback", instance_id, "--store", store)
    assert result.returncode == 0, result.stderr
    assert f"instance {instance_id}: RolledBack (undid create)" in result.stdout
    assert (tmp_path / "undone").exists()
    assert status_json(instance_id, store)["state"] == "RolledBack"
    again = dagflow("rollback", instance_id, "--store", store)
    assert again.returncode == 2 and "only Failed or Cancelled" in again.stderr


def test_rollback_whose_step_fails_exits_1_naming_it(tmp_path: Path) -> None:
    """A failing rollback step leaves the instance Failed; rollback says which (exit 1)."""
    wf = write(tmp_path, """
        id: deploy
        tasks:
          - id: create
            type: {type: Command, command: "true"}
            rollback: {type: Command, command: sh, args: ["-c", "exit 4"]}
          - id: check
            depends_on: [create]
            type: {type: Command, command: "false"}
    """)
    store = store_of(tmp_path)
    instance_id = json.loads(dagflow("run", str(wf), "--store", store, "--json").stdout)["id"]
    result = dagflow("rollback", instance_id, "--store", store)
    assert result.returncode == 1
    assert "rollback step of 'create' failed" in result.stdout
    assert "Traceback" not in result.stderr


def test_retry_after_fixing_the_cause_reuses_completed_tasks(tmp_path: Path) -> None:
    """retry runs the failed task and what follows, under the same id, and does not run
    completed tasks again."""
    wf = write(tmp_path, NEEDS_FILE)
    store = store_of(tmp_path)
    run = dagflow("run", str(wf), "--store", store, "--json")
    assert run.returncode == 1
    instance_id = json.loads(run.stdout)["id"]
    (tmp_path / "needed").touch()
    result = dagflow("retry", instance_id, "--store", store)
    assert result.returncode == 0, result.stderr
    assert "needs-file Completed" in result.stdout
    assert lines_of(tmp_path / "log") == ["one", "two", "two", "three"]
    instance = status_json(instance_id, store)
    assert states(instance)["one"] == ("Completed", 1)
    done = dagflow("retry", instance_id, "--store", store)
    assert done.returncode == 2 and "only Failed or Cancelled" in done.stderr


def test_retry_from_a_task_runs_it_and_its_downstream_again(tmp_path: Path) -> None:
    """retry --from TASK runs TASK again even though it completed; an unknown TASK is
    exit 2."""
    wf = write(tmp_path, NEEDS_FILE)
    store = store_of(tmp_path)
    instance_id = json.loads(dagflow("run", str(wf), "--store", store, "--json").stdout)["id"]
    unknown = dagflow("retry", instance_id, "--from", "nope", "--store", store)
    assert unknown.returncode == 2 and "no task 'nope'" in unknown.stderr
    (tmp_path / "needed").touch()
    result = dagflow("retry", instance_id, "--from", "one", "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "Completed"
    assert lines_of(tmp_path / "log") == ["one", "two", "one", "two", "three"]


# --------------------------------------------------------------------------- crashes, archive


def crashed_run(tmp_path: Path) -> tuple[str, str]:
    """A run whose process died (SIGKILL, sent by its first task the first time it runs)
    while that task ran: its lease is still live."""
    wf = write(tmp_path, SLOW.replace("sleep 1", "true").replace(
        log("first"), log("first", "[ -e crashed ] || { touch crashed; kill -9 $PPID; }")))
    store = store_of(tmp_path)
    crash = dagflow("run", str(wf), "--store", store)
    assert crash.returncode == -9, crash.stderr
    return crash.stdout.split()[1], store


def test_resume_refuses_an_instance_another_process_holds(tmp_path: Path) -> None:
    """While a (dead) process's lease is live, resume exits 1 with the engine's reason and
    recover leaves the instance alone."""
    instance_id, store = crashed_run(tmp_path)
    result = dagflow("resume", instance_id, "--store", store)
    assert result.returncode == 1
    assert "is being run by" in result.stderr and "cannot be resumed twice" in result.stderr
    recovered = dagflow("recover", "--store", store)
    assert recovered.returncode == 0
    assert f"skipped {instance_id}" in recovered.stdout
    assert "nothing to recover" in recovered.stdout


def test_recover_resumes_an_instance_whose_process_died(tmp_path: Path) -> None:
    """Once the dead process's lease is gone, recover runs the instance to the end and
    prints a summary line for it (exit 0)."""
    import anyio

    from dagflow._storage import open_storage

    instance_id, store = crashed_run(tmp_path)

    async def expire() -> None:  # what 30 s of waiting would do
        storage = open_storage(store)
        holder, _ = await storage.lease_of(instance_id)
        assert holder is not None
        await storage.release_lease(instance_id, holder)
        await storage.close()

    anyio.run(expire)
    result = dagflow("recover", "--store", store)
    assert result.returncode == 0, result.stderr
    assert f"recovering 1 instance(s): {instance_id}" in result.stdout
    assert f"{instance_id}  slow Completed" in result.stdout
    assert states(status_json(instance_id, store))["first"] == ("Completed", 2)


def test_recover_with_nothing_to_recover_says_so(tmp_path: Path) -> None:
    """recover on a store with no orphaned instance exits 0 and says there was nothing."""
    result = dagflow("recover", "--store", store_of(tmp_path))
    assert result.returncode == 0
    assert "nothing to recover" in result.stdout


def test_archive_moves_old_completed_instances(tmp_path: Path) -> None:
    """archive --older-than archives Completed instances that ended before then, and
    list --state archived shows them; a bad duration is exit 2."""
    wf = write(tmp_path, f"id: quick\ntasks:\n  - id: a\n    type: {log('a')}\n")
    store = store_of(tmp_path)
    instance_id = json.loads(dagflow("run", str(wf), "--store", store, "--json").stdout)["id"]
    kept = dagflow("archive", "--older-than", "30d", "--store", store)
    assert kept.returncode == 0 and "archived 0 instances" in kept.stdout
    archived = dagflow("archive", "--older-than", "0s", "--store", store, "--json")
    assert archived.returncode == 0, archived.stderr
    assert json.loads(archived.stdout) == [instance_id]
    listed = dagflow("list", "--state", "archived", "--store", store)
    assert instance_id in listed.stdout and "Archived" in listed.stdout
    bad = dagflow("archive", "--older-than", "soon", "--store", store)
    assert bad.returncode == 2 and "30d, 12h, 90m, 45s" in bad.stderr
