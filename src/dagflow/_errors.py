"""The errors dagflow raises. All of them derive from :class:`WorkflowError`::

    WorkflowError
     ├── ParseError                 not YAML/JSON, or the wrong shape/type  .problems
     ├── ValidationError            well-formed but wrong                   .problems .warnings
     │    └── CycleDetected         dependencies loop                       .path
     ├── InvalidStateTransition     .from_state .to_state
     ├── WorkflowNotFound           .instance_id
     ├── TaskExecutionFailed        .task_id .reason .retryable .retry_after
     ├── DependencyNotSatisfied     .task_id .dependency
     ├── ApprovalError              .approval_id
     │    └── ApprovalTimeout
     ├── CheckpointError            .checkpoint_id
     └── StorageError

Errors carry their context as keyword-only attributes. They carry no exit codes: the CLI
maps error types to exit codes in one table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

__all__ = [
    "ApprovalError",
    "ApprovalTimeout",
    "CheckpointError",
    "CycleDetected",
    "DependencyNotSatisfied",
    "InvalidStateTransition",
    "ParseError",
    "Problem",
    "StorageError",
    "TaskExecutionFailed",
    "ValidationError",
    "WorkflowError",
    "WorkflowNotFound",
]


@attrs.frozen
class Problem:
    """One thing wrong with a workflow file, with where it is.

    ``str(problem)`` is the line the CLI prints, e.g.
    ``deploy.yaml:14:5: unknown key 'dependson' (did you mean 'depends_on'?)``.

    Attributes:
        message: What is wrong and, where possible, how to fix it.
        file: The file name, when the text came from a file.
        line: 1-based line number, when known.
        col: 1-based column number, when known.
        path: Where in the document, as keys and indexes (``("tasks", 3, "type")``).
    """

    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    path: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        where = [str(p) for p in (self.file, self.line, self.col) if p is not None]
        if not where and self.path:
            where = [_format_path(self.path)]
        return ":".join([*where, " " + self.message]) if where else self.message


def _format_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class WorkflowError(Exception):
    """Base class of every error dagflow raises."""


class _ProblemsError(WorkflowError):
    """An error made of one or more :class:`Problem` s, reported together."""

    def __init__(
        self,
        problems: Iterable[Problem] | str,
        *,
        warnings: Iterable[Problem] = (),
    ) -> None:
        if isinstance(problems, str):
            problems = (Problem(problems),)
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.warnings: tuple[Problem, ...] = tuple(warnings)
        super().__init__("\n".join(str(p) for p in self.problems))


class ParseError(_ProblemsError):
    """The text is not YAML/JSON, breaks a safety limit, or has the wrong shape or types.

    Attributes:
        problems: Every problem found, each with file, line and column where known.
    """


class ValidationError(_ProblemsError):
    """The workflow is well-formed but wrong: duplicate ids, unknown dependencies, cycles...

    Attributes:
        problems: Every problem found, each with file, line and column where known.
        warnings: Things that are allowed but probably not meant.
    """


class CycleDetected(ValidationError):
    """The dependencies form a cycle.

    Attributes:
        path: The task ids around the cycle, first one repeated at the end
            (``("a", "b", "c", "a")``).
    """

    def __init__(
        self,
        problems: Iterable[Problem] | str,
        *,
        path: tuple[str, ...],
        warnings: Iterable[Problem] = (),
    ) -> None:
        super().__init__(problems, warnings=warnings)
        self.path = path


class InvalidStateTransition(WorkflowError):
    """A state change that the state machine does not allow (``Completed -> Running``)."""

    def __init__(self, *, from_state: str, to_state: str, instance_id: str | None = None) -> None:
        self.from_state = from_state
        self.to_state = to_state
        self.instance_id = instance_id
        where = f" for instance {instance_id}" if instance_id else ""
        super().__init__(f"invalid state transition{where}: {from_state} -> {to_state}")


class WorkflowNotFound(WorkflowError):
    """No workflow instance has this id."""

    def __init__(self, *, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"workflow instance not found: {instance_id}")


class TaskExecutionFailed(WorkflowError):
    """A task attempt failed.

    Task handlers raise it to fail an attempt with a clear reason and what was captured so
    far (any other exception fails the attempt too, with its type and message as the
    reason).

    Attributes:
        task_id: The task ('' when a handler does not know it; the engine fills it in).
        reason: What went wrong, for people (``exit code 2``, ``HTTP 503 from ...``).
        retryable: Whether the task's retry policy may try again.
        output: What the attempt produced before failing (stdout, exit code, ...).
        kind: A short machine-readable kind (``exit_code``, ``http_status``, ``timeout``),
            matched by ``retryable_errors`` together with the reason.
        retry_after: Seconds the failing service asked to wait before the next attempt
            (an HTTP ``Retry-After``), or ``None``; the retry waits at least this long,
            up to the policy's ``max_delay_ms``.
    """

    def __init__(self, *, task_id: str = "", reason: str, retryable: bool = True,
                 output: Any = None, kind: str = "", retry_after: float | None = None) -> None:
        self.task_id = task_id
        self.reason = reason
        self.retryable = retryable
        self.output = output
        self.kind = kind
        self.retry_after = retry_after
        where = f"{task_id}: " if task_id else ""
        super().__init__(f"task execution failed: {where}{reason}")


class DependencyNotSatisfied(WorkflowError):
    """A task was asked to run before a dependency finished."""

    def __init__(self, *, task_id: str, dependency: str) -> None:
        self.task_id = task_id
        self.dependency = dependency
        super().__init__(f"dependency not satisfied: {task_id} needs {dependency}")


class ApprovalError(WorkflowError):
    """An approval could not be requested, granted or rejected."""

    def __init__(self, message: str, *, approval_id: str | None = None) -> None:
        self.approval_id = approval_id
        super().__init__(message)


class ApprovalTimeout(ApprovalError):
    """An approval gate reached its deadline without a decision."""


class CheckpointError(WorkflowError):
    """A checkpoint or a stored row is missing, corrupt or was tampered with.

    Attributes:
        checkpoint_id: The checkpoint concerned, if one.
        problems: What failed its checksum, one line each.
        partial: The instance as loaded without the rows that failed (for recovery from
            the last good checkpoint), if the error came from loading an instance.
    """

    def __init__(self, message: str, *, checkpoint_id: str | None = None,
                 problems: Iterable[str] = (), partial: Any = None) -> None:
        self.checkpoint_id = checkpoint_id
        self.problems = tuple(problems)
        self.partial = partial
        super().__init__(message)


class StorageError(WorkflowError):
    """The store could not read or write."""
