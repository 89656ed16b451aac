"""Query tasks: one SQL statement on a named connection, with every parameter bound.

``query_type`` names a connection (``EngineSettings(connections={"analytics":
"sqlite:///data.db"})``, ``dagflow run --connection analytics=sqlite:///data.db``). The SQL
text is sent as written: it is never formatted or interpolated (the validator refuses
``${`` in it). Values go in ``parameters`` and the SQL names them as ``:name`` on both
backends; SQLite binds ``:name`` itself, and for PostgreSQL :func:`named_to_pyformat`
rewrites them to psycopg's ``%(name)s``.

Each task is one transaction on a connection of its own: committed when the statement
succeeds, rolled back when it fails or is cancelled. Both drivers are blocking and run in
worker threads (at most :data:`MAX_THREADS` at a time): sqlite3, and psycopg's sync API,
because psycopg's async API does not run on trio. Cancelling a task interrupts the
running statement and closes its connection.

Rows become JSON-ready dicts (see :func:`json_value`); at most ``max_rows`` of them, and
PostgreSQL rows are streamed, so a huge result fails the task instead of filling memory.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import difflib
import math
import os
import re
import sqlite3
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, cast

import anyio
import anyio.to_thread
import attrs
from anyio.lowlevel import RunVar

from .._context import Redactor, TaskContext
from .._errors import TaskExecutionFailed
from .._models import Query, TaskOutput

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "MAX_ROWS",
    "MAX_THREADS",
    "QueryHandler",
    "connection_names_help",
    "json_value",
    "named_to_pyformat",
]

#: Default cap on the rows one Query task returns; more fail the task (``too_many_rows``).
MAX_ROWS = 100_000
#: Most database calls running at once (each holds a worker thread and a connection).
MAX_THREADS = 4

_T = TypeVar("_T")
_Dialect = Literal["postgresql", "sqlite"]

# One limiter per event loop run, like anyio's own default thread limiter: a module-level
# limiter would bind to the first loop (or backend) that used it.
_LIMITER: RunVar[anyio.CapacityLimiter] = RunVar("dagflow_query_limiter")
# How long a cancelled task waits for its worker to interrupt the statement and close the
# connection before it lets the worker finish on its own.
_CANCEL_WAIT_SECONDS = 5.0
_MAX_REASON_CHARS = 500


@attrs.frozen
class QueryHandler:
    """The ``Query`` task type: run ``spec.query`` on the connection ``spec.query_type``.

    Returns, for a statement that returns rows (``SELECT``, ``... RETURNING``), ``data`` =
    a list of ``{column: value}`` dicts (later duplicate column names win) and ``metrics``
    = ``{"rows": n, "duration_seconds": t}``; for any other statement ``data`` =
    ``{"rowcount": n}`` (-1 when the database does not count, as for DDL) and ``metrics`` =
    ``{"rowcount": n, "duration_seconds": t}``. Secrets in returned values become ``***``.

    Attributes:
        max_rows: Most rows a task may return; a larger result fails it (``too_many_rows``).
        busy_timeout_seconds: How long SQLite waits for a locked database.
        connect_timeout_seconds: How long PostgreSQL may take to connect (unless the URL
            sets ``connect_timeout``).

    Raises:
        TaskExecutionFailed: With ``kind`` ``unknown_connection``, ``bad_connection``,
            ``missing_driver``, ``bad_parameters`` or ``too_many_rows`` (not retryable), or
            ``query_error`` (retryable for connection and locking errors, not for syntax
            or constraint errors).
    """

    busy: ClassVar[bool] = True

    max_rows: int = MAX_ROWS
    busy_timeout_seconds: float = 5.0
    connect_timeout_seconds: int = 10

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        """Run one attempt of the Query task ``ctx.spec``.

        Args:
            ctx: The attempt's context; ``ctx.spec`` is a :class:`~dagflow._models.Query`.

        Returns:
            The rows or the row count, with the duration.

        Raises:
            TaskExecutionFailed: The statement could not run; see the class docstring.
        """
        spec = ctx.spec
        if not isinstance(spec, Query):
            raise TaskExecutionFailed(reason=f"QueryHandler got a {type(spec).__name__} task",
                                      retryable=False, kind="bad_spec")
        connections = ctx.resources.connections
        if spec.query_type not in connections:
            raise TaskExecutionFailed(
                reason=f"unknown connection {spec.query_type!r} (query_type); "
                + connection_names_help(connections, spec.query_type),
                retryable=False, kind="unknown_connection")
        url = connections[spec.query_type]
        secrets = _url_secrets(url)

        def scrub(text: str) -> str:
            for secret in secrets:
                text = text.replace(secret, "***")
            return ctx.redactor.text(text)

        started = time.perf_counter()
        scheme = url.partition("://")[0].lower()
        if scheme == "sqlite":
            result = await self._sqlite(spec, _sqlite_target(url, ctx.workdir, scrub), scrub)
        elif scheme in ("postgresql", "postgres"):
            result = await self._postgres(spec, url, scrub)
        else:
            raise TaskExecutionFailed(
                reason=f"connection {spec.query_type!r} has an unsupported URL {scrub(url)!r}"
                " (use sqlite:///PATH or postgresql://USER@HOST:PORT/DB)",
                retryable=False, kind="bad_connection")
        return _output(result, time.perf_counter() - started, ctx.redactor)

    async def _sqlite(self, spec: Query, target: _SqliteTarget,
                      scrub: Callable[[str], str]) -> _Result:
        """Run ``spec`` on SQLite in a worker thread."""
        _check_parameters(_scan(spec.query, "sqlite"), spec.parameters)
        work = partial(_run_sqlite, target, spec.query, dict(spec.parameters),
                       self.max_rows, self.busy_timeout_seconds)
        try:
            return await _run_blocking(work)
        except sqlite3.Error as exc:
            failure = _sqlite_failure(exc, scrub)
            if scrub(str(exc)) == str(exc):
                raise failure from exc
        raise failure from None  # the driver's message held a secret

    async def _postgres(self, spec: Query, url: str, scrub: Callable[[str], str]) -> _Result:
        """Run ``spec`` on PostgreSQL with psycopg's sync API in a worker thread."""
        tokens = _scan(spec.query, "postgresql")
        names = _check_parameters(tokens, spec.parameters)
        try:
            import psycopg
        except ImportError:
            raise TaskExecutionFailed(
                reason="PostgreSQL connections need psycopg: pip install 'dagflow[postgres]'",
                retryable=False, kind="missing_driver") from None
        params = {name: spec.parameters[name] for name in names}
        work = partial(_run_postgres, url, _render(tokens, "pyformat"),
                       _render(tokens, "numbered"), params, self.max_rows,
                       self.connect_timeout_seconds)
        try:
            return await _run_blocking(work)
        except psycopg.Error as exc:
            failure = _postgres_failure(exc, scrub)
            if scrub(str(exc)) == str(exc):
                raise failure from exc
        # libpq quotes the connection string, password included, in some errors: raised
        # outside the except block, so that the driver's error is not even the context
        raise failure from None


