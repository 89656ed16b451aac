"""On a terminal, ``dagflow run`` and ``dagflow events --follow`` show a live task table
(rich), then the run's summary; tested on a real pseudo-terminal."""

from __future__ import annotations

import errno
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX terminal")

ENV = {k: v for k, v in os.environ.items() if k != "DAGFLOW_STORE"}
TERMINAL_ENV = {**ENV, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "40"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][AB0-9]|\r")
SLOW = textwrap.dedent("""\
    id: slow
    tasks:
      - id: fetch_sources
        type: {type: Command, command: sleep, args: ["0.6"]}
      - id: compile_everything
        type: {type: Command, command: sleep, args: ["0.6"]}
        depends_on: [fetch_sources]
      - id: publish_artifacts
        type: {type: Command, command: echo, args: [done]}
        depends_on: [compile_everything]
    """)
TASKS = ("fetch_sources", "compile_everything", "publish_artifacts")


def on_terminal(*args: str, cwd: Path, timeout: float = 30) -> tuple[int, str]:
    """Run ``dagflow ARGS`` with a pseudo-terminal as stdout and stderr; its exit code and
    what it wrote, without the escape sequences."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "dagflow", *args], cwd=cwd,
                            env=TERMINAL_ENV, stdin=subprocess.DEVNULL, stdout=follower,
                            stderr=follower)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError as exc:  # EIO: the process closed the terminal
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return code, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


def test_run_on_a_terminal_shows_the_live_table_and_the_summary(tmp_path: Path) -> None:
    (tmp_path / "slow.yaml").write_text(SLOW)
    code, shown = on_terminal("run", "slow.yaml", "--store", "sqlite:///runs.db",
                              cwd=tmp_path)
    assert code == 0, shown
    assert re.search(r"task\s+state\s+attempt\s+time", shown), shown  # the table's header
    for task_id in TASKS:
        assert task_id in shown
    assert re.search(r"slow\s+running 1", shown), shown  # the state counts, live
    assert "slow Completed" in shown, shown
    assert "  start   fetch_sources" not in shown  # not the plain lines


def test_events_follow_on_a_terminal_shows_history_then_the_live_table(
        tmp_path: Path) -> None:
    (tmp_path / "slow.yaml").write_text(SLOW)
    run = subprocess.Popen([sys.executable, "-m", "dagflow", "run", "slow.yaml", "--store",
                            "sqlite:///runs.db"], cwd=tmp_path, env=ENV, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert run.stdout is not None
        first = run.stdout.readline()
        instance_id = re.match(r"instance (\S+) of slow", first)
        assert instance_id, first
        code, shown = on_terminal("events", instance_id.group(1), "--follow", "--store",
                                  "sqlite:///runs.db", cwd=tmp_path)
        assert run.wait(timeout=30) == 0
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate()
    assert code == 0, shown
    assert re.search(r"^\s+1  \d\d:\d\d:\d\d  ", shown, re.M), shown  # numbered history
    assert re.search(r"task\s+state\s+attempt\s+time", shown), shown
    for task_id in TASKS:
        assert task_id in shown
    assert "slow Completed" in shown, shown
