"""Query tasks on real SQLite files and a real PostgreSQL: bound parameters, transactions,
value conversion, errors and cancellation.

PostgreSQL tests read ``DAGFLOW_TEST_POSTGRES`` (a URL); without it they skip, unless
``DAGFLOW_REQUIRE_SERVICES=1``, when they fail.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from dagflow._context import Resources, TaskContext
from dagflow._errors import TaskExecutionFailed
from dagflow._execute.query import (
    QueryHandler,
    connection_names_help,
    json_value,
    named_to_pyformat,
)
from dagflow._models import Query

EVIL = "x'); DROP TABLE t; --"


def postgres_url() -> str:
    """The test PostgreSQL URL; skips (or fails, when services are required) if unset."""
    url = os.environ.get("DAGFLOW_TEST_POSTGRES", "")
    if url:
        return url
    if os.environ.get("DAGFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail("DAGFLOW_REQUIRE_SERVICES=1 but DAGFLOW_TEST_POSTGRES is not set")
    pytest.skip("PostgreSQL tests need DAGFLOW_TEST_POSTGRES=postgresql://USER@HOST:PORT/DB")


@attrs.frozen
class Db:
    """A database with an empty table ``table(id, name, amount)``, checked from outside."""

    kind: str
    url: str
    table: str
    path: str = ""

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        """Run ``sql`` on a new connection of our own, commit, return its rows."""
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path)) as lite, lite:
                rows = lite.execute(sql)
                return rows.fetchall() if rows.description else []
        import psycopg

        with psycopg.connect(self.url) as conn, conn.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """Each backend, with a table of its own (dropped afterwards on PostgreSQL)."""
    table = f"dagflow_query_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        path = str(tmp_path / "test.db")
        database = Db("sqlite", f"sqlite:///{path}", table, path)
    else:
        pytest.importorskip("psycopg")
        database = Db("postgresql", postgres_url(), table)
    database.run(f"CREATE TABLE {table} (id integer PRIMARY KEY, name text NOT NULL, "
                 "amount numeric)")
    yield database
    if database.kind == "postgresql":
        database.run(f"DROP TABLE IF EXISTS {table}")


def context(url: str, sql: str, workdir: Path | str = ".", **parameters: str) -> TaskContext:
    """A Query task on the connection ``db`` = ``url``."""
    return TaskContext(task_id="q", spec=Query(query_type="db", query=sql, parameters=parameters),
                       workdir=str(workdir), resources=Resources(connections={"db": url}))


async def fails(ctx: TaskContext, handler: QueryHandler | None = None) -> TaskExecutionFailed:
    """Run ``ctx`` and return the failure it must end in."""
    with pytest.raises(TaskExecutionFailed) as info:
        await (handler or QueryHandler())(ctx)
    return info.value


@pytest.mark.anyio
async def test_select_returns_rows_as_dicts(db: Db) -> None:
    """A SELECT's rows come back as column -> value dicts, with the row count in metrics."""
    db.run(f"INSERT INTO {db.table} (id, name) VALUES (1, 'a'), (2, 'b')")
    out = await QueryHandler()(context(db.url, f"SELECT id, name FROM {db.table} ORDER BY id"))
    assert out.data == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert out.metrics["rows"] == 2
    assert out.metrics["duration_seconds"] >= 0
    assert out.stdout is None


@pytest.mark.anyio
async def test_parameters_are_bound_never_spliced(db: Db) -> None:
    """A value full of SQL is stored literally, and the table survives."""
    ctx = context(db.url, f"INSERT INTO {db.table} (id, name) VALUES (:id, :name)",
                  id="1", name=EVIL, unused="fine")
    assert (await QueryHandler()(ctx)).data == {"rowcount": 1}
    assert db.run(f"SELECT name FROM {db.table}") == [(EVIL,)]


@pytest.mark.anyio
async def test_insert_commits_and_returns_rowcount(db: Db) -> None:
    """An INSERT reports its row count and is visible from another connection."""
    ctx = context(db.url, f"INSERT INTO {db.table} (id, name) VALUES (1, 'a'), (2, :n)", n="b")
    out = await QueryHandler()(ctx)
    assert out.data == {"rowcount": 2}
    assert out.metrics["rowcount"] == 2
    assert db.run(f"SELECT id, name FROM {db.table} ORDER BY id") == [(1, "a"), (2, "b")]


@pytest.mark.anyio
async def test_insert_returning_returns_rows(db: Db) -> None:
    """A statement with RETURNING gives rows, and its change is committed."""
    ctx = context(db.url, f"INSERT INTO {db.table} (id, name) VALUES (7, :n) RETURNING id",
                  n="x")
    assert (await QueryHandler()(ctx)).data == [{"id": 7}]
    assert db.run(f"SELECT id FROM {db.table}") == [(7,)]


