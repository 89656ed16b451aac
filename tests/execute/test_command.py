"""CommandHandler against real child processes (``python -c ...``), on asyncio and trio."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from dagflow._context import Redactor, Resources, TaskContext
from dagflow._errors import TaskExecutionFailed
from dagflow._execute import command
from dagflow._execute.command import CommandHandler
from dagflow._models import Command
from dagflow._settings import EngineSettings

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

OnLine = Callable[[str, str], Awaitable[None]]


def _python(code: str, *args: str, env: dict[str, str] | None = None,
            working_dir: str | None = None) -> Command:
    return Command(command=sys.executable, args=("-c", code, *args), env=env or {},
                   working_dir=working_dir)


def _context(tmp_path: Path, spec: Command, *, environ: dict[str, str] | None = None,
             redactor: Redactor | None = None, on_line: OnLine | None = None,
             max_output_bytes: int = 1024 * 1024, grace: float = 2.0) -> TaskContext:
    settings = EngineSettings(max_output_bytes=max_output_bytes, kill_grace_seconds=grace)
    return TaskContext(
        task_id="t", spec=spec, workdir=str(tmp_path),
        environ=dict(os.environ) if environ is None else environ,
        redactor=Redactor() if redactor is None else redactor,
        on_line=on_line, resources=Resources(settings=settings),
    )


def _recorder() -> tuple[list[tuple[str, str]], OnLine]:
    lines: list[tuple[str, str]] = []

    async def on_line(stream: str, line: str) -> None:
        lines.append((stream, line))

    return lines, on_line


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie counts as dead (here pid 1 may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel instead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


async def _assert_gone(pids: list[int], within: float = 3.0) -> None:
    for _ in range(int(within / 0.05)):
        if not any(_alive(pid) for pid in pids):
            return
        await anyio.sleep(0.05)
    assert not [pid for pid in pids if _alive(pid)]


def _is_dir(printed: str | None, expected: Path) -> bool:
    return os.path.samefile((printed or "").strip(), expected)


async def _cancel_once_printed(tmp_path: Path, code: str, *,
                               grace: float = 2.0) -> tuple[list[str], float]:
    """Run ``code`` until it prints a line, cancel; return its lines and the cancel's cost."""
    lines: list[str] = []
    printed = anyio.Event()

    async def on_line(stream: str, line: str) -> None:
        lines.append(line)
        printed.set()

    ctx = _context(tmp_path, _python(code), on_line=on_line, grace=grace)
    async with anyio.create_task_group() as group:
        group.start_soon(CommandHandler(), ctx)
        with anyio.fail_after(5):
            await printed.wait()
        cancelled_at = time.monotonic()
        group.cancel_scope.cancel()
    return lines, time.monotonic() - cancelled_at


@pytest.mark.anyio
async def test_captures_stdout_stderr_and_exit_code(tmp_path: Path) -> None:
    """A successful command returns its stdout, stderr, exit code 0 and its duration."""
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    output = await CommandHandler()(_context(tmp_path, _python(code)))
    assert (output.stdout, output.stderr, output.exit_code) == ("out\n", "err\n", 0)
    assert output.metrics["duration_seconds"] > 0
    assert "stdout_truncated_bytes" not in output.metrics


@pytest.mark.anyio
async def test_spec_env_overrides_context_environ(tmp_path: Path) -> None:
    """The child sees ctx.environ plus spec.env, and spec.env wins on a clash."""
    code = ("import json, os; print(json.dumps({k: os.environ.get(k) "
            "for k in ('PARENT', 'SHARED', 'OWN')}))")
    spec = _python(code, env={"SHARED": "spec", "OWN": "own"})
    ctx = _context(tmp_path, spec, environ={"PARENT": "parent", "SHARED": "ctx"})
    output = await CommandHandler()(ctx)
    assert json.loads(output.stdout or "") == {"PARENT": "parent", "SHARED": "spec",
                                               "OWN": "own"}