def connection_names_help(connections: Mapping[str, str], name: str | None = None) -> str:
    """Say which connection names exist (never their URLs), for an unknown-name error.

    Args:
        connections: Connection names -> URLs.
        name: The name that was not found; a close known name is suggested.

    Returns:
        ``"known connections: a, b (did you mean 'a'?)"``, or how to add one when there
        are none.
    """
    if not connections:
        return ("no connections are configured; add one with Engine(settings="
                "EngineSettings(connections={'NAME': 'sqlite:///data.db'})) or dagflow run "
                "--connection NAME=URL")
    known = sorted(connections)
    text = "known connections: " + ", ".join(known)
    close = difflib.get_close_matches(name, known, n=1) if name else []
    return text + (f" (did you mean {close[0]!r}?)" if close else "")


def named_to_pyformat(sql: str) -> tuple[str, tuple[str, ...]]:
    """Rewrite ``:name`` placeholders as psycopg's ``%(name)s``.

    The scanner follows PostgreSQL's lexical rules: nothing changes inside single-quoted
    strings (``''`` and, in ``E'...'``, backslash escapes), double-quoted identifiers,
    dollar-quoted strings (``$$...$$``, ``$tag$...$tag$``) and ``--`` or (nested) ``/* */``
    comments; ``::`` is a cast; a ``:`` right after a letter, digit or ``_`` is not a
    placeholder (``arr[1:n]``). Every ``%``, quoted or not, is doubled, because psycopg
    reads ``%`` anywhere in the text.

    Args:
        sql: The statement as the user wrote it.

    Returns:
        The rewritten statement and the placeholder names, in order of first use.

    Raises:
        TaskExecutionFailed: The SQL uses a positional ``$1`` placeholder
            (``bad_parameters``).
    """
    tokens = _scan(sql, "postgresql")
    return _render(tokens, "pyformat"), _names(tokens)


