"""What only the SQL stores do: checksummed rows that catch tampering, the definition
snapshot, schema versions, several stores (processes) on one database, URLs, and keeping
passwords out of sight.

PostgreSQL tests read ``DAGFLOW_TEST_POSTGRES`` (a URL); without it they skip, unless
``DAGFLOW_REQUIRE_SERVICES=1``, when they fail. Each PostgreSQL test gets a schema of its
own, dropped afterwards.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - two tests cancel the way asyncio itself does
import datetime as dt
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import attrs
import pytest

import dagflow
from dagflow._errors import CheckpointError, StorageError
from dagflow._models import (
    InstanceChanges,
    TaskOutput,
    TaskState,
    TaskStatus,
    WorkflowInstance,
    WorkflowState,
)
from dagflow._serde import definition_hash
from dagflow._storage import open_storage
from dagflow._storage._sql import SCHEMA_VERSION, Checksums, SqlStorage
from dagflow._storage.postgres import PostgresStorage
from dagflow._storage.sqlite import SqliteStorage

pytestmark = pytest.mark.anyio

WORKFLOW = """
id: tamper
tasks:
  - id: build
    type: {type: Command, command: make, args: [build]}
  - id: test
    type: {type: Command, command: make, args: [test]}
    depends_on: [build]
"""


def postgres_base() -> str:
    """The PostgreSQL URL to test against, or skip (fail under DAGFLOW_REQUIRE_SERVICES=1)."""
    url = os.environ.get("DAGFLOW_TEST_POSTGRES", "")
    if url:
        return url
    if os.environ.get("DAGFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail("DAGFLOW_REQUIRE_SERVICES=1 but DAGFLOW_TEST_POSTGRES is not set")
    pytest.skip("PostgreSQL tests need DAGFLOW_TEST_POSTGRES=postgresql://USER@HOST:PORT/DB")


@attrs.define
class Target:
    """One database: opens stores on it, and edits its rows behind their back."""

    url: str
    kind: str
    path: str = ""
    schema: str = ""
    base: str = ""

    def open(self, key: bytes | None = None) -> SqlStorage:
        store = open_storage(self.url, key=key)
        assert isinstance(store, SqlStorage)
        return store

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement directly (``?`` placeholders) and return its rows."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as conn:
                cur = conn.execute(statement, params)
                return list(cur.fetchall())
        import psycopg

        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            cur = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
            return list(cur.fetchall()) if cur.description else []


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """An empty SQLite file or PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "dagflow.db"
        yield Target(f"sqlite:///{path}", "sqlite", path=str(path))
        return
    base = postgres_base()
    schema = f"dagflow_test_{uuid.uuid4().hex}"
    sep = "&" if "?" in base else "?"
    yield Target(f"{base}{sep}schema={schema}", "postgres", schema=schema, base=base)
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def make_instance() -> WorkflowInstance:
    """An instance with two finished tasks."""
    definition = dagflow.loads(WORKFLOW)
    now = dt.datetime.now(dt.UTC)
    states = {
        "build": TaskState("build", TaskStatus.COMPLETED, now, now, 1,
                           TaskOutput(stdout="built ✓", exit_code=0, data={"n": 1})),
        "test": TaskState("test", TaskStatus.FAILED, now, now, 2,
                          TaskOutput(stdout="FAIL", exit_code=1), "exit code 1"),
    }
    return WorkflowInstance(
        id=str(uuid.uuid4()), workflow_id=definition.id, definition=definition,
        state=WorkflowState.FAILED, created_at=now, created_by="ci", task_states=states,
        definition_hash=definition_hash(definition))


async def stored(target: Target, key: bytes | None = None) -> WorkflowInstance:
    """Store a new instance through a store that is closed again."""
    instance = make_instance()
    store = target.open(key)
    try:
        await store.store_workflow(instance)
    finally:
        await store.close()
    return instance


async def load_error(target: Target, instance_id: str, key: bytes | None = None
                     ) -> CheckpointError:
    """The CheckpointError a fresh store raises loading ``instance_id``."""
    store = target.open(key)
    try:
        with pytest.raises(CheckpointError) as info:
            await store.load_workflow(instance_id)
    finally:
        await store.close()
    return info.value


# --------------------------------------------------------------------------- tampering


