"""What ``dagflow run`` shows while a workflow runs: a live table on a terminal, plain
lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import datetime as dt
from typing import IO, Any

from .._events import (
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequired,
    RollbackFailed,
    RollbackStarted,
    RollbackTaskCompleted,
    RollbackTaskFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskOutputLine,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    WorkflowCancelled,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowPaused,
)
from .._models import TaskStatus, WorkflowInstance
from ._format import duration

__all__ = ["LiveProgress", "PlainProgress", "approval_hint", "progress_for", "summary"]


def approval_hint(event: ApprovalRequired, store_flag: str) -> list[str]:
    """The lines telling a person how to decide a gate."""
    people = ", ".join(event.approvers) or "(auto)"
    need = f"{event.min_approvals} of " if event.min_approvals > 1 else ""
    lines = [f"approval required for {event.task_id!r}: {need}{people}"]
    if event.approval_id:
        deadline = f" before {event.expires_at:%Y-%m-%d %H:%M:%S %Z}" if event.expires_at else ""
        lines.append(f"  approve{deadline} with:  dagflow approve {event.approval_id} "
                     f"--as EMAIL{store_flag}")
        lines.append(f"  or reject with:  dagflow reject {event.approval_id} --as EMAIL "
                     f"--reason TEXT{store_flag}")
    return lines


def summary(instance: WorkflowInstance) -> str:
    """One line: the final state, the duration and the task counts."""
    counts: dict[str, int] = {}
    for state in instance.task_states.values():
        if "[" in state.task_id or ":" in state.task_id:
            continue  # loop iterations and rollback steps are not tasks of the file
        counts[state.state.value.lower()] = counts.get(state.state.value.lower(), 0) + 1
    pending = len(instance.definition.tasks) - sum(counts.values())
    if pending > 0:
        counts["pending"] = counts.get("pending", 0) + pending
    took = ""
    if instance.started_at and instance.completed_at:
        took = f" in {duration((instance.completed_at - instance.started_at).total_seconds())}"
    parts = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    line = f"{instance.workflow_id} {instance.state}{took} ({parts})"
    if instance.error:
        line += f"\n  error: {instance.error}"
    return line


class PlainProgress:
    """One line per notable event, for logs and pipes."""

    def __init__(self, out: IO[str], store_flag: str = "") -> None:
        self.out = out
        self.store_flag = store_flag
        self.started: dict[str, dt.datetime] = {}
        self.failed: set[str] = set()  # tasks whose FAILED line was shown

    def __call__(self, event: WorkflowEvent) -> None:
        line = self.line(event)
        if line:
            print(line, file=self.out, flush=True)

    def line(self, event: WorkflowEvent) -> str | None:
        """The line for ``event`` (None: nothing to show)."""
        at = f"{event.timestamp:%H:%M:%S}"
        if isinstance(event, TaskStarted):
            self.started[event.task_id] = event.timestamp
            again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            return f"{at}  start   {event.task_id}{again}"
        if isinstance(event, TaskCompleted):
            began = self.started.get(event.task_id)
            took = f"  {duration((event.timestamp - began).total_seconds())}" if began else ""
            return f"{at}  done    {event.task_id}{took}"
        if isinstance(event, TaskFailed):
            self.failed.add(event.task_id)
            return f"{at}  FAILED  {event.task_id}: {event.error}"
        if isinstance(event, TaskRetrying):
            return (f"{at}  retry   {event.task_id} in {duration(event.delay_seconds)} "
                    f"(attempt {event.attempt} failed: {event.error})")
        if isinstance(event, TaskSkipped):
            return f"{at}  skip    {event.task_id}: {event.reason}"
        if isinstance(event, TaskCancelled):
            return f"{at}  cancel  {event.task_id}: {event.reason}"
        if isinstance(event, TaskOutputLine):
            return f"{at}  | {event.task_id}: {event.line}"
        if isinstance(event, ApprovalRequired):
            return "\n".join(f"{at}  {text}" if i == 0 else text
                             for i, text in enumerate(approval_hint(event, self.store_flag)))
        if isinstance(event, ApprovalGranted):
            return f"{at}  approved {event.task_id} by {event.approver}"
        if isinstance(event, ApprovalRejected):
            return f"{at}  rejected {event.task_id} by {event.approver}: {event.reason}"
        if isinstance(event, ApprovalExpired):
            return f"{at}  expired  approval of {event.task_id}"
        if isinstance(event, RollbackStarted):
            return f"{at}  rolling back {', '.join(event.tasks) or 'nothing'}"
        if isinstance(event, RollbackTaskCompleted):
            return f"{at}  undone  {event.task_id}"
        if isinstance(event, RollbackTaskFailed | RollbackFailed):
            return f"{at}  ROLLBACK FAILED: {event.error}"
        if isinstance(event, WorkflowFailed):
            cause, sep, _ = event.error.partition(" failed: ")
            if sep and cause in {f"task {t!r}" for t in self.failed}:
                return f"{at}  workflow failed: {cause} failed (above)"  # said once is enough
            return f"{at}  workflow failed: {event.error}"
        if isinstance(event, WorkflowCancelled):
            return f"{at}  workflow cancelled: {event.reason}"
        if isinstance(event, WorkflowPaused):
            return f"{at}  workflow paused"
        return None

    def close(self, instance: WorkflowInstance) -> None:
        """Print the summary."""
        print(summary(instance), file=self.out, flush=True)


class LiveProgress:
    """A live table on a terminal: state counts, running tasks with attempt and time, and
    the most recent results; notable lines scroll above it."""

    RECENT = 8

    def __init__(self, console: Any, definition: Any, store_flag: str = "") -> None:
        from rich.live import Live

        self.console = console
        self.definition = definition
        self.store_flag = store_flag
        self.plain = PlainProgress(console.file, store_flag)
        self.status: dict[str, TaskStatus] = {t.id: TaskStatus.PENDING
                                              for t in definition.tasks}
        self.attempt: dict[str, int] = {}
        self.started: dict[str, dt.datetime] = {}
        self.took: dict[str, float] = {}
        self.recent: list[str] = []
        self.now: dt.datetime | None = None
        self.live = Live(self._render(), console=console, refresh_per_second=8,
                         transient=True)
        self.live.start()

    def __call__(self, event: WorkflowEvent) -> None:
        self.now = event.timestamp
        task_id = getattr(event, "task_id", None)
        if isinstance(event, TaskStarted):
            self.status[event.task_id] = TaskStatus.RUNNING
            self.attempt[event.task_id] = event.attempt
            self.started.setdefault(event.task_id, event.timestamp)
        elif isinstance(event, ApprovalRequired) and task_id in self.status:
            self.status[event.task_id] = TaskStatus.WAITING_APPROVAL
        elif isinstance(event, TaskCompleted | TaskFailed | TaskSkipped | TaskCancelled):
            state = {TaskCompleted: TaskStatus.COMPLETED, TaskFailed: TaskStatus.FAILED,
                     TaskSkipped: TaskStatus.SKIPPED,
                     TaskCancelled: TaskStatus.CANCELLED}[type(event)]
            if task_id in self.status:
                self.status[task_id] = state
            began = self.started.get(task_id or "")
            if began is not None:
                self.took[task_id or ""] = (event.timestamp - began).total_seconds()
            self.recent = [*self.recent, task_id or ""][-self.RECENT:]
        if isinstance(event, TaskFailed | TaskRetrying | ApprovalRequired | ApprovalRejected
                      | ApprovalExpired | TaskOutputLine | RollbackStarted | RollbackFailed
                      | RollbackTaskFailed | WorkflowFailed | WorkflowCancelled):
            line = self.plain.line(event)
            if line:
                self.live.console.print(line, markup=False, highlight=False)
        self.live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        counts: dict[TaskStatus, int] = {}
        for state in self.status.values():
            counts[state] = counts.get(state, 0) + 1
        head = Text(f"{self.definition.id}  ", style="bold")
        head.append("  ".join(f"{state.value.lower()} {n}" for state, n in counts.items()))
        table = Table(box=None, padding=(0, 2), show_header=True, header_style="dim")
        table.add_column("task")
        table.add_column("state")
        table.add_column("attempt", justify="right")
        table.add_column("time", justify="right")
        styles = {TaskStatus.RUNNING: "cyan", TaskStatus.WAITING_APPROVAL: "magenta",
                  TaskStatus.COMPLETED: "green",
                  TaskStatus.FAILED: "red", TaskStatus.SKIPPED: "dim",
                  TaskStatus.CANCELLED: "yellow"}
        busy = (TaskStatus.RUNNING, TaskStatus.WAITING_APPROVAL)
        running = [t for t, s in self.status.items() if s in busy]
        shown = [*running[:20], *[t for t in self.recent if t not in running]]
        for task_id in shown:
            state = self.status.get(task_id, TaskStatus.PENDING)
            began = self.started.get(task_id)
            if state in busy and self.now is not None and began is not None:
                took = (self.now - began).total_seconds()
            else:
                took = self.took.get(task_id, 0.0)
            table.add_row(task_id, Text(state.value, style=styles.get(state, "")),
                          str(self.attempt.get(task_id, "")), duration(took) if took else "")
        return Group(head, table)

    def close(self, instance: WorkflowInstance) -> None:
        """Stop the live view and print the summary."""
        self.live.stop()
        self.console.print(summary(instance), markup=False, highlight=False)


def progress_for(out: IO[str], instance: WorkflowInstance, store_flag: str) -> Any:
    """The live table on a terminal (seeded with the tasks' states so far), else lines."""
    if not out.isatty():
        return PlainProgress(out, store_flag)
    from rich.console import Console

    live = LiveProgress(Console(file=out), instance.definition, store_flag)
    for task_id, state in instance.task_states.items():
        if task_id in live.status:
            live.status[task_id] = state.state
            live.attempt[task_id] = state.attempts
            if state.started_at is not None:
                live.started[task_id] = state.started_at
    return live