def json_value(value: Any) -> Any:
    """Turn a value a driver returned into one that JSON can carry.

    ``Decimal`` becomes an ``int`` when integral, else a ``float`` (NaN and infinities, of
    ``Decimal`` or ``float``, become ``"NaN"``, ``"Infinity"``, ``"-Infinity"``); dates and
    times ISO 8601 text; ``timedelta`` seconds; bytes base64 text; ``UUID`` and anything
    else unknown (``inet``, ranges) ``str()``. Lists and dicts (arrays, JSON columns) are
    converted item by item.

    Args:
        value: A column value.

    Returns:
        ``None``, a bool, int, float, str, list or dict.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _non_finite(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return _non_finite(float(value))
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _non_finite(value: float) -> str:
    """PostgreSQL's spelling of NaN and the infinities."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


# --- placeholders ---------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_POSITIONAL = re.compile(r"\?\d*|\$\d+")
_Token = tuple[Literal["sql", "param"], str]


def _is_word(char: str) -> bool:
    """Whether ``char`` can be part of an identifier (so a ``:`` or ``$`` after it is not
    the start of a placeholder or dollar quote)."""
    return char.isalnum() or char in "_$"


def _scan(sql: str, dialect: _Dialect) -> list[_Token]:
    """Split ``sql`` into text and ``:name`` placeholders, skipping quotes and comments."""
    tokens: list[_Token] = []
    n = len(sql)
    start = i = 0
    while i < n:
        char = sql[i]
        prev = sql[i - 1] if i else ""
        end = -1  # the end of a quoted string or comment starting at i
        if char == "'":
            backslashes = (dialect == "postgresql" and prev in ("e", "E")
                           and (i < 2 or not _is_word(sql[i - 2])))
            end = _quoted_end(sql, i, "'", backslashes=backslashes)
        elif char == '"' or (char == "`" and dialect == "sqlite"):
            end = _quoted_end(sql, i, char)
        elif char == "[" and dialect == "sqlite":
            close = sql.find("]", i + 1)
            end = n if close < 0 else close + 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            end = n if newline < 0 else newline + 1
        elif sql.startswith("/*", i):
            end = _comment_end(sql, i, nested=dialect == "postgresql")
        elif char == "$" and dialect == "postgresql" and not _is_word(prev):
            tag = _DOLLAR_TAG.match(sql, i)
            if tag:
                close = sql.find(tag.group(), tag.end())
                end = n if close < 0 else close + len(tag.group())
            elif sql[i + 1:i + 2].isdigit():
                _positional(sql, i)
        elif char == "?" and dialect == "sqlite":
            _positional(sql, i)
        elif char == ":":
            if sql.startswith("::", i):
                i += 2
                continue
            name = None if _is_word(prev) else _NAME.match(sql, i + 1)
            if name:
                tokens.append(("sql", sql[start:i]))
                tokens.append(("param", name.group()))
                start = i = name.end()
                continue
        i = max(end, i + 1)
    tokens.append(("sql", sql[start:]))
    return [token for token in tokens if token[1]]


def _quoted_end(sql: str, i: int, quote: str, *, backslashes: bool = False) -> int:
    """The index after the closing ``quote`` (doubled quotes escape; the end if none)."""
    j = i + 1
    n = len(sql)
    while j < n:
        char = sql[j]
        if backslashes and char == "\\":
            j += 2
            continue
        if char == quote:
            if sql.startswith(quote, j + 1):
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _comment_end(sql: str, i: int, *, nested: bool) -> int:
    """The index after the ``*/`` closing the comment at ``i`` (PostgreSQL nests them)."""
    depth = 0
    j = i
    n = len(sql)
    while j < n:
        if sql.startswith("/*", j) and (nested or depth == 0):
            depth += 1
            j += 2
        elif sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return n


