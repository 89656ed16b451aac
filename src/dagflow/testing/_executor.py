"""``check_executor``: the contract of a :class:`~dagflow.TaskExecutor`, as a kit.

The engine owns retries, timeouts and cancellation; the executor runs one attempt and
must let the engine stop it. So the kit checks what the engine relies on: a result is a
:class:`~dagflow.TaskOutput`, a failure is an exception, the attempt runs
``context.spec`` (the type with every ``${...}`` replaced), and cancelling the scope
around ``execute_task`` ends it promptly, leaving no process or task of it behind.

Processes are found through ``/proc`` (Linux): the attempt's are the new descendants of
this process, and anything that shares their session or process group (a grandchild
whose parent has exited). Elsewhere the kit checks everything but processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import attrs

from .._context import TaskContext
from .._models import TaskDefinition, TaskOutput
from .._protocols import TaskExecutor
from ._common import named, short

__all__ = ["check_executor"]

# How long a task that succeeds or fails may take before the kit calls it stuck.
_ATTEMPT_SECONDS = 30.0
# How long the kit waits for the slow task to start a process before it cancels anyway
# (an executor that runs tasks in this process starts none).
_START_SECONDS = 0.25
_POLL_SECONDS = 0.01
_CONCURRENT = 8


async def check_executor(
    executor: TaskExecutor,
    *,
    succeeds: TaskDefinition,
    fails: TaskDefinition,
    slow: TaskDefinition,
    context: Callable[[TaskContext], TaskContext] | None = None,
    cancel_within: float = 2.0,
) -> None:
    """Run the :class:`~dagflow.TaskExecutor` contract against ``executor``.

    The checks, in order: ``succeeds`` returns a :class:`~dagflow.TaskOutput`, also
    when 8 attempts of it run at once; ``fails`` raises an exception
    (:class:`~dagflow.TaskExecutionFailed`, or any other ``Exception``) instead of
    returning; the attempt runs ``context.spec``, not ``task.type`` (``fails`` with the
    spec of ``succeeds`` must succeed, and ``succeeds`` with the spec of ``fails`` must
    fail); cancelling an anyio cancel scope around an attempt of ``slow`` ends it within
    ``cancel_within`` seconds, with the cancellation propagating (not swallowed, not
    turned into a result or another error), and leaves no process (on Linux) and no task
    of the attempt running. The kit cancels ``slow`` once it has started a process, or
    after a quarter of a second. It stops at the first violation, and kills any process a
    failed cancellation check left behind.

    Args:
        executor: The executor to check.
        succeeds: A task the executor completes (for the default executor, a Command
            ``echo ok``).
        fails: A task whose attempt fails (a Command ``false``).
        slow: A task that runs until it is cancelled, for seconds at least (a Command
            ``sleep 30``).
        context: Given the context the kit built for an attempt, returns the one to use:
            add the resources, settings or clock your executor needs
            (``lambda ctx: attrs.evolve(ctx, workdir=str(tmp_path))``).
        cancel_within: Seconds a cancelled attempt may take to end (the default
            executor's Command tasks get SIGTERM and, after
            ``EngineSettings.kill_grace_seconds``, SIGKILL).

    Raises:
        AssertionError: The executor broke the contract; the message names the check and
            what happened (``"check_executor: a task that fails: execute_task returned
            TaskOutput(...) ..."``).
    """
    kit = "check_executor"
    attempts = _Attempts(executor, context)
    with named(kit, "a task that succeeds"):
        await attempts.succeed(succeeds, succeeds.type)
    with named(kit, "concurrent attempts"):
        async with anyio.create_task_group() as tg:
            for n in range(_CONCURRENT):
                tg.start_soon(attempts.succeed, succeeds, succeeds.type,
                              f"attempt {n + 1} of {_CONCURRENT} run at once", n)
    with named(kit, "a task that fails"):
        await attempts.fail(fails, fails.type)
    with named(kit, "context.spec, not task.type"):
        await attempts.succeed(fails, succeeds.type, "the failing task given the spec of "
                               "the one that succeeds (run context.spec, not task.type)")
        await attempts.fail(succeeds, fails.type, "the succeeding task given the spec of "
                            "the one that fails (run context.spec, not task.type)")
    with named(kit, "cancellation"):
        await _check_cancel(attempts, slow, cancel_within)


@attrs.define
class _Attempts:
    """Builds each attempt's context and runs it."""

    executor: TaskExecutor
    adjust: Callable[[TaskContext], TaskContext] | None
    instance_id: str = attrs.Factory(lambda: f"kit-{uuid.uuid4().hex}")

    def context(self, task: TaskDefinition, spec: Any, n: int | None = None) -> TaskContext:
        """The context of one attempt of ``task`` that runs ``spec``."""
        ctx = TaskContext(task_id=task.id, spec=spec, instance_id=self.instance_id,
                          workflow_id="kit-executor", task=task, loop_index=n,
                          idempotency_key=f"{self.instance_id}/{task.id}/{n}")
        return self.adjust(ctx) if self.adjust is not None else ctx

    async def succeed(self, task: TaskDefinition, spec: Any, what: str = "",
                      n: int | None = None) -> None:
        """An attempt that must return a TaskOutput (``what`` says which, if not plain)."""
        what = f"{what}: execute_task" if what else "execute_task"
        try:
            with anyio.fail_after(_ATTEMPT_SECONDS):
                output = await self.executor.execute_task(task, self.context(task, spec, n))
        except TimeoutError:
            raise AssertionError(f"{what} did not return within "
                                 f"{_ATTEMPT_SECONDS:.0f} s") from None
        except Exception as exc:
            raise AssertionError(f"{what} raised {type(exc).__name__} "
                                 f"({exc}), expected a TaskOutput") from exc
        assert isinstance(output, TaskOutput), \
            f"{what} returned {short(output)}, not a TaskOutput"

    async def fail(self, task: TaskDefinition, spec: Any, what: str = "") -> None:
        """An attempt that must raise (``what`` says which, if not plain)."""
        what = f"{what}: execute_task" if what else "execute_task"
        try:
            with anyio.fail_after(_ATTEMPT_SECONDS):
                output = await self.executor.execute_task(task, self.context(task, spec))
        except TimeoutError:
            raise AssertionError(f"{what} did not end within "
                                 f"{_ATTEMPT_SECONDS:.0f} s") from None
        except Exception:
            return
        raise AssertionError(f"{what} returned {short(output)}: a failed "
                             "attempt must raise (TaskExecutionFailed, carrying the output)")


# --------------------------------------------------------------------------- cancelling


async def _check_cancel(attempts: _Attempts, slow: TaskDefinition, within: float) -> None:
    """Cancel an attempt of ``slow`` once it runs; it must end promptly, leaving nothing."""
    processes = _Processes()
    tasks_before = {task.id for task in anyio.get_running_tasks()}
    outcome: list[str] = []  # what the attempt did instead of being cancelled
    ended = anyio.Event()
    scope = anyio.CancelScope()

    async def attempt() -> None:
        try:
            with scope:
                try:
                    output = await attempts.executor.execute_task(
                        slow, attempts.context(slow, slow.type))
                except Exception as exc:
                    outcome.append(f"raised {type(exc).__name__} ({exc})")
                else:
                    outcome.append(f"returned {short(output)}")
        finally:
            ended.set()

    killed: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(attempt)
        for _ in range(round(_START_SECONDS / _POLL_SECONDS)):
            if ended.is_set() or processes.alive():
                break
            await anyio.sleep(_POLL_SECONDS)
        if ended.is_set():
            raise AssertionError(
                f"the slow task ended by itself ({outcome[0] if outcome else 'cancelled'}) "
                "before it was cancelled: pass one that runs until it is cancelled")
        scope.cancel()
        cancelled_at = anyio.current_time()
        with anyio.move_on_after(within):
            await ended.wait()
        if not ended.is_set():
            # stuck: kill what it started, so that it may end and the kit can report
            killed = processes.kill()
            await ended.wait()
    took = anyio.current_time() - cancelled_at
    left = await _wait_for(processes.alive, max(0.1, within - took))
    left_names = processes.kill() if left else []
    assert took <= within, (
        f"execute_task ended {took:.2f} s after its cancel scope was cancelled (allowed: "
        f"{within:g} s){' and only once the kit killed ' + ', '.join(killed) if killed else ''}")
    assert not outcome, (
        f"execute_task {outcome[0]} after its cancel scope was cancelled: it must let "
        "the cancellation propagate")
    assert not left_names, (
        f"the cancelled attempt left {len(left_names)} process(es) running (the kit killed "
        f"them): {', '.join(left_names)}")

    def stray_tasks() -> list[str]:
        return [str(task.name) for task in anyio.get_running_tasks()
                if task.id not in tasks_before]

    stray = await _wait_for(stray_tasks, max(0.1, within - took))
    assert not stray, f"the cancelled attempt left tasks running: {', '.join(stray)}"


async def _wait_for(found: Callable[[], list[str]], seconds: float) -> list[str]:
    """Look for leftovers until there are none or ``seconds`` have passed; return them."""
    left = found()
    with anyio.move_on_after(seconds):
        while left:  # nothing signals that another process has exited
            await anyio.sleep(_POLL_SECONDS)
            left = found()
    return left


@attrs.frozen
class _Proc:
    """One line of ``/proc/PID/stat``, the parts the kit needs."""

    pid: int
    ppid: int
    group: int
    session: int
    state: str
    name: str


def _read_processes() -> dict[int, _Proc] | None:
    """Every process, from ``/proc``; None where there is no ``/proc`` (not Linux)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    table: dict[int, _Proc] = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue  # exited meanwhile
        head, _, rest = raw.rpartition(b")")
        fields = rest.split()
        table[int(entry)] = _Proc(int(entry), int(fields[1]), int(fields[2]), int(fields[3]),
                                  fields[0].decode(), head.partition(b"(")[2].decode(
                                      errors="replace"))
    return table if os.getpid() in table else None


@attrs.define
class _Processes:
    """The processes an attempt started, told apart from those that ran before it."""

    before: set[int] = attrs.field(init=False)
    ours: set[int] = attrs.field(init=False, factory=set)

    def __attrs_post_init__(self) -> None:
        self.before = set(_read_processes() or ())

    def _live(self) -> list[_Proc]:
        table = _read_processes()
        if table is None:
            return []
        children: dict[int, list[int]] = {}
        for proc in table.values():
            children.setdefault(proc.ppid, []).append(proc.pid)
        stack = [os.getpid()]
        while stack:
            for pid in children.get(stack.pop(), ()):
                if pid not in self.before:
                    self.ours.add(pid)
                stack.append(pid)
        return [p for p in table.values()
                if p.pid not in self.before and p.state not in ("Z", "X")
                and (p.pid in self.ours or p.group in self.ours or p.session in self.ours)]

    def alive(self) -> list[str]:
        """The attempt's processes that still run, as ``"pid 123 (sleep)"``."""
        return [f"pid {p.pid} ({p.name})" for p in self._live()]

    def kill(self) -> list[str]:
        """SIGKILL the attempt's processes that still run; return what was killed."""
        live = self._live()
        for proc in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGKILL)
        return [f"pid {p.pid} ({p.name})" for p in live]
