"""What every ``dagflow`` command shares: the exit-code table, errors on stderr, and the
one place that opens stores and engines and runs a command's async body.

Exit codes (one table, here): 0 success · 1 the workflow failed, was cancelled or rolled
back · 2 bad input (unreadable file, invalid workflow, bad option, unknown id, a store
URL dagflow cannot use, a request the instance's state does not allow) · 130
interrupted. Errors go to stderr, one line each, without a traceback.

A command's store is ``--store``, else ``$DAGFLOW_STORE``, else
``sqlite:///.dagflow/dagflow.db``; a command that only reads never creates that file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio
import attrs
import click

from .._errors import (
    InvalidStateTransition,
    ParseError,
    StorageError,
    ValidationError,
    WorkflowError,
    WorkflowNotFound,
)
from .._models import WorkflowInstance, WorkflowState

if TYPE_CHECKING:
    from .._engine import Engine
    from .._protocols import WorkflowStorage

__all__ = [
    "DEFAULT_STORE", "EXIT_BAD_INPUT", "EXIT_CODES", "EXIT_FAILED", "EXIT_INTERRUPTED",
    "EXIT_OK", "Store", "current_user", "default_store", "engine_options", "execute",
    "exit_code_for", "exit_code_for_error", "fail", "held_elsewhere", "instance_json",
    "open_engine", "open_store", "run_async", "run_options", "stdout_closed", "store_option",
    "unwrap", "with_engine",
]

T = TypeVar("T")

# --------------------------------------------------------------------------- exit codes

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

#: error type -> exit code; the first matching entry wins
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (ParseError, EXIT_BAD_INPUT),
    (ValidationError, EXIT_BAD_INPUT),
    (WorkflowNotFound, EXIT_BAD_INPUT),  # an id that names nothing
    (InvalidStateTransition, EXIT_BAD_INPUT),  # asking an instance for what its state forbids
    (WorkflowError, EXIT_FAILED),
)


def exit_code_for_error(error: WorkflowError) -> int:
    """The exit code of a dagflow error that reached ``main``, from EXIT_CODES."""
    return next(code for kind, code in EXIT_CODES if isinstance(error, kind))


def exit_code_for(instance: WorkflowInstance) -> int:
    """0 Completed; 130 left Paused by an interrupt; 1 anything else."""
    if instance.state == WorkflowState.COMPLETED:
        return EXIT_OK
    if instance.state == WorkflowState.PAUSED:
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``dagflow: error: message`` on stderr and exit with ``code``."""
    click.echo(f"dagflow: error: {message}", err=True)
    sys.exit(code)


def stdout_closed() -> NoReturn:
    """Stop quietly when the reader went away (``dagflow list | head``)."""
    # later writes (and the interpreter's final flush) must not raise BrokenPipeError again
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(EXIT_FAILED)


def current_user() -> str:
    """$USER, else the account's name: the person who may not approve their own run."""
    import getpass

    try:
        return os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (some containers)
        return ""


# --------------------------------------------------------------------------- the store

DEFAULT_STORE = "sqlite:///.dagflow/dagflow.db"


def default_store() -> str:
    """``$DAGFLOW_STORE``, else ``sqlite:///.dagflow/dagflow.db`` in the current directory."""
    return os.environ.get("DAGFLOW_STORE") or DEFAULT_STORE


@attrs.frozen
class Store:
    """The store a command works on, and how hints should name it."""

    url: str
    flag: str  # " --store URL" when the user gave one, so hints repeat it; else ""

    @classmethod
    def of(cls, option: str | None) -> Store:
        """The store ``--store option`` names (None: ``$DAGFLOW_STORE`` or the default)."""
        return cls(option or default_store(), f" --store {option}" if option else "")

    def missing_file(self) -> str | None:
        """The SQLite file the URL names, when it does not exist (reading must not create
        it as a side effect)."""
        if not self.url.lower().startswith("sqlite:"):
            return None
        from .._storage.sqlite import sqlite_path

        try:
            path, _ = sqlite_path(self.url)
        except StorageError:
            return None  # opening it reports the bad URL
        return None if path == ":memory:" or os.path.exists(path) else path

    def require(self, instance_id: str) -> None:
        """Exit 2 when the store has no file, so cannot hold ``instance_id``."""
        path = self.missing_file()
        if path is not None:
            fail(f"no workflow instance {instance_id} in {self.url} (no such file: {path}; "
                 "pass --store URL or set DAGFLOW_STORE)")


store_option = click.option(
    "--store", metavar="URL", default=None,
    help="Where instances live: sqlite:///path.db, postgresql://... (default: "
         "$DAGFLOW_STORE, else sqlite:///.dagflow/dagflow.db).")