def _positional(sql: str, i: int) -> None:
    """Refuse a positional placeholder: parameters are named."""
    match = _POSITIONAL.match(sql, i)
    placeholder = match.group() if match else sql[i]
    raise TaskExecutionFailed(
        reason=f"positional placeholder {placeholder} at character {i + 1}: write :name "
        "and give the value in parameters", retryable=False, kind="bad_parameters")


def _names(tokens: Iterable[_Token]) -> tuple[str, ...]:
    """Placeholder names in order of first use."""
    return tuple(dict.fromkeys(text for kind, text in tokens if kind == "param"))


def _render(tokens: Iterable[_Token], style: Literal["pyformat", "numbered"]) -> str:
    """``%(name)s`` with ``%`` doubled (for psycopg), or ``$1`` (for a server prepare)."""
    numbers: dict[str, int] = {}
    out: list[str] = []
    for kind, text in tokens:
        if kind == "sql":
            out.append(text.replace("%", "%%") if style == "pyformat" else text)
        elif style == "pyformat":
            out.append(f"%({text})s")
        else:
            out.append(f"${numbers.setdefault(text, len(numbers) + 1)}")
    return "".join(out)


def _check_parameters(tokens: Iterable[_Token], parameters: Mapping[str, str]) -> tuple[str, ...]:
    """The placeholder names, all present in ``parameters`` (unused parameters are fine)."""
    names = _names(tokens)
    missing = [name for name in names if name not in parameters]
    if missing:
        given = ", ".join(sorted(parameters)) or "none"
        raise TaskExecutionFailed(
            reason="the query uses " + ", ".join(f":{name}" for name in missing)
            + f" but parameters has no value for it (given: {given})",
            retryable=False, kind="bad_parameters")
    return names


# --- running --------------------------------------------------------------------------


@attrs.frozen
class _Result:
    """What a statement gave: rows (``None`` when it returns none) or a row count."""

    rows: list[dict[str, Any]] | None
    rowcount: int = -1


def _output(result: _Result, duration: float, redactor: Redactor) -> TaskOutput:
    """The task's output for ``result``."""
    if result.rows is None:
        return TaskOutput(data={"rowcount": result.rowcount},
                          metrics={"rowcount": result.rowcount, "duration_seconds": duration})
    return TaskOutput(data=redactor.data(result.rows),
                      metrics={"rows": len(result.rows), "duration_seconds": duration})


def _take(rows: Iterator[Mapping[str, Any]], max_rows: int) -> list[dict[str, Any]]:
    """Up to ``max_rows`` rows with JSON-ready values; more fail the task."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if len(out) >= max_rows:
            raise TaskExecutionFailed(
                reason=f"the query returned more than {max_rows} rows; add a LIMIT or "
                "aggregate in SQL", retryable=False, kind="too_many_rows")
        out.append({str(key): json_value(value) for key, value in row.items()})
    return out


class _Abandoned(Exception):
    """The task was cancelled before its worker got going; the worker stops."""


class _Interrupt:
    """Lets a cancelled task stop the statement its worker thread is blocked in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancel: Callable[[], object] | None = None
        self._cancelled = False
        self._started = False
        self._done = threading.Event()

    def start(self) -> None:
        """Worker: about to connect (unless the task is already cancelled)."""
        with self._lock:
            if self._cancelled:
                raise _Abandoned
            self._started = True

    def arm(self, cancel: Callable[[], object]) -> None:
        """Worker: connected; ``cancel()`` stops the running statement."""
        with self._lock:
            if self._cancelled:
                raise _Abandoned
            self._cancel = cancel

    def disarm(self) -> None:
        """Worker: about to close the connection (waits for a cancel in progress)."""
        with self._lock:
            self._cancel = None

    def finish(self) -> None:
        """Worker: done, connection closed."""
        self._done.set()

    def fire(self) -> bool:
        """Task (in a thread): stop the statement; return whether a worker is running."""
        with self._lock:
            self._cancelled = True
            if self._cancel is not None:
                # best effort: the worker closes its connection whatever happens here
                with contextlib.suppress(Exception):
                    self._cancel()
            return self._started

    def wait(self, timeout: float) -> None:
        """Task (in a thread): wait up to ``timeout`` seconds for the worker to finish."""
        self._done.wait(timeout)