@pytest.mark.parametrize(("column", "value"), [
    ("output", json.dumps({"stdout": "forged", "stderr": None, "exit_code": 0, "data": None,
                           "metrics": {}})),
    ("state", "Completed"),
])
async def test_tampered_task_row_is_detected(target: Target, column: str, value: str) -> None:
    """A task row edited in the database fails its checksum: the error names the task and
    its partial instance leaves that row out."""
    instance = await stored(target)
    target.sql(f"UPDATE dagflow_task_states SET {column} = ? WHERE instance_id = ?"
               " AND task_id = ?", (value, instance.id, "test"))
    error = await load_error(target, instance.id)
    assert any("'test'" in p for p in error.problems), error.problems
    assert not any("'build'" in p for p in error.problems), error.problems
    assert isinstance(error.partial, WorkflowInstance)
    assert error.partial.task_states == {"build": instance.task_states["build"]}


async def test_tampered_header_row_is_detected(target: Target) -> None:
    """An instance row edited in the database fails its checksum, and the error says so."""
    instance = await stored(target)
    target.sql("UPDATE dagflow_instances SET state = ?, created_by = ? WHERE id = ?",
               ("Completed", "mallory", instance.id))
    error = await load_error(target, instance.id)
    assert any(instance.id in p and "header" in p for p in error.problems), error.problems


async def test_corrupt_definition_snapshot_is_detected(target: Target) -> None:
    """An edited definition snapshot no longer matches its hash and is never used."""
    instance = await stored(target)
    (body,) = target.sql("SELECT body FROM dagflow_definitions WHERE hash = ?",
                         (instance.definition_hash,))[0]
    assert '"command":"make"' in body
    target.sql("UPDATE dagflow_definitions SET body = ? WHERE hash = ?",
               (body.replace('"command":"make"', '"command":"curl"'), instance.definition_hash))
    error = await load_error(target, instance.id)
    assert "definition" in str(error)


async def test_keyed_checksums_refuse_rows_rechecksummed_without_the_key(
        target: Target) -> None:
    """With ``key=``, an attacker who edits a row and recomputes a plain SHA-256 checksum is
    still caught (and a row checksummed with the key itself is accepted)."""
    key = b"secret"
    instance = await stored(target, key)
    (row,) = target.sql(
        "SELECT instance_id, task_id, state, started_at, completed_at, attempts, output, error"
        " FROM dagflow_task_states WHERE instance_id = ? AND task_id = ?",
        (instance.id, "test"))
    forged = (*row[:2], "Completed", *row[3:])

    def rewrite(checksum: str) -> None:
        target.sql("UPDATE dagflow_task_states SET state = ?, checksum = ?"
                   " WHERE instance_id = ? AND task_id = ?",
                   ("Completed", checksum, instance.id, "test"))

    rewrite(Checksums()("task", *forged))
    error = await load_error(target, instance.id, key)
    assert any("'test'" in p for p in error.problems), error.problems
    # the same edit with the key's checksum loads: the checksum covers just these values
    rewrite(Checksums(key)("task", *forged))
    store = target.open(key)
    try:
        loaded = await store.load_workflow(instance.id)
    finally:
        await store.close()
    assert loaded is not None
    assert loaded.task_states["test"].state == TaskStatus.COMPLETED


# --------------------------------------------------------------------------- schema


async def test_newer_schema_version_is_refused(target: Target) -> None:
    """A database written by a newer dagflow is refused with a StorageError that says to
    upgrade dagflow, instead of being misread."""
    await stored(target)
    target.sql("UPDATE dagflow_schema SET version = ?", (SCHEMA_VERSION + 1,))
    store = target.open()
    try:
        with pytest.raises(StorageError, match="upgrade dagflow"):
            await store.load_workflow(str(uuid.uuid4()))
    finally:
        await store.close()


async def test_instances_of_a_new_definition_stored_at_once_all_succeed(
        target: Target) -> None:
    """Several instances of one definition that no instance used before, stored at the
    same moment (their transactions all find the definition missing), are all stored."""
    store = target.open()
    try:
        for round_ in range(10):
            definition = dagflow.loads(WORKFLOW.replace("id: tamper", f"id: fresh{round_}"))
            instances = [attrs.evolve(make_instance(), id=str(uuid.uuid4()),
                                      workflow_id=definition.id, definition=definition,
                                      definition_hash=definition_hash(definition))
                         for _ in range(8)]
            async with anyio.create_task_group() as tg:
                for instance in instances:
                    tg.start_soon(store.store_workflow, instance)
            for instance in instances:
                loaded = await store.load_workflow(instance.id)
                assert loaded is not None and loaded.definition == definition
    finally:
        await store.close()