@pytest.mark.anyio
async def test_relative_working_dir_resolves_against_workdir(tmp_path: Path) -> None:
    """A relative working_dir is taken relative to ctx.workdir."""
    (tmp_path / "sub").mkdir()
    spec = _python("import os; print(os.getcwd())", working_dir="sub")
    output = await CommandHandler()(_context(tmp_path, spec))
    assert _is_dir(output.stdout, tmp_path / "sub")


@pytest.mark.anyio
async def test_default_working_dir_is_workdir(tmp_path: Path) -> None:
    """Without working_dir the command runs in ctx.workdir."""
    output = await CommandHandler()(_context(tmp_path, _python("import os; print(os.getcwd())")))
    assert _is_dir(output.stdout, tmp_path)


@pytest.mark.anyio
async def test_nonzero_exit_fails_with_stderr_tail(tmp_path: Path) -> None:
    """A non-zero exit raises a retryable exit_code failure naming the last stderr line."""
    code = "import sys; print('partial'); sys.stderr.write('first\\nlast problem\\n\\n'); exit(3)"
    with pytest.raises(TaskExecutionFailed) as info:
        await CommandHandler()(_context(tmp_path, _python(code)))
    failure = info.value
    assert (failure.kind, failure.retryable) == ("exit_code", True)
    assert failure.reason == "exit code 3: last problem"
    assert failure.output.exit_code == 3
    assert failure.output.stdout == "partial\n"


@pytest.mark.anyio
async def test_killed_by_signal_names_the_signal(tmp_path: Path) -> None:
    """A child killed by a signal fails with 'killed by signal SIGTERM', kind signal."""
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    with pytest.raises(TaskExecutionFailed) as info:
        await CommandHandler()(_context(tmp_path, _python(code)))
    assert info.value.reason == "killed by signal SIGTERM"
    assert (info.value.kind, info.value.output.exit_code) == ("signal", -15)


@pytest.mark.anyio
async def test_missing_command_is_not_retryable(tmp_path: Path) -> None:
    """An unknown program fails at once, not retryable, with a one-line reason."""
    ctx = _context(tmp_path, Command(command="dagflow-no-such-program"))
    with pytest.raises(TaskExecutionFailed) as info:
        await CommandHandler()(ctx)
    failure = info.value
    assert (failure.kind, failure.retryable) == ("not_found", False)
    assert failure.reason.startswith(
        "command not found: 'dagflow-no-such-program' (looked in PATH=")
    assert "\n" not in failure.reason
    assert "Errno" not in failure.reason and "Traceback" not in str(failure)


@pytest.mark.anyio
async def test_non_executable_file_is_not_retryable(tmp_path: Path) -> None:
    """A file without the execute bit fails at once with kind not_executable."""
    (tmp_path / "script").write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(TaskExecutionFailed) as info:
        await CommandHandler()(_context(tmp_path, Command(command="./script")))
    assert (info.value.kind, info.value.retryable) == ("not_executable", False)
    assert info.value.reason == "command not executable: './script' (permission denied)"


@pytest.mark.anyio
async def test_missing_working_dir_is_not_retryable(tmp_path: Path) -> None:
    """A working_dir that does not exist fails at once, not retryable, naming the path."""
    ctx = _context(tmp_path, _python("pass", working_dir="nowhere"))
    with pytest.raises(TaskExecutionFailed) as info:
        await CommandHandler()(ctx)
    assert (info.value.kind, info.value.retryable) == ("not_found", False)
    assert info.value.reason == f"working directory does not exist: {tmp_path / 'nowhere'}"