def _limiter() -> anyio.CapacityLimiter:
    """This event loop's limiter for database worker threads."""
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(MAX_THREADS)
        _LIMITER.set(limiter)
        return limiter


async def _run_blocking(work: Callable[[_Interrupt], _T]) -> _T:
    """Run ``work`` in a worker thread; on cancellation interrupt it and wait (bounded)."""
    interrupt = _Interrupt()

    def run() -> _T:
        interrupt.start()
        try:
            return work(interrupt)
        finally:
            interrupt.finish()

    try:
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True, limiter=_limiter())
    except anyio.get_cancelled_exc_class():
        # shielded: the connection must be closed before the cancellation goes on; the
        # default thread limiter, since ours may be full of the workers being cancelled
        with anyio.CancelScope(shield=True):
            if await anyio.to_thread.run_sync(interrupt.fire):
                await anyio.to_thread.run_sync(interrupt.wait, _CANCEL_WAIT_SECONDS)
        raise


# --- SQLite ---------------------------------------------------------------------------


@attrs.frozen
class _SqliteTarget:
    """Where a SQLite connection goes: a path, ``:memory:`` or a ``file:`` URI."""

    database: str
    uri: bool = False


def _sqlite_target(url: str, workdir: str, scrub: Callable[[str], str]) -> _SqliteTarget:
    """Parse ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``.

    A query string (``?mode=ro``) is passed to SQLite as URI parameters.
    """
    rest = url.partition("://")[2]
    if not rest.startswith("/") or len(rest) < 2:
        raise TaskExecutionFailed(
            reason=f"bad SQLite URL {scrub(url)!r}: write sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite:///:memory:",
            retryable=False, kind="bad_connection")
    path, _, options = rest[1:].partition("?")
    if path != ":memory:" and not os.path.isabs(path):
        path = os.path.join(workdir, path)
    if options:
        return _SqliteTarget(f"file:{urllib.parse.quote(path)}?{options}", uri=True)
    return _SqliteTarget(path)


def _run_sqlite(target: _SqliteTarget, sql: str, params: dict[str, str], max_rows: int,
                busy_timeout: float, interrupt: _Interrupt) -> _Result:
    """Worker thread: run ``sql`` in one transaction on a new connection."""
    # isolation_level=None: our own BEGIN/COMMIT, so DDL is inside the transaction too
    conn = sqlite3.connect(target.database, timeout=busy_timeout, isolation_level=None,
                           uri=target.uri)
    with contextlib.closing(conn):
        interrupt.arm(conn.interrupt)
        try:
            conn.execute("BEGIN")
            cursor = conn.execute(sql, params)
            if cursor.description is None:
                result = _Result(rows=None, rowcount=cursor.rowcount)
            else:
                names = [column[0] for column in cursor.description]
                result = _Result(rows=_take((dict(zip(names, row, strict=True))
                                             for row in cursor), max_rows))
            conn.execute("COMMIT")
            return result
        except BaseException:
            # closing rolls back too; a failing ROLLBACK must not hide the real error
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise
        finally:
            interrupt.disarm()


# Result codes worth another attempt: locks, I/O, a full disk, a file not there yet.
_SQLITE_RETRYABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN",
                     "SQLITE_FULL", "SQLITE_PROTOCOL", "SQLITE_NOMEM", "SQLITE_INTERRUPT")


def _sqlite_failure(exc: sqlite3.Error, scrub: Callable[[str], str]) -> TaskExecutionFailed:
    """A sqlite3 error as a failed attempt."""
    code = getattr(exc, "sqlite_errorname", None)
    message = str(exc)
    if message.startswith("You did not supply a value for binding parameter"):
        return TaskExecutionFailed(reason=scrub(_reason(message)), retryable=False,
                                   kind="bad_parameters")
    retryable = bool(code) and str(code).startswith(_SQLITE_RETRYABLE)
    reason = f"{code}: {message}" if code else message
    return TaskExecutionFailed(reason=scrub(_reason(reason)), retryable=retryable,
                               kind="query_error")