async def test_a_version_1_database_is_upgraded_and_keeps_its_rows(target: Target) -> None:
    """A database written by dagflow with schema version 1 (outputs in task rows) is
    upgraded when opened: its instances load as before and new commits go on."""
    instance = await stored(target)
    target.sql("ALTER TABLE dagflow_task_states DROP COLUMN output_seq")
    target.sql("ALTER TABLE dagflow_events DROP COLUMN output")
    target.sql("UPDATE dagflow_schema SET version = 1")
    store = target.open()
    try:
        loaded = await store.load_workflow(instance.id)
        assert loaded is not None and loaded.task_states == instance.task_states
        output = TaskOutput(stdout="again", exit_code=0)
        now = dt.datetime.now(dt.UTC)
        await store.commit(instance.id, InstanceChanges(
            task_states=(TaskState("test", TaskStatus.COMPLETED, now, now, 3, output),),
            events=(dagflow.TaskCompleted(seq=1, instance_id=instance.id, timestamp=now,
                                          task_id="test", output=output, attempt=3),)))
        again = await store.load_workflow(instance.id)
        assert again is not None and again.task_states["test"].output == output
        assert again.task_states["build"] == instance.task_states["build"]
    finally:
        await store.close()
    assert target.sql("SELECT version FROM dagflow_schema") == [(SCHEMA_VERSION,)]


async def test_an_output_is_stored_once_and_its_event_vouched_for(target: Target) -> None:
    """A task's output reported by the event committed with its state is stored once (in
    the event); the task row's checksum covers it, so an edit of the event's copy is
    caught on load, and the event keeps that output after the task runs again."""
    instance = await stored(target)
    store = target.open()
    try:
        now = dt.datetime.now(dt.UTC)
        output = TaskOutput(stdout="x" * 10_000 + " ✓", exit_code=0, data={"n": 2})
        done = dagflow.TaskCompleted(seq=1, instance_id=instance.id, timestamp=now,
                                     task_id="test", output=output, attempt=3)
        await store.commit(instance.id, InstanceChanges(
            task_states=(TaskState("test", TaskStatus.COMPLETED, now, now, 3, output),),
            events=(done,)))
        stored_once = target.sql(
            "SELECT length(t.output), length(e.body), length(e.output)"
            " FROM dagflow_task_states t JOIN dagflow_events e"
            " ON e.instance_id = t.instance_id AND e.seq = t.output_seq"
            " WHERE t.instance_id = ? AND t.task_id = 'test'", (instance.id,))
        assert stored_once[0][0] is None and stored_once[0][1] < 1_000
        assert stored_once[0][2] > 10_000
        loaded = await store.load_workflow(instance.id)
        assert loaded is not None and loaded.task_states["test"].output == output
        assert await store.load_events(instance.id) == [done]
        # the task runs again: its row changes, the event it reported keeps its output
        await store.commit(instance.id, InstanceChanges(
            task_states=(TaskState("test", TaskStatus.RUNNING, now, None, 4),)))
        assert await store.load_events(instance.id) == [done]
        await store.commit(instance.id, InstanceChanges(
            task_states=(TaskState("test", TaskStatus.COMPLETED, now, now, 4, output),),
            events=(attrs.evolve(done, seq=2, attempt=4),)))
    finally:
        await store.close()
    target.sql("UPDATE dagflow_events SET output = replace(output, 'x', 'y')"
               " WHERE instance_id = ? AND seq = 2", (instance.id,))
    error = await load_error(target, instance.id)
    assert "task 'test' row checksum does not match" in str(error)