@pytest.mark.anyio
async def test_shell_metacharacters_stay_literal(tmp_path: Path) -> None:
    """Shell syntax in args reaches the child as single, unchanged argv elements."""
    args = ["; touch PWNED #", "$(touch PWNED)", "`touch PWNED`", "a && b", "*", "${HOME}",
            "| touch PWNED", "two words", ""]
    spec = _python("import json, sys; print(json.dumps(sys.argv[1:]))", *args)
    output = await CommandHandler()(_context(tmp_path, spec))
    assert json.loads(output.stdout or "") == args
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.anyio
async def test_output_cap_keeps_head_without_deadlock(tmp_path: Path) -> None:
    """5 MB on each stream with a 1000-byte cap completes, keeps 1000 bytes, counts the rest."""
    code = ("import sys\nfor _ in range(100):\n"
            "    sys.stdout.write('o' * 50000); sys.stdout.flush()\n"
            "    sys.stderr.write('e' * 50000); sys.stderr.flush()\n")
    with anyio.fail_after(10):
        output = await CommandHandler()(_context(tmp_path, _python(code), max_output_bytes=1000))
    assert (output.stdout, output.stderr) == ("o" * 1000, "e" * 1000)
    assert output.metrics["stdout_truncated_bytes"] == 5_000_000 - 1000
    assert output.metrics["stderr_truncated_bytes"] == 5_000_000 - 1000


@pytest.mark.anyio
async def test_on_line_streams_lines_in_order(tmp_path: Path) -> None:
    """on_line gets each stream's lines in order, without newlines, the last partial one too."""
    code = ("import sys\nsys.stdout.write('one\\ntwo\\r\\n'); sys.stdout.flush()\n"
            "sys.stderr.write('err1\\nerr2\\n'); sys.stderr.flush()\nsys.stdout.write('three')")
    lines, on_line = _recorder()
    output = await CommandHandler()(_context(tmp_path, _python(code), on_line=on_line))
    assert [line for stream, line in lines if stream == "stdout"] == ["one", "two", "three"]
    assert [line for stream, line in lines if stream == "stderr"] == ["err1", "err2"]
    assert output.stdout == "one\ntwo\r\nthree"


@pytest.mark.anyio
async def test_long_line_is_cut_when_streamed(tmp_path: Path) -> None:
    """A line far longer than 64 KiB is streamed cut and marked, but captured whole."""
    lines, on_line = _recorder()
    code = "import sys; sys.stdout.write('x' * 200000)"
    output = await CommandHandler()(_context(tmp_path, _python(code), on_line=on_line))
    assert lines == [("stdout", "x" * 65536 + " [line truncated]")]
    assert output.stdout == "x" * 200000


@pytest.mark.anyio
async def test_secret_redacted_in_every_output(tmp_path: Path) -> None:
    """A registered secret printed by the child shows as *** in stdout, stderr and lines."""
    code = "import sys; print('token=hunter2-xyz'); print('auth hunter2-xyz', file=sys.stderr)"
    lines, on_line = _recorder()
    ctx = _context(tmp_path, _python(code), redactor=Redactor(["hunter2-xyz"]), on_line=on_line)
    output = await CommandHandler()(ctx)
    assert (output.stdout, output.stderr) == ("token=***\n", "auth ***\n")
    assert sorted(lines) == [("stderr", "auth ***"), ("stdout", "token=***")]


@pytest.mark.anyio
async def test_secret_redacted_in_failure_reason(tmp_path: Path) -> None:
    """The stderr tail quoted in a failure reason has secrets replaced too."""
    code = "import sys; sys.exit('bad password hunter2-xyz')"
    ctx = _context(tmp_path, _python(code), redactor=Redactor(["hunter2-xyz"]))
    with pytest.raises(TaskExecutionFailed) as info:
        await CommandHandler()(ctx)
    assert info.value.reason == "exit code 1: bad password ***"
    assert "hunter2" not in str(info.value)