@pytest.mark.anyio
async def test_ddl_is_committed(db: Db) -> None:
    """A CREATE TABLE commits; the database does not count rows for it (-1)."""
    other = db.table + "_ddl"
    try:
        out = await QueryHandler()(context(db.url, f"CREATE TABLE {other} (a integer)"))
        assert out.data == {"rowcount": -1}
        assert db.run(f"SELECT count(*) FROM {other}") == [(0,)]
    finally:
        db.run(f"DROP TABLE IF EXISTS {other}")


@pytest.mark.anyio
async def test_constraint_violation_fails_and_rolls_back(db: Db) -> None:
    """A duplicate key is a query_error that retrying will not fix, and nothing is kept."""
    db.run(f"INSERT INTO {db.table} (id, name) VALUES (2, 'old')")
    ctx = context(db.url, f"INSERT INTO {db.table} (id, name) VALUES (1, 'a'), (2, 'b')")
    failure = await fails(ctx)
    assert (failure.kind, failure.retryable) == ("query_error", False)
    assert db.run(f"SELECT id FROM {db.table}") == [(2,)]


@pytest.mark.anyio
async def test_syntax_error_is_not_retryable(db: Db) -> None:
    """A syntax error fails with kind query_error, its code and message, not retryable."""
    failure = await fails(context(db.url, "SELEC 1"))
    assert (failure.kind, failure.retryable) == ("query_error", False)
    assert "syntax error" in failure.reason
    assert failure.reason.startswith("42601: " if db.kind == "postgresql" else "SQLITE_ERROR: ")


@pytest.mark.anyio
async def test_missing_parameter_is_bad_parameters(db: Db) -> None:
    """A placeholder without a value fails before running, naming the placeholder."""
    failure = await fails(context(db.url, "SELECT :present, :absent", present="1"))
    assert (failure.kind, failure.retryable) == ("bad_parameters", False)
    assert ":absent" in failure.reason
    assert ":present" not in failure.reason.partition("given")[0]


@pytest.mark.anyio
async def test_percent_and_quoted_colons_are_literal(db: Db) -> None:
    """``%`` and ``:x`` inside strings and casts reach the database unchanged."""
    sql = "SELECT '50% :x' AS a, :y AS b, CAST('3' AS integer) AS c"
    out = await QueryHandler()(context(db.url, sql, y="it's"))
    assert out.data == [{"a": "50% :x", "b": "it's", "c": 3}]


@pytest.mark.anyio
async def test_too_many_rows_fails(db: Db) -> None:
    """A result larger than max_rows fails the task instead of growing without bound."""
    db.run(f"INSERT INTO {db.table} (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')")
    failure = await fails(context(db.url, f"SELECT * FROM {db.table}"), QueryHandler(max_rows=3))
    assert (failure.kind, failure.retryable) == ("too_many_rows", False)
    out = await QueryHandler(max_rows=4)(context(db.url, f"SELECT * FROM {db.table}"))
    assert len(out.data) == 4


@pytest.mark.anyio
async def test_secret_in_a_row_is_redacted(db: Db) -> None:
    """A known secret in a returned value becomes ***."""
    db.run(f"INSERT INTO {db.table} (id, name) VALUES (1, 'token=s3cr3t-value')")
    ctx = context(db.url, f"SELECT name FROM {db.table}")
    ctx.redactor.add("s3cr3t-value")
    assert (await QueryHandler()(ctx)).data == [{"name": "token=***"}]


@pytest.mark.anyio
async def test_cancel_interrupts_the_statement(db: Db) -> None:
    """Cancelling a running statement returns promptly and closes its connection."""
    marker = f"dagflow_cancel_{uuid.uuid4().hex[:12]}"
    if db.kind == "sqlite":
        sql = ("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
               f"SELECT count(*) AS {marker} FROM r")
    else:
        sql = f"SELECT pg_sleep(30) AS {marker}"
    started = time.monotonic()
    with anyio.move_on_after(0.5) as scope:
        await QueryHandler()(context(db.url, sql))
    assert scope.cancelled_caught
    assert time.monotonic() - started < 5
    if db.kind == "sqlite":  # a reader still open would make this writer time out
        with contextlib.closing(sqlite3.connect(db.path, timeout=0.2)) as lite, lite:
            lite.execute(f"INSERT INTO {db.table} (id, name) VALUES (1, 'a')")
    else:
        sessions = [(0,)]
        for _ in range(50):  # the server notices the closed socket within moments
            sessions = db.run("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                              f"'%pg_sleep(30) AS {marker}%' AND pid <> pg_backend_pid()")
            if sessions == [(0,)]:
                break
            await anyio.sleep(0.05)
        assert sessions == [(0,)]


@pytest.mark.anyio
async def test_relative_sqlite_path_resolves_against_workdir(tmp_path: Path) -> None:
    """``sqlite:///data/app.db`` is the file under the task's working directory."""
    (tmp_path / "data").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "app.db")) as conn, conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("INSERT INTO t VALUES ('here')")
    out = await QueryHandler()(context("sqlite:///data/app.db", "SELECT v FROM t", tmp_path))
    assert out.data == [{"v": "here"}]