@pytest.mark.parametrize("target", ["postgres"], indirect=True)
async def test_refused_postgres_store_closes_its_connections(target: Target) -> None:
    """Closing a PostgreSQL store that refused the database (newer schema) leaves no
    connection open on the server."""
    await stored(target)
    target.sql("UPDATE dagflow_schema SET version = ?", (SCHEMA_VERSION + 1,))
    app = f"dagflow_test_{uuid.uuid4().hex[:16]}"
    store = open_storage(f"{target.url}&application_name={app}")
    try:
        with pytest.raises(StorageError, match="upgrade dagflow"):
            await store.load_workflow(str(uuid.uuid4()))
    finally:
        await store.close()
    for _ in range(20):  # a closed connection's server process may take a moment to go
        left = target.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = ?",
                          (app,))
        if left == [(0,)]:
            break
        await anyio.sleep(0.05)
    assert left == [(0,)], f"{left[0][0]} connection(s) still open after close()"


# --------------------------------------------------------------------------- shared commits


async def record(outcomes: dict[str, Any], name: str, call: Awaitable[Any]) -> None:
    """Await ``call`` and keep what it returned or raised under ``name``."""
    try:
        outcomes[name] = await call
    except Exception as exc:
        outcomes[name] = exc


async def test_writes_sharing_a_transaction_each_commit_or_fail_alone(tmp_path: Path) -> None:
    """SQLite: writes that arrive while another is being committed share the next
    transaction; each still commits or fails alone: a failing one is undone without its
    neighbours, and only its caller hears of the error."""
    store = SqliteStorage(tmp_path / "shared.db")
    try:
        first, second = make_instance(), make_instance()
        await store.store_workflow(first)
        await store.store_workflow(second)
        now = dt.datetime.now(dt.UTC)
        good = InstanceChanges(task_states=(TaskState("test", TaskStatus.RUNNING, now, None, 3),))
        doomed = InstanceChanges(fields={"state": WorkflowState.CANCELLED},
                                 task_states=(TaskState("build", TaskStatus.SKIPPED),))
        gate = threading.Event()
        holding = anyio.Event()
        outcomes: dict[str, Any] = {}

        def hold(cur: Any) -> None:  # the write being committed while the others arrive
            anyio.from_thread.run_sync(holding.set)
            gate.wait(10)

        async with anyio.create_task_group() as tg:
            tg.start_soon(record, outcomes, "hold", store._run(hold))
            with anyio.fail_after(10):
                await holding.wait()
            tg.start_soon(record, outcomes, "good", store.commit(first.id, good))
            tg.start_soon(record, outcomes, "doomed", store.commit_many(
                [(first.id, doomed), ("no-such-instance", InstanceChanges())]))
            tg.start_soon(record, outcomes, "lease", store.acquire_lease(second.id, "me", 30))
            await anyio.wait_all_tasks_blocked()
            assert len(store._writes) == 3  # all waiting for the next transaction
            gate.set()

        assert isinstance(outcomes["doomed"], dagflow.WorkflowNotFound)
        assert outcomes["good"] is None and outcomes["lease"] is True
        again = SqliteStorage(tmp_path / "shared.db")
        try:
            loaded = await again.load_workflow(first.id)
            assert loaded is not None
            assert loaded.state == WorkflowState.FAILED  # the failed write's state is undone
            assert loaded.task_states["build"].state == TaskStatus.COMPLETED
            assert loaded.task_states["test"].attempts == 3  # its neighbour's is kept
            assert await again.lease_of(second.id) == ("me", pytest.approx(time.time() + 30,
                                                                           abs=10))
        finally:
            await again.close()
    finally:
        await store.close()


def holding_write() -> tuple[threading.Event, anyio.Event, Any]:
    """A write that, once in its worker thread, sets the event and waits for the gate."""
    gate, holding = threading.Event(), anyio.Event()

    def hold(cur: Any) -> None:
        anyio.from_thread.run_sync(holding.set)
        gate.wait(10)

    return gate, holding, hold


