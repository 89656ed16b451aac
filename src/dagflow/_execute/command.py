"""The Command task type: run one program with an argv list, never through a shell.

The program starts in a session of its own, so its process group holds it and everything
it starts. A timeout or a cancel stops that whole group: SIGTERM, then SIGKILL after
``EngineSettings.kill_grace_seconds``; the program is always reaped, and the cancellation
is raised again. Each of stdout and stderr keeps at most ``max_output_bytes`` (the rest
is read and dropped, so the program never blocks on a full pipe). Everything that leaves
this module (captured text, streamed lines, failure reasons) has secrets replaced by
``***``, and a secret cut in two by a limit is dropped whole, not half kept.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar

import anyio
import attrs
from anyio.abc import ByteReceiveStream, Process

from .._context import Redactor, TaskContext
from .._errors import TaskExecutionFailed
from .._models import Command, TaskOutput

__all__ = ["CommandHandler"]

_READ_CHUNK = 64 * 1024
# Longest line handed to ``on_line``; a longer line is cut there, so live output stays
# readable (the captured stdout/stderr keep the whole line, up to max_output_bytes).
_MAX_LINE_BYTES = 64 * 1024
# Bytes kept beyond every cut, so that a secret crossing the cut can be recognised and
# dropped whole. Secrets longer than this (rare: a large PEM bundle) may be half kept.
_SECRET_SLACK = 8 * 1024
# After the program exits, how long a pipe may stay silent without reaching end-of-file
# before we stop reading: a background process it started still holds the pipe, and
# reading to end-of-file would never end. Its group is then stopped.
_DRAIN_SECONDS = 1.0
# Bound on reaping after SIGKILL, so an unkillable (uninterruptible) process cannot hang
# the engine's cancellation.
_REAP_SECONDS = 5.0
_POLL_SECONDS = 0.05
_REASON_TAIL_CHARS = 200
_LINE_CUT_MARK = " [line truncated]"
# Start failures worth another attempt: the machine was short of something for a moment.
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM})


@attrs.frozen
class CommandHandler:
    """Runs a :class:`~dagflow.Command` task: ``[command, *args]`` as a child process.

    The environment is the context's ``environ`` with the spec's ``env`` on top; the
    working directory is the spec's ``working_dir`` (relative to ``ctx.workdir``), or
    ``ctx.workdir``. stdin is ``/dev/null``. With ``ctx.on_line`` set, every line kept of
    stdout and stderr is passed to it as it arrives (redacted, without its newline; a
    line longer than 64 KiB is cut and marked ``[line truncated]``).

    A program killed by a signal gets a negative exit code (-15 for SIGTERM), as in
    :mod:`subprocess`. If the program exits while something it started in the background
    keeps stdout or stderr open, reading stops once the pipe has been silent for a
    second, and that process group is stopped like a cancelled one.
    """

    busy: ClassVar[bool] = True

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        """Run one attempt and return what the program printed and its exit code.

        Args:
            ctx: The attempt's context; ``ctx.spec`` is an interpolated ``Command``.

        Returns:
            The redacted stdout and stderr, exit code 0, and ``metrics`` with
            ``duration_seconds`` (plus ``stdout_truncated_bytes`` /
            ``stderr_truncated_bytes`` when output was dropped).

        Raises:
            TaskExecutionFailed: kind ``not_found`` (no such program or working
                directory), ``not_executable`` or ``start_failed`` when the program
                cannot start; kind ``exit_code`` for a non-zero exit and ``signal``
                when a signal killed it, both retryable and carrying the output.
            TypeError: ``ctx.spec`` is not a ``Command``.
        """
        spec = ctx.spec
        if not isinstance(spec, Command):
            raise TypeError(f"CommandHandler needs a Command spec, got {type(spec).__name__}")
        settings = ctx.settings
        redactor = ctx.redactor
        env = {**ctx.environ, **spec.env}
        cwd = _working_dir(spec.working_dir, ctx.workdir, redactor)
        out = _Capture("stdout", settings.max_output_bytes, redactor, ctx.on_line)
        err = _Capture("stderr", settings.max_output_bytes, redactor, ctx.on_line)

        started = time.monotonic()
        process = await _start([spec.command, *spec.args], cwd, env, redactor)
        try:
            returncode = await _communicate(process, out, err, settings.kill_grace_seconds)
            await out.flush()
            await err.flush()
        except BaseException:
            # shielded: the group must die even though we are being cancelled
            with anyio.CancelScope(shield=True):
                await _stop_group(process, settings.kill_grace_seconds)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await _close(process)

        metrics = {"duration_seconds": time.monotonic() - started}
        for capture in (out, err):
            if capture.dropped:
                metrics[f"{capture.name}_truncated_bytes"] = float(capture.dropped)
        output = TaskOutput(stdout=out.text(), stderr=err.text(), exit_code=returncode,
                            metrics=metrics)
        if returncode == 0:
            return output
        if returncode < 0:
            reason, kind = f"killed by signal {_signal_name(-returncode)}", "signal"
        else:
            reason, kind = f"exit code {returncode}", "exit_code"
        tail = _last_line(output.stderr or "")
        if tail:
            reason = f"{reason}: {tail}"
        raise TaskExecutionFailed(reason=reason, retryable=True, output=output, kind=kind)


@attrs.define(repr=False)
class _Capture:
    """One output stream of one attempt: the bytes kept, and the lines sent to on_line."""

    name: str
    limit: int
    redactor: Redactor
    on_line: Callable[[str, str], Awaitable[None]] | None
    # the first ``limit + _SECRET_SLACK`` bytes; only ``limit`` of them are ever shown
    kept: bytearray = attrs.Factory(bytearray)
    total: int = 0
    abandoned: bool = False  # stopped reading: silent pipe held open after the exit
    _exited: bool = False
    _receiving: anyio.CancelScope | None = None
    _line_start: int = 0  # where the line not yet passed to on_line begins in ``kept``
    _scanned: int = 0  # how far ``kept`` has been searched for newlines
    _flushed: bool = False

    def __repr__(self) -> str:
        return f"<_Capture {self.name} total={self.total} kept={min(self.total, self.limit)}>"

    @property
    def dropped(self) -> int:
        """Bytes read but not kept."""
        return max(0, self.total - self.limit)

    async def pump(self, stream: ByteReceiveStream | None) -> None:
        """Read ``stream`` to its end, keeping the head and streaming its lines."""
        if stream is None:
            return
        while True:
            with anyio.CancelScope() as self._receiving:
                if self._exited:
                    self._receiving.deadline = anyio.current_time() + _DRAIN_SECONDS
                try:
                    chunk = await stream.receive(_READ_CHUNK)
                except anyio.EndOfStream:
                    return
            if self._receiving.cancelled_caught:
                self.abandoned = True
                return
            self.total += len(chunk)
            room = self.limit + _SECRET_SLACK - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
            await self._emit_complete_lines()

    def program_exited(self) -> None:
        """From now on, stop reading once the pipe stays silent for a while."""
        self._exited = True
        if self._receiving is not None:
            # a deadline only, never a cancel: data still buffered in the pipe is read
            self._receiving.deadline = min(self._receiving.deadline,
                                           anyio.current_time() + _DRAIN_SECONDS)

    async def _emit_complete_lines(self) -> None:
        if self.on_line is None:
            return
        end = min(len(self.kept), self.limit)
        while True:
            newline = self.kept.find(b"\n", self._scanned, end)
            if newline < 0:
                self._scanned = end
                return
            start, self._line_start = self._line_start, newline + 1
            self._scanned = newline + 1
            stop = newline
            if stop > start and self.kept[stop - 1] == ord("\r"):
                stop -= 1  # a CRLF line ending goes as a whole
            await self._emit(start, stop, stop)

    async def flush(self) -> None:
        """Pass the last line, even without a newline, to on_line (once)."""
        if self.on_line is None or self._flushed:
            return
        self._flushed = True
        await self._emit_complete_lines()
        end = min(len(self.kept), self.limit)
        if self._line_start < end:
            # the line may go on past ``limit``: what follows is read-ahead for redaction
            await self._emit(self._line_start, end, len(self.kept))

    async def _emit(self, start: int, end: int, available: int) -> None:
        """Send ``kept[start:end]`` (``kept[end:available]`` continues it) to on_line."""
        assert self.on_line is not None
        cut = min(end - start, _MAX_LINE_BYTES)
        data = bytes(self.kept[start:min(available, start + cut + _SECRET_SLACK)])
        line = _redact_head(self.redactor, data, cut)
        if cut < end - start:
            line += _LINE_CUT_MARK
        await self.on_line(self.name, line)

    def text(self) -> str:
        """The kept output, decoded and redacted."""
        return _redact_head(self.redactor, bytes(self.kept), self.limit)


def _redact_head(redactor: Redactor, data: bytes, cut: int) -> str:
    """``data[:cut]`` decoded and redacted, without any secret that crosses ``cut``.

    ``data[cut:]`` is read-ahead: redacting with and without it gives the same text up
    to where a secret crosses the cut (there one has ``***``, the other the secret's
    first characters), so the common part is safe to show.
    """
    if len(data) <= cut:
        return redactor.text(data.decode("utf-8", errors="replace"))
    head = redactor.text(data[:cut].decode("utf-8", errors="replace"))
    if not redactor and (data[cut] & 0xC0) != 0x80:
        return head  # nothing to redact and no character cut in two
    whole = redactor.text(data.decode("utf-8", errors="replace"))
    return head[:_common_prefix_length(head, whole)]


def _common_prefix_length(a: str, b: str) -> int:
    # binary search over C-speed slice comparisons; a char-by-char loop is slow at 1 MiB
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _working_dir(working_dir: str | None, workdir: str, redactor: Redactor) -> str:
    """The directory to run in; fails (not retryable) when it is not a directory."""
    cwd = workdir if working_dir is None else os.path.join(workdir, working_dir)
    cwd = os.path.abspath(cwd)
    if not os.path.isdir(cwd):
        problem = "is not a directory" if os.path.exists(cwd) else "does not exist"
        raise TaskExecutionFailed(reason=redactor.text(f"working directory {problem}: {cwd}"),
                                  retryable=False, kind="not_found")
    return cwd


async def _start(argv: list[str], cwd: str, env: Mapping[str, str],
                 redactor: Redactor) -> Process:
    """Start ``argv`` in a new session; start failures become TaskExecutionFailed."""
    command = argv[0]
    try:
        # shielded: a cancellation that landed once the program was spawned but before
        # it was handed back would leave it running with nobody to stop it; arriving
        # a moment later, it finds the program where the caller stops and reaps it
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True,
            )
    except OSError as exc:
        reason, kind, retryable = _start_failure(exc, command, cwd, env)
        raise TaskExecutionFailed(reason=redactor.text(reason), retryable=retryable,
                                  kind=kind) from exc
    return process


def _start_failure(exc: OSError, command: str, cwd: str,
                   env: Mapping[str, str]) -> tuple[str, str, bool]:
    """(reason, kind, retryable) for an error raised while starting ``command``."""
    # subprocess names the directory when chdir failed and the program when exec failed
    if exc.filename == cwd:
        return f"working directory not usable: {cwd} ({exc.strerror})", "not_found", False
    if isinstance(exc, FileNotFoundError):
        if os.sep in command:
            where = f"no such file, relative to {cwd}" if not os.path.isabs(command) else (
                "no such file")
        else:
            where = f"looked in PATH={env.get('PATH', os.defpath)}"
        return f"command not found: {command!r} ({where})", "not_found", False
    if isinstance(exc, PermissionError):
        return f"command not executable: {command!r} (permission denied)", "not_executable", False
    if exc.errno == errno.ENOEXEC:
        return (f"command not executable: {command!r} (not a program, and no #! line)",
                "not_executable", False)
    return (f"could not start {command!r}: {exc.strerror or exc}", "start_failed",
            exc.errno in _TRANSIENT_ERRNOS)


async def _communicate(process: Process, out: _Capture, err: _Capture, grace: float) -> int:
    """Read both pipes while waiting for the program; return its return code."""
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(out.pump, process.stdout)
            group.start_soon(err.pump, process.stderr)
            returncode = await process.wait()
            out.program_exited()
            err.program_exited()
    except BaseExceptionGroup as exc_group:
        # a failing on_line callback: raise its own error, not a one-item group
        # (cancellations stay in their group, for the backend to unwrap)
        if len(exc_group.exceptions) == 1 and isinstance(exc_group.exceptions[0], Exception):
            raise exc_group.exceptions[0] from exc_group
        raise
    if out.abandoned or err.abandoned:
        # what the program left running in the background would write into closed pipes
        await _stop_group(process, grace)
    return returncode


async def _stop_group(process: Process, grace: float) -> None:
    """SIGTERM the program's process group, SIGKILL it after ``grace``; reap the program.

    Shield it when it runs because of a cancellation. The group id is the program's pid
    (it leads its own session), and that id cannot be reused while anyone in the group
    is alive.
    """
    pgid = process.pid
    _signal_group(pgid, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
        # grandchildren get the whole grace too, e.g. to clean up after themselves
        while _group_alive(pgid):  # noqa: ASYNC110 - nothing signals an emptied group
            await anyio.sleep(_POLL_SECONDS)
    _signal_group(pgid, signal.SIGKILL)
    with anyio.move_on_after(_REAP_SECONDS):
        await process.wait()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    # already gone (or the id is now someone else's): nothing of ours to stop
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Whether a member of the group still runs. On Linux zombies do not count: where
    pid 1 never reaps orphans (many containers), an exited grandchild would otherwise
    hold the group "alive" for the whole grace period."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True  # no /proc: a zombie costs the grace period, never a missed kill
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


async def _close(process: Process) -> None:
    """Close the pipes and, once the program is reaped, the process itself."""
    if process.returncode is not None:
        # also closes asyncio's pipe transports, which would otherwise warn when collected
        await process.aclose()
        return
    # never reaped (it outlived SIGKILL): aclose() would wait for it forever
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            await stream.aclose()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _last_line(text: str) -> str:
    """The last non-empty line of ``text``, shortened for a failure reason."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            if len(line) > _REASON_TAIL_CHARS:
                return line[: _REASON_TAIL_CHARS - 1] + "…"
            return line
    return ""