@pytest.mark.anyio
async def test_sqlite_memory_and_uri_options(tmp_path: Path) -> None:
    """``sqlite:///:memory:`` works, and ``?mode=ro`` opens the file read-only."""
    out = await QueryHandler()(context("sqlite:///:memory:", "SELECT 1 + 1 AS two"))
    assert out.data == [{"two": 2}]
    sqlite3.connect(tmp_path / "ro.db").close()
    failure = await fails(context("sqlite:///ro.db?mode=ro", "CREATE TABLE t (a)", tmp_path))
    assert (failure.kind, failure.retryable) == ("query_error", False)
    assert "readonly" in failure.reason.lower()


@pytest.mark.anyio
async def test_locked_sqlite_database_is_retryable(tmp_path: Path) -> None:
    """A database locked by another writer past the busy timeout fails retryably."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (a integer)")
        holder.execute("BEGIN EXCLUSIVE")
        ctx = context(f"sqlite:///{path}", "INSERT INTO t VALUES (1)")
        failure = await fails(ctx, QueryHandler(busy_timeout_seconds=0.1))
    finally:
        holder.close()
    assert (failure.kind, failure.retryable) == ("query_error", True)
    assert failure.reason.startswith("SQLITE_BUSY")


@pytest.mark.anyio
async def test_sqlite_values_are_json_ready(tmp_path: Path) -> None:
    """SQLite blobs become base64 text; numbers and NULL stay as they are."""
    sql = "SELECT x'0102ff' AS blob, 1.5 AS f, NULL AS n, 3 AS i"
    out = await QueryHandler()(context("sqlite:///:memory:", sql, tmp_path))
    assert out.data == [{"blob": base64.b64encode(b"\x01\x02\xff").decode(), "f": 1.5,
                         "n": None, "i": 3}]


@pytest.mark.anyio
async def test_postgres_values_are_json_ready() -> None:
    """numeric, timestamps, bytea, uuid, arrays, jsonb and intervals come back JSON-ready."""
    pytest.importorskip("psycopg")
    sql = ("SELECT 2.00::numeric AS whole, 1.25::numeric AS part, 'NaN'::numeric AS nan, "
           "'2024-05-01 12:30:00+00'::timestamptz AS ts, '2024-05-01'::date AS d, "
           "'\\x0102'::bytea AS raw, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, "
           "ARRAY[1.5, 2]::numeric[] AS arr, '{\"k\": [1, 2]}'::jsonb AS doc, "
           "interval '1 minute' AS span, '10.0.0.1'::inet AS ip")
    out = await QueryHandler()(context(postgres_url(), sql))
    assert out.data == [{
        "whole": 2, "part": 1.25, "nan": "NaN", "ts": "2024-05-01T12:30:00+00:00",
        "d": "2024-05-01", "raw": base64.b64encode(b"\x01\x02").decode(),
        "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "arr": [1.5, 2], "doc": {"k": [1, 2]},
        "span": 60.0, "ip": "10.0.0.1",
    }]


@pytest.mark.anyio
@pytest.mark.parametrize("url", [
    "postgresql://postgres:hunter2@127.0.0.1:1/test",
    "postgres://postgres:hunter2@127.0.0.1:1/test?sslmode=disable&bogus=1",
    "postgresql://postgres@127.0.0.1:1/test?password=hunter2",
])
async def test_password_never_in_the_reason(url: str) -> None:
    """A connection that fails names no password, in the reason or the exception chain."""
    pytest.importorskip("psycopg")
    failure = await fails(context(url, "SELECT 1"))
    assert failure.kind == "query_error"
    if "bogus" not in url:
        assert failure.retryable  # nothing listens on port 1: maybe later
        assert "refused" in failure.reason.lower()
    seen = [failure, failure.__cause__, failure.__context__]
    assert not any("hunter2" in f"{exc!s} {exc!r}" for exc in seen)


@pytest.mark.anyio
async def test_unknown_connection_lists_known_names() -> None:
    """A query_type naming no connection fails, listing the names (never the URLs)."""
    ctx = TaskContext(task_id="q", spec=Query(query_type="analytic", query="SELECT 1"),
                      resources=Resources(connections={
                          "analytics": "postgresql://u:pw@db/x", "cache": "sqlite:///c.db"}))
    failure = await fails(ctx)
    assert (failure.kind, failure.retryable) == ("unknown_connection", False)
    assert "analytics, cache" in failure.reason
    assert "did you mean 'analytics'" in failure.reason
    assert "pw" not in failure.reason


@pytest.mark.anyio
async def test_no_magic_default_connection() -> None:
    """``query_type: sqlite`` is only a name: with no such connection it fails."""
    ctx = TaskContext(task_id="q", spec=Query(query_type="sqlite", query="SELECT 1"))
    failure = await fails(ctx)
    assert failure.kind == "unknown_connection"
    assert "--connection NAME=URL" in failure.reason


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite://relative.db", "sqlite:///"])
async def test_bad_url_is_bad_connection(url: str) -> None:
    """An unsupported scheme or a malformed SQLite URL fails without retrying."""
    failure = await fails(context(url, "SELECT 1"))
    assert (failure.kind, failure.retryable) == ("bad_connection", False)


@pytest.mark.anyio
@pytest.mark.parametrize(("url", "sql"), [("sqlite:///:memory:", "SELECT ?"),
                                          ("postgresql://u@127.0.0.1:1/x", "SELECT $1")])
async def test_positional_placeholders_are_refused(url: str, sql: str) -> None:
    """``?`` and ``$1`` are refused before connecting: parameters are named."""
    failure = await fails(context(url, sql, a="1"))
    assert (failure.kind, failure.retryable) == ("bad_parameters", False)
    assert ":name" in failure.reason


@pytest.mark.parametrize(("sql", "expected", "names"), [
    ("SELECT * FROM t WHERE a = :a AND b = :b", "SELECT * FROM t WHERE a = %(a)s AND b = %(b)s",
     ("a", "b")),
    ("SELECT ':x', 'it''s :y', :z", "SELECT ':x', 'it''s :y', %(z)s", ("z",)),
    ("SELECT :v::int, x::text", "SELECT %(v)s::int, x::text", ("v",)),
    ("SELECT '50%' || :p", "SELECT '50%%' || %(p)s", ("p",)),
    ("SELECT 5 % 2, :a, :a", "SELECT 5 %% 2, %(a)s, %(a)s", ("a",)),
    ('SELECT "col:x", "a""b:c" FROM t', 'SELECT "col:x", "a""b:c" FROM t', ()),
    ("SELECT 1 -- :c %\n, :d", "SELECT 1 -- :c %%\n, %(d)s", ("d",)),
    ("SELECT /* :a /* :b */ :c */ :d", "SELECT /* :a /* :b */ :c */ %(d)s", ("d",)),
    ("SELECT $$ :a ' $$, $f$ :b $$ $f$, :c", "SELECT $$ :a ' $$, $f$ :b $$ $f$, %(c)s", ("c",)),
    ("SELECT E'\\' :a', :b", "SELECT E'\\' :a', %(b)s", ("b",)),
    ("SELECT arr[1:n], arr[lo:hi], x$y :q", "SELECT arr[1:n], arr[lo:hi], x$y %(q)s", ("q",)),
    ("SELECT f(a := 1), :_x1", "SELECT f(a := 1), %(_x1)s", ("_x1",)),
    ("SELECT 'unterminated :a", "SELECT 'unterminated :a", ()),
])
def test_named_to_pyformat(sql: str, expected: str, names: tuple[str, ...]) -> None:
    """``:name`` becomes ``%(name)s`` outside quotes, comments and casts; ``%`` doubles."""
    assert named_to_pyformat(sql) == (expected, names)


def test_json_value_conversions() -> None:
    """Driver values become JSON-ready: numbers, ISO text, base64, str."""
    assert json_value(Decimal("3.00")) == 3
    assert isinstance(json_value(Decimal("3.00")), int)
    assert json_value(Decimal("0.1")) == 0.1
    assert json_value(Decimal("-Infinity")) == "-Infinity"
    assert json_value(float("inf")) == "Infinity"
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert json_value(moment) == "2024-01-02T03:04:05+00:00"
    assert json_value(dt.time(1, 2)) == "01:02:00"
    assert json_value(memoryview(b"hi")) == "aGk="
    assert json_value(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert json_value((1, [Decimal(2)], {"k": b"\x00"})) == [1, [2], {"k": "AA=="}]
    assert json_value(True) is True


def test_connection_names_help() -> None:
    """The help names the known connections, or says how to add one."""
    assert connection_names_help({"b": "x", "a": "y"}) == "known connections: a, b"
    assert "--connection NAME=URL" in connection_names_help({})