async def test_a_read_does_not_wait_for_the_write_being_committed(tmp_path: Path) -> None:
    """SQLite: reads go through a connection of their own, so loading an instance (a
    start, a status query) does not wait while another caller's write is committed."""
    store = SqliteStorage(tmp_path / "s.db")
    try:
        instance = make_instance()
        await store.store_workflow(instance)
        gate, holding, hold = holding_write()
        async with anyio.create_task_group() as tg:
            tg.start_soon(store._run, hold)
            await holding.wait()
            try:
                with anyio.fail_after(5):
                    loaded = await store.load_workflow(instance.id)
            finally:
                gate.set()
        assert loaded is not None and loaded.task_states == instance.task_states
    finally:
        await store.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_write_given_up_while_queued_leaves_the_store_working(
        tmp_path: Path, anyio_backend: str) -> None:
    """A caller cancelled (by asyncio itself, past anyio's shields) while its write waits
    for the next shared transaction leaves the queue; later writes still go through."""
    store = SqliteStorage(tmp_path / "s.db")
    try:
        instance = make_instance()
        await store.store_workflow(instance)
        gate, holding, hold = holding_write()
        async with anyio.create_task_group() as tg:
            tg.start_soon(store._run, hold)
            await holding.wait()
            impatient = asyncio.ensure_future(store.acquire_lease(instance.id, "me", 30))
            await anyio.wait_all_tasks_blocked()
            impatient.cancel()
            with pytest.raises(asyncio.CancelledError):
                await impatient
            gate.set()
        with anyio.fail_after(10):
            assert await store.acquire_lease(instance.id, "me", 30)
            assert await store.load_workflow(instance.id) is not None
    finally:
        await store.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_writes_of_an_abandoned_transaction_are_not_reported_done(
        tmp_path: Path, anyio_backend: str) -> None:
    """When the caller writing a shared transaction is cancelled past anyio's shields,
    the other writes in it hear that their outcome is unknown, never a success."""
    store = SqliteStorage(tmp_path / "s.db")
    try:
        instance = make_instance()
        await store.store_workflow(instance)
        first_gate, first_holding, first = holding_write()
        gate, holding, hold = holding_write()
        outcome: dict[str, Any] = {}

        async with anyio.create_task_group() as tg:
            tg.start_soon(store._run, first)
            await first_holding.wait()
            leader = asyncio.ensure_future(store._run(hold))  # leads the next transaction
            # which this write joins
            tg.start_soon(record, outcome, "lease", store.acquire_lease(instance.id, "me", 30))
            await anyio.wait_all_tasks_blocked()
            first_gate.set()
            await holding.wait()
            leader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leader
            gate.set()
        assert isinstance(outcome["lease"], StorageError)
        assert "outcome is unknown" in str(outcome["lease"])
    finally:
        await store.close()


async def test_a_write_queued_when_the_store_closes_fails_and_opens_nothing(
        tmp_path: Path) -> None:
    """close() waits for the transaction being written; a write still queued then fails
    with "the store is closed" instead of opening the database again."""
    store = SqliteStorage(tmp_path / "s.db")
    instance = make_instance()
    await store.store_workflow(instance)
    gate, holding, hold = holding_write()
    outcome: dict[str, Any] = {}

    async with anyio.create_task_group() as tg:
        tg.start_soon(store._run, hold)
        await holding.wait()
        tg.start_soon(record, outcome, "lease", store.acquire_lease(instance.id, "me", 30))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(store.close)
        await anyio.wait_all_tasks_blocked()  # close() waits for the transaction
        gate.set()
    assert isinstance(outcome["lease"], StorageError)
    assert "closed" in str(outcome["lease"])
    assert store._conn is None


# --------------------------------------------------------------------------- processes


async def test_two_sqlite_stores_on_one_file_see_each_others_commits(tmp_path: Path) -> None:
    """Two SqliteStorage objects on one file (two processes) read what the other wrote."""
    path = tmp_path / "shared.db"
    first, second = SqliteStorage(path), SqliteStorage(path)
    try:
        instance = make_instance()
        await first.store_workflow(instance)
        loaded = await second.load_workflow(instance.id)
        assert loaded is not None and loaded.task_states == instance.task_states
        now = dt.datetime.now(dt.UTC)
        await second.commit(instance.id, InstanceChanges(
            fields={"state": WorkflowState.RUNNING},
            task_states=(TaskState("test", TaskStatus.RUNNING, now, None, 3),)))
        again = await first.load_workflow(instance.id)
        assert again is not None
        assert again.state == WorkflowState.RUNNING
        assert again.task_states["test"].attempts == 3
        await first.request_control(instance.id, "cancel", "from the first process")
        assert await second.take_controls(instance.id) == [("cancel", "from the first process")]
    finally:
        await first.close()
        await second.close()