@pytest.mark.anyio
async def test_secret_across_the_cap_is_dropped_whole(tmp_path: Path) -> None:
    """A secret cut in two by max_output_bytes is left out, not half kept."""
    code = "import sys; sys.stdout.write('a' * 15 + 'SECRETVALUE123' + 'b' * 100)"
    lines, on_line = _recorder()
    ctx = _context(tmp_path, _python(code), redactor=Redactor(["SECRETVALUE123"]),
                   on_line=on_line, max_output_bytes=20)
    output = await CommandHandler()(ctx)
    assert output.stdout == "a" * 15
    assert lines == [("stdout", "a" * 15)]
    assert output.metrics["stdout_truncated_bytes"] == 129 - 20


@pytest.mark.anyio
async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """Cancelling the handler kills the child and the grandchild it started."""
    code = ("import os, subprocess, time\n"
            "child = subprocess.Popen(['sleep', '60'])\n"
            "print(os.getpid(), child.pid, flush=True)\ntime.sleep(60)\n")
    lines, on_line = _recorder()
    ctx = _context(tmp_path, _python(code), on_line=on_line, grace=0.5)
    with anyio.move_on_after(1) as scope:
        await CommandHandler()(ctx)
    assert scope.cancelled_caught
    pids = [int(pid) for pid in lines[0][1].split()]
    assert len(pids) == 2
    await _assert_gone(pids)


@pytest.mark.anyio
async def test_child_ignoring_sigterm_is_killed_after_grace(tmp_path: Path) -> None:
    """A child that ignores SIGTERM is SIGKILLed once kill_grace_seconds have passed."""
    code = ("import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print(os.getpid(), flush=True)\ntime.sleep(30)\n")
    lines, took = await _cancel_once_printed(tmp_path, code, grace=0.5)
    assert 0.45 <= took < 2.0
    await _assert_gone([int(lines[0])])


@pytest.mark.anyio
async def test_cancellation_is_prompt(tmp_path: Path) -> None:
    """Cancelling a sleeping child returns within a second and leaves no process behind."""
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(30)"
    lines, took = await _cancel_once_printed(tmp_path, code)
    assert took < 1.0
    await _assert_gone([int(lines[0])])


@pytest.mark.anyio
async def test_background_process_holding_pipes_does_not_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that exits while its background child holds stdout returns; the child dies."""
    monkeypatch.setattr(command, "_DRAIN_SECONDS", 0.2)
    code = ("import subprocess\nchild = subprocess.Popen(['sleep', '60'])\n"
            "print(child.pid, flush=True)\n")
    ctx = _context(tmp_path, _python(code), grace=0.3)
    with anyio.fail_after(5):
        output = await CommandHandler()(ctx)
    assert output.exit_code == 0
    await _assert_gone([int(output.stdout or "")])


@pytest.mark.anyio
async def test_slow_on_line_still_gets_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines still buffered when the command exits all reach a slow on_line callback."""
    monkeypatch.setattr(command, "_DRAIN_SECONDS", 0.2)
    received: list[str] = []

    async def slow_on_line(stream: str, line: str) -> None:
        await anyio.sleep(0.1)
        received.append(line)

    code = "for n in range(6): print(n)"
    output = await CommandHandler()(_context(tmp_path, _python(code), on_line=slow_on_line))
    assert received == [str(n) for n in range(6)]
    assert output.stdout == "".join(f"{n}\n" for n in range(6))


@pytest.mark.anyio
async def test_failing_on_line_stops_the_command(tmp_path: Path) -> None:
    """An error raised by on_line propagates as itself and kills the command."""
    pids: list[int] = []

    async def failing_on_line(stream: str, line: str) -> None:
        pids.append(int(line))
        raise ValueError("sink is full")

    code = "import os, time; print(os.getpid(), flush=True); time.sleep(30)"
    ctx = _context(tmp_path, _python(code), on_line=failing_on_line)
    with anyio.fail_after(5), pytest.raises(ValueError, match="sink is full"):
        await CommandHandler()(ctx)
    await _assert_gone(pids)
