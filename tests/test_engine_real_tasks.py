"""The engine with real parts: subprocesses, an HTTP server on 127.0.0.1, SQLite files;
timeouts and cancellation really stop processes; secrets never leak."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

import dagflow
from dagflow import TaskStatus, WorkflowState
from dagflow._events import event_to_dict
from dagflow._serde import make_converter

pytestmark = pytest.mark.anyio
PY = sys.executable


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture
def flaky_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Answers 503 twice, then 200 with JSON; records every request's headers."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(dict(self.headers))
            ok = len(seen) > 2
            body = json.dumps({"attempt": len(seen)}).encode() if ok else b"busy"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json" if ok else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


async def test_idempotency_key_is_the_same_on_every_retry(
        make_workflow: Any, flaky_server: tuple[str, list[dict[str, str]]]) -> None:
    """An Http task retried after two 503s sends one Idempotency-Key three times."""
    url, seen = flaky_server
    wf = make_workflow({"id": "charge", "type": {"type": "Http", "method": "POST",
                                                 "url": url + "/charge", "body": "{}"},
                        "retry_policy": {"max_attempts": 3, "initial_delay_ms": 10}})
    async with dagflow.Engine() as engine:
        inst = await engine.run(wf)
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["charge"].output.data == {"attempt": 3}
    keys = {headers["Idempotency-Key"] for headers in seen}
    assert len(seen) == 3 and len(keys) == 1 and keys != {""}


async def test_task_timeout_leaves_no_process_behind(make_workflow: Any,
                                                     tmp_path: Path) -> None:
    """A Command that outlives its timeout is killed with its whole process group."""
    pids = tmp_path / "pids"
    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen(['sleep', '60']); "
              f"open({str(pids)!r}, 'w').write(f'{{p.pid}}'); time.sleep(60)")
    wf = make_workflow({"id": "hang", "type": {"type": "Command", "command": PY,
                                               "args": ["-c", script]},
                        "timeout": 1})
    start = time.monotonic()
    async with dagflow.Engine() as engine:
        inst = await engine.run(wf)
    assert time.monotonic() - start < 5
    assert inst.state == WorkflowState.FAILED
    assert "timed out after 1s" in inst.task_states["hang"].error
    grandchild = int(pids.read_text())
    with anyio.fail_after(3):
        while alive(grandchild):  # noqa: ASYNC110 - nothing to wait on but the kernel
            await anyio.sleep(0.05)


async def test_cancel_stops_everything_within_a_second(make_workflow: Any) -> None:
    """Cancelling a run of five 30-second commands ends it in under a second."""
    wf = make_workflow(*({"id": f"sleep{i}", "type": {"type": "Command", "command": "sleep",
                                                       "args": ["30"]}} for i in range(5)))
    async with dagflow.Engine() as engine:
        inst = await engine.create_workflow(wf)
        await engine.start_workflow(inst.id)
        async for event in engine.stream_events(inst.id):
            if type(event).__name__ == "TaskStarted" and event.task_id == "sleep4":
                break
        await anyio.sleep(0.2)  # let the processes start
        start = time.monotonic()
        await engine.cancel_workflow(inst.id)
        final = await engine.wait(inst.id)
        took = time.monotonic() - start
    assert took < 1.0
    assert final.state == WorkflowState.CANCELLED
    assert {s.state for s in final.task_states.values()} == {TaskStatus.CANCELLED}


async def test_secrets_never_appear_in_events_outputs_state_or_logs(
        make_workflow: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A secret used by commands is *** in stdout, stderr, streamed lines, failure
    reasons, events, the stored instance and log records."""
    secret = "s3cr3t-Token-9981"
    wf = make_workflow(
        {"id": "use", "config": {"stream_output": True},
         "type": {"type": "Command", "command": PY, "args": [
             "-c", "import sys; print('token=' + sys.argv[1]); "
                   "print('err ' + sys.argv[1], file=sys.stderr)", "${secrets.API_TOKEN}"]}},
        {"id": "fail", "depends_on": ["use"], "config": {"on_failure": "Continue"},
         "type": {"type": "Command", "command": PY, "args": [
             "-c", "import sys; sys.exit('bad ' + sys.argv[1])", "${secrets.API_TOKEN}"]}},
        {"id": "echo-output", "depends_on": ["use"],
         "type": {"type": "Command", "command": "echo", "args": ["${tasks.use.stdout}"]}})
    caplog.set_level(logging.DEBUG)
    async with dagflow.Engine(environ={**os.environ, "API_TOKEN": secret}) as engine:
        inst = await engine.run(wf)
        events = [e async for e in engine.stream_events(inst.id)]
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["use"].output.stdout == "token=***\n"
    assert "***" in inst.task_states["fail"].error
    converter = make_converter()
    dumped = json.dumps(converter.unstructure(inst), default=str)
    dumped += json.dumps([event_to_dict(converter, e) for e in events], default=str)
    dumped += caplog.text
    assert secret not in dumped
    assert any(type(e).__name__ == "TaskOutputLine" and e.line == "token=***" for e in events)


async def test_missing_secret_is_an_error_before_running(make_workflow: Any) -> None:
    """A ${secrets.X} that no provider has stops the run before any task starts."""
    wf = make_workflow({"id": "a", "type": {"type": "Command", "command": "echo",
                                            "args": ["${secrets.NOPE_NOT_SET}"]}})
    async with dagflow.Engine(environ={}) as engine:
        with pytest.raises(dagflow.ValidationError, match="no secret named 'NOPE_NOT_SET'"):
            await engine.run(wf)


@pytest.mark.parametrize("value", ["; touch PWNED #", "$(touch PWNED)", "`touch PWNED`",
                                   "a && touch PWNED", "* ?", "| tee PWNED", "'\"\\"])
async def test_shell_metacharacters_in_variables_stay_literal(
        make_workflow: Any, tmp_path: Path, value: str) -> None:
    """A variable full of shell syntax reaches the program as one literal argument."""
    wf = make_workflow({"id": "echo", "type": {"type": "Command", "command": PY, "args": [
        "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", "${payload}", "x${payload}"]}})
    async with dagflow.Engine() as engine:
        inst = await engine.run(wf, {"payload": value}, workdir=tmp_path)
    assert json.loads(inst.task_states["echo"].output.stdout) == [value, "x" + value]
    assert not (tmp_path / "PWNED").exists()


async def test_query_on_a_sqlite_file(make_workflow: Any, tmp_path: Path) -> None:
    """A Query task writes and reads a SQLite file through a named connection, with its
    parameters bound."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    wf = make_workflow(
        {"id": "create", "type": {"type": "Query", "query_type": "app",
                                  "query": "CREATE TABLE users (name TEXT)"}},
        {"id": "insert", "depends_on": ["create"],
         "type": {"type": "Query", "query_type": "app",
                  "query": "INSERT INTO users (name) VALUES (:name)",
                  "parameters": {"name": "${who}"}}},
        {"id": "select", "depends_on": ["insert"],
         "type": {"type": "Query", "query_type": "app", "query": "SELECT name FROM users"}},
        variables={"who": "Robert'); DROP TABLE users; --"})
    async with dagflow.Engine(settings=dagflow.EngineSettings(connections={"app": url})) as engine:
        inst = await engine.run(wf)
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["select"].output.data == [{"name": "Robert'); DROP TABLE users; --"}]