async def test_custom_task_type_instance_loads_after_reopening(tmp_path: Path) -> None:
    """An instance of a workflow using a host-registered task type can be loaded by a new
    engine (a restarted process) on the same SQLite file that registers the same type."""

    @attrs.frozen
    class Notify:
        channel: str

    async def send(ctx: Any) -> dict[str, str]:
        return {"sent_to": ctx.spec.channel}

    url = f"sqlite:///{tmp_path / 'custom.db'}"
    text = "id: custom\ntasks:\n  - id: ping\n    type: {type: Notify, channel: '#ops'}\n"
    async with dagflow.Engine(store=url) as engine:
        engine.register_task_type("Notify", Notify, send)
        instance = await engine.run(dagflow.loads(text, task_types=engine.task_types))
    assert instance.state == WorkflowState.COMPLETED
    async with dagflow.Engine(store=url) as engine:
        engine.register_task_type("Notify", Notify, send)
        again = await engine.get_status(instance.id)
    assert again.state == WorkflowState.COMPLETED
    assert again.definition == instance.definition


# --------------------------------------------------------------------------- URLs


async def test_sqlite_url_with_a_relative_path(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``sqlite:///rel/x.db`` is relative to the working directory (directories made)."""
    monkeypatch.chdir(tmp_path)
    store = open_storage("sqlite:///rel/x.db")
    assert isinstance(store, SqliteStorage) and store.path == "rel/x.db"
    try:
        await store.store_workflow(make_instance())
    finally:
        await store.close()
    assert (tmp_path / "rel" / "x.db").is_file()


async def test_sqlite_url_with_an_absolute_path(tmp_path: Path) -> None:
    """``sqlite:////abs/x.db`` (four slashes) is an absolute path."""
    path = tmp_path / "abs" / "x.db"
    store = open_storage(f"sqlite:///{path}")  # path starts with "/": four slashes
    assert isinstance(store, SqliteStorage) and store.path == str(path)
    assert store.synchronous == "FULL"
    try:
        await store.store_workflow(make_instance())
    finally:
        await store.close()
    assert path.is_file()


@pytest.mark.parametrize(("url", "message"), [
    ("sqlite://", "sqlite:///"),
    ("sqlite:///", "sqlite:///"),
    ("sqlite://host/x.db", "sqlite:///"),
    ("sqlite:x.db", "sqlite:///"),
    ("sqlite:///x.db?synchronous=sometimes", "full, normal or extra"),
    ("sqlite:///x.db?journal=delete", "journal"),
    ("mysql://user@host/db", "memory://"),
])
def test_bad_store_urls_are_refused(url: str, message: str) -> None:
    """A URL that names no SQLite file (or no known store) is a StorageError that shows
    what to write instead."""
    with pytest.raises(StorageError, match=message.replace("?", r"\?")):
        open_storage(url)


@pytest.mark.parametrize("url", [
    "postgresql://postgres:s3cret@127.0.0.1:5432/test",
    "postgresql://postgres:s3cret@127.0.0.1:5432/test?schema=x&sslmode=disable",
    "postgres://postgres:s3cret@[::1]:5432/test",
    "postgresql://postgres@127.0.0.1:5432/test?password=s3cret",
])
def test_postgres_repr_never_shows_the_password(url: str) -> None:
    """``repr(store)`` of a PostgreSQL store keeps the password out, wherever the URL
    puts it."""
    store = open_storage(url)
    assert isinstance(store, PostgresStorage)
    assert "s3cret" not in repr(store)
    assert "127.0.0.1" in repr(store) or "::1" in repr(store)


def test_postgres_conninfo_repr_never_shows_the_password() -> None:
    """``repr`` keeps the password out of a libpq ``key=value`` connection string too."""
    store = PostgresStorage("host=127.0.0.1 port=5432 dbname=test user=postgres "
                            "password=s3cret")
    assert "s3cret" not in repr(store)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_unreachable_postgres_fails_fast_without_the_password() -> None:
    """A server nobody listens on gives a StorageError that hides the password, says why
    (connection refused) and comes within a few seconds."""
    store = open_storage("postgresql://postgres:s3cret@127.0.0.1:1/test?connect_timeout=2")
    started = time.monotonic()
    try:
        with pytest.raises(StorageError) as info:
            await store.load_workflow(str(uuid.uuid4()))
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()
    took = time.monotonic() - started
    message = str(info.value)
    assert "s3cret" not in message and "s3cret" not in repr(info.value)
    assert "127.0.0.1" in message
    assert "refused" in message.lower(), message
    assert took < 5, f"took {took:.1f} s to report an unreachable server"