# --- PostgreSQL -----------------------------------------------------------------------


def _run_postgres(url: str, sql: str, numbered_sql: str, params: dict[str, str],
                  max_rows: int, connect_timeout: int, interrupt: _Interrupt) -> _Result:
    """Worker thread: run ``sql`` in one transaction on a new psycopg connection."""
    import psycopg
    from psycopg.rows import dict_row

    options: dict[str, Any] = {}
    if "connect_timeout" not in url:
        options["connect_timeout"] = connect_timeout
    # the connection block commits on success, rolls back on an error, and closes
    with psycopg.connect(url, **options) as conn:
        interrupt.arm(partial(_cancel_postgres, conn))
        try:
            with conn.cursor(row_factory=dict_row) as cursor:
                if _returns_rows(conn, numbered_sql):
                    # streamed: at most one row in memory beyond what we keep. Closed
                    # at once when we stop early: until then it holds the connection's
                    # lock, and the rollback would wait for it forever
                    stream = cast("Generator[dict[str, Any]]", cursor.stream(sql, params))
                    with contextlib.closing(stream) as rows:
                        return _Result(rows=_take(rows, max_rows))
                cursor.execute(sql, params)
                return _Result(rows=None, rowcount=cursor.rowcount)
        finally:
            interrupt.disarm()


def _cancel_postgres(conn: psycopg.Connection[Any]) -> None:
    """Ask the server to cancel ``conn``'s running statement."""
    cancel_safe = getattr(conn, "cancel_safe", None)  # psycopg >= 3.2
    if cancel_safe is not None:
        cancel_safe(timeout=_CANCEL_WAIT_SECONDS)
    else:
        conn.cancel()


def _returns_rows(conn: psycopg.Connection[Any], numbered_sql: str) -> bool:
    """Whether the statement returns rows, asked of the server without running it.

    Rows are streamed, which psycopg allows only for statements that return rows, and
    only the server can tell (``INSERT ... RETURNING``, a function call, ``SHOW``).
    """
    import psycopg
    from psycopg import pq

    encoding = conn.info.encoding
    prepared = conn.pgconn.prepare(b"", numbered_sql.encode(encoding))
    if prepared.status != pq.ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(prepared, encoding=encoding)
    described = conn.pgconn.describe_prepared(b"")
    if described.status != pq.ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(described, encoding=encoding)
    return described.nfields > 0


# SQLSTATE classes of errors that another attempt will not fix, although psycopg files
# them as OperationalError: bad credentials, no such database.
_POSTGRES_PERMANENT = ("28", "3D")


def _postgres_failure(exc: psycopg.Error, scrub: Callable[[str], str]) -> TaskExecutionFailed:
    """A psycopg error as a failed attempt: ``SQLSTATE: message``, password removed."""
    import psycopg

    sqlstate = exc.sqlstate
    message = (exc.diag.message_primary if sqlstate else None) or str(exc)
    retryable = (isinstance(exc, psycopg.OperationalError)
                 and not (sqlstate or "").startswith(_POSTGRES_PERMANENT))
    reason = f"{sqlstate}: {message}" if sqlstate else message
    return TaskExecutionFailed(reason=scrub(_reason(reason)), retryable=retryable,
                               kind="query_error")


# --- URLs and messages ----------------------------------------------------------------


def _url_secrets(url: str) -> list[str]:
    """The passwords in a connection URL (userinfo and ``?password=``), as written and
    decoded, longest first."""
    found: set[str] = set()
    rest = url.partition("://")[2]
    userinfo = re.match(r"([^@/]*)@", rest)
    if userinfo:
        found.add(userinfo.group(1).partition(":")[2])
    query = rest.partition("?")[2]
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if urllib.parse.unquote(key) == "password":
            found.add(value)
    secrets = found | {urllib.parse.unquote(secret) for secret in found}
    return sorted((secret for secret in secrets if secret), key=len, reverse=True)


def _reason(message: str) -> str:
    """A driver message on one line, of bounded length."""
    text = " ".join(message.split())
    if len(text) > _MAX_REASON_CHARS:
        text = text[:_MAX_REASON_CHARS - 3] + "..."
    return text