def open_store(store: Store) -> WorkflowStorage:
    """The storage alone, for commands that need no engine (exit 2 on a bad URL)."""
    from .._storage import open_storage

    try:
        return open_storage(store.url)
    except StorageError as exc:
        fail(str(exc))


# --------------------------------------------------------------------------- the engine


def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """What a command that runs tasks needs beyond the store (not kept with the instance)."""
    f = click.option("--auto-approve", is_flag=True,
                     help="Approve every approval gate at once, as 'system'.")(f)
    f = click.option("--connection", "connections", multiple=True, metavar="NAME=URL",
                     help="A database for Query tasks with query_type NAME. Repeatable.")(f)
    return f


def engine_options(connections: Sequence[str], auto_approve: bool) -> dict[str, Any]:
    """The ``Engine`` keywords of ``--connection`` and ``--auto-approve``."""
    from .._settings import EngineSettings

    return {"settings": EngineSettings(auto_approve=auto_approve,
                                       connections=_connections(connections))}


def _connections(values: Sequence[str]) -> dict[str, str]:
    """``NAME=URL`` values -> {NAME: URL} (exit 2 on a malformed one)."""
    out = {}
    for text in values:
        name, sep, url = text.partition("=")
        if not sep or not name.strip() or not url.strip():
            fail(f"--connection {text!r}: write NAME=URL (e.g. "
                 "analytics=sqlite:///data.db or db=postgresql://user@host/db)")
        out[name.strip()] = url.strip()
    return out


def open_engine(store: Store, **options: Any) -> Engine:
    """An engine on ``store`` (exit 2 when dagflow cannot use its URL)."""
    from .._engine import Engine

    try:
        return Engine(store=store.url, **options)
    except StorageError as exc:
        fail(str(exc))


def with_engine(store: Store, body: Callable[[Engine], Awaitable[T]], *,
                explain: Callable[[BaseException], None] | None = None, **options: Any) -> T:
    """Run ``body`` inside ``async with Engine`` and return what it returns.

    dagflow errors become one ``dagflow: error:`` line and their exit code: ``explain``
    (when given) may exit on an error first, then the instance commands' rules apply.
    """
    engine = open_engine(store, **options)

    async def main() -> T:
        async with engine:
            return await body(engine)

    try:
        return run_async(main)
    except BaseException as error:  # re-raised below unless it is ours to explain
        if explain is not None:
            explain(error)
        _explain(error, store)
        raise  # main() maps it to an exit code


def execute(store: Store, body: Callable[[Engine], Awaitable[int]],
            **options: Any) -> NoReturn:
    """Run ``body`` inside ``async with Engine`` and exit with the code it returns."""
    sys.exit(with_engine(store, body, **options))


def _explain(error: BaseException, store: Store) -> None:
    """Exit as the instance commands do for ``error``; return when it is not theirs."""
    if isinstance(error, BrokenPipeError):
        stdout_closed()
    if isinstance(error, WorkflowNotFound):
        fail(f"no workflow instance {error.instance_id} in {store.url}")
    if isinstance(error, InvalidStateTransition):
        fail(str(error))
    if isinstance(error, ValidationError):
        for problem in error.problems:
            click.echo(f"dagflow: error: {problem}", err=True)
        sys.exit(EXIT_BAD_INPUT)


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run(main)``, raising the error inside task groups' ExceptionGroups bare."""
    try:
        return anyio.run(main)
    except BaseExceptionGroup as group:
        raise unwrap(group) from None


def unwrap(exc: BaseException) -> BaseException:
    """The error inside the task groups' ExceptionGroups: an exit or Ctrl-C first, then
    the first real error (not the cancellations it caused)."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    group: BaseException = exc
    for kinds in ((SystemExit, KeyboardInterrupt), (Exception,)):
        found = exc.subgroup(_leaf_of(kinds))
        if found is not None:
            group = found
            break
    while isinstance(group, BaseExceptionGroup):  # its first leaf
        group = group.exceptions[0]
    return group


def _leaf_of(kinds: tuple[type[BaseException], ...]) -> Callable[[BaseException], bool]:
    """A ``subgroup`` condition matching the errors (not groups) of ``kinds``."""
    return lambda e: not isinstance(e, BaseExceptionGroup) and isinstance(e, kinds)


# --------------------------------------------------------------------------- answers


def instance_json(instance: WorkflowInstance) -> str:
    """The instance as the seed serialises it, field for field."""
    from .._serde import make_converter

    return json.dumps(make_converter().unstructure(instance), indent=2, default=str)


async def held_elsewhere(engine: Engine, instance_id: str) -> str | None:
    """Who runs the instance in another process (a live lease), or None."""
    holder, until = await engine.store.lease_of(instance_id)
    if holder is not None and holder != engine.owner and until > time.time():
        return str(holder)
    return None
