"""What the SQLite and PostgreSQL stores share: the schema, its migrations, and how an
instance is kept as small rows.

An instance is a header row (``instances``), one row per task (``task_states``), and
append-only ``events`` and ``transitions``. A change — a task state, events, a state
transition — is one transaction touching only those rows, so its cost does not grow with
the number of tasks already finished. Every header and task row carries a checksum (HMAC-
SHA256 with a key, SHA-256 without); a row whose checksum does not match is never loaded.
Checkpoints (full snapshots) have their own table and checksum.

Several engine processes may share one database: an instance is driven by the holder of
its lease, and every commit is conditional on the lease's fencing token, so a process that
lost its lease cannot write.

The drivers (sqlite3, psycopg) are blocking; each store runs them in worker threads. On
SQLite (one writer at a time anyway) a write that arrives while another is being committed
waits for it and then goes, with every other write that arrived meanwhile, into the next
transaction, each in its own savepoint: each caller still sees its own write commit or fail
alone, but many callers (the runs of a busy engine taking and releasing leases, committing
their steps) share one commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from .._checksum import Checksums
from .._errors import ApprovalError, CheckpointError, StorageError, WorkflowNotFound
from .._events import WorkflowEvent, event_from_dict, event_to_dict
from .._gc import building
from .._models import (
    ApprovalRequest,
    Checkpoint,
    ExecutionContext,
    InstanceChanges,
    StateTransition,
    TaskOutput,
    TaskState,
    TaskStatus,
    WorkflowDefinition,
    WorkflowFilters,
    WorkflowInstance,
    WorkflowState,
)
from .._serde import make_converter

__all__ = ["SCHEMA_VERSION", "Checksums", "SqlStorage"]

#: Bumped with every change of the tables; MIGRATIONS[v] upgrades v-1 to v.
SCHEMA_VERSION = 2

_TABLES = """
CREATE TABLE IF NOT EXISTS dagflow_instances (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    error TEXT,
    workdir TEXT NOT NULL,
    parent_id TEXT,
    definition_hash TEXT NOT NULL,
    context TEXT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    transitions BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_token BIGINT NOT NULL DEFAULT 0,
    recoveries BIGINT NOT NULL DEFAULT 0,
    checksum TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dagflow_instances_state ON dagflow_instances (state, created_at);
CREATE INDEX IF NOT EXISTS dagflow_instances_created ON dagflow_instances (created_at);
CREATE TABLE IF NOT EXISTS dagflow_definitions (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dagflow_task_states (
    instance_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    attempts BIGINT NOT NULL,
    output TEXT,
    error TEXT,
    checksum TEXT NOT NULL,
    output_seq BIGINT,
    PRIMARY KEY (instance_id, task_id)
);
CREATE TABLE IF NOT EXISTS dagflow_events (
    instance_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    output TEXT,
    PRIMARY KEY (instance_id, seq)
);
CREATE TABLE IF NOT EXISTS dagflow_transitions (
    instance_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (instance_id, n)
);
CREATE TABLE IF NOT EXISTS dagflow_checkpoints (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    checksum TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dagflow_checkpoints_instance
    ON dagflow_checkpoints (instance_id, created_at);
CREATE TABLE IF NOT EXISTS dagflow_approvals (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    body TEXT NOT NULL,
    checksum TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dagflow_approvals_open ON dagflow_approvals (state, instance_id);
CREATE TABLE IF NOT EXISTS dagflow_controls (
    instance_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dagflow_controls_instance ON dagflow_controls (instance_id);
"""

#: version -> statements that upgrade the schema from version - 1.
MIGRATIONS: dict[int, Sequence[str]] = {
    # 2: a task's output is kept once, in the event that reported it (events.output),
    # which the task row names (task_states.output_seq) and vouches for by checksum
    2: ("ALTER TABLE dagflow_task_states ADD COLUMN output_seq BIGINT",
        "ALTER TABLE dagflow_events ADD COLUMN output TEXT"),
}

_HEADER_FIELDS = ("state", "started_at", "completed_at", "error")
_OUTPUT_KEYS = frozenset({"stdout", "stderr", "exit_code", "data", "metrics"})
_ROWS_PER_STATEMENT = 500  # 10 columns: 5,000 parameters, within SQLite's 32,766
_UPSERT_TASK = (" ON CONFLICT (instance_id, task_id) DO UPDATE SET state = excluded.state,"
                " started_at = excluded.started_at, completed_at = excluded.completed_at,"
                " attempts = excluded.attempts, output = excluded.output,"
                " error = excluded.error, checksum = excluded.checksum,"
                " output_seq = excluded.output_seq")


def _iso(value: dt.datetime | None) -> str | None:
    # UTC, so that stored times compare as text (created_after, ORDER BY created_at)
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _with_output(body: str, output: str) -> str:
    """An event's JSON body (an object) with ``"output"`` added."""
    return f'{body[:-1]}, "output": {output}}}'


def _output_events(events: Sequence[WorkflowEvent], states: Mapping[tuple[str, str], TaskState],
                   instance_id: str) -> dict[int, str]:
    """seq -> task of the events that report the very output their task's new state
    holds (the last such event of each task)."""
    found: dict[str, int] = {}
    for e in events:
        out = getattr(e, "output", None)
        if type(out) is TaskOutput:
            task_id = getattr(e, "task_id", None)
            if not isinstance(task_id, str):
                continue
            state = states.get((instance_id, task_id))
            if state is not None and state.output is out:
                found[task_id] = e.seq
    return {seq: task_id for task_id, seq in found.items()}


class _Write:
    """One caller's write, waiting for a transaction."""

    __slots__ = ("abandoned", "error", "finished", "result", "turn", "work")

    def __init__(self, work: Callable[[Any], Any]) -> None:
        self.work = work
        self.turn = anyio.Event()  # set when it was written, or when its caller leads
        self.finished = False
        self.result: Any = None
        self.error: Exception | None = None
        self.abandoned: StorageError | None = None  # set on the event loop only


class SqlStorage:
    """The durable :class:`~dagflow.WorkflowStorage` logic; subclasses open connections.

    Subclasses provide :meth:`_connect` (a DB-API connection), the placeholder style and
    the SQL that differs, and call :meth:`_setup` once.
    """

    placeholder = "?"
    #: appended to a SELECT that reads a row to change it (SQLite locks the database anyway)
    for_update = ""
    #: the SQL function for the larger of two values
    greatest = "MAX"
    #: worker threads that may use the database at once
    threads = 1
    #: at most this many checkpoints are kept per instance (older ones are pruned)
    keep_checkpoints = 10
    #: at most this many writes share one transaction
    max_batch = 200
    #: whether writes that arrive together share a transaction
    share_transactions = True

    def __init__(self, *, key: bytes | None = None) -> None:
        self.checksum = Checksums(key)
        self._converter = make_converter()
        self._definitions: dict[str, WorkflowDefinition] = {}
        #: custom task types, for reading definition snapshots that use them (the engine
        #: shares its registry here)
        self.task_types: dict[str, type[Any]] = {}
        self._tokens: dict[str, int] = {}  # instance -> our lease's fencing token
        self._limiter = anyio.CapacityLimiter(self.threads)
        #: the threads reads run in (a store with a connection of its own for reads
        #: gives them their own)
        self._read_limiter = self._limiter
        self._closed = False
        self._writes: list[_Write] = []  # waiting for the next write transaction
        self._writing = False  # a caller is committing a batch (and hands over after)

    # ------------------------------------------------------------------ subclass hooks

    def _connection(self, write: bool = True) -> Any:
        """The connection to use in the current worker thread (for a write or a read)."""
        raise NotImplementedError

    def _release(self, conn: Any) -> None:
        """Give a connection back after a transaction."""

    def _begin(self, cur: Any, write: bool) -> None:
        """Start a transaction (drivers that begin one implicitly do nothing)."""

    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    async def _run(self, work: Callable[[Any], Any], *, write: bool = True) -> Any:
        """Run ``work(cursor)`` in a transaction on a worker thread (a write, where the
        store shares transactions, in one with the writes that arrived meanwhile)."""
        if self._closed:
            raise StorageError("the store is closed")
        try:
            if write and self.share_transactions:
                return await self._write(work)
            return await anyio.to_thread.run_sync(
                self._transaction, work, write,
                limiter=self._limiter if write else self._read_limiter)
        except (WorkflowNotFound, CheckpointError, StorageError, ApprovalError):
            raise
        except Exception as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    def _transaction(self, work: Callable[[Any], Any], write: bool) -> Any:
        conn = self._connection(write)
        try:
            cur = conn.cursor()
            self._begin(cur, write)
            result = work(cur)
            conn.commit()
            return result
        except BaseException:
            conn.rollback()
            raise
        finally:
            self._release(conn)

    async def _write(self, work: Callable[[Any], Any]) -> Any:
        """Queue the write; the caller whose turn it is writes the whole queue (up to
        ``max_batch``) in one transaction, then hands the turn to the next waiting one."""
        write = _Write(work)
        self._writes.append(write)
        try:
            if self._writing:
                await write.turn.wait()  # written meanwhile, or our turn to lead
            if not write.finished:
                # like a worker thread's work, a batch is not abandoned when its leader
                # is cancelled: the leader hears of it once the batch is written
                with anyio.CancelScope(shield=True):
                    await self._lead()
        except BaseException:
            self._withdraw(write)
            raise
        if write.abandoned is not None:
            raise write.abandoned
        if write.error is not None:
            raise write.error
        return write.result

    async def _lead(self) -> None:
        self._writing = True
        batch, self._writes = self._writes[:self.max_batch], self._writes[self.max_batch:]
        try:
            await anyio.to_thread.run_sync(self._write_batch, batch, limiter=self._limiter)
        except BaseException as exc:
            # cancelled past the shield (asyncio's own cancel, KeyboardInterrupt): the
            # thread may still be writing, so no write of the batch knows its outcome
            for write in batch:
                write.abandoned = StorageError(
                    f"the write's outcome is unknown: its transaction was left ({exc!r})")
            raise
        finally:
            for write in batch:
                write.finished = True
                write.turn.set()
            self._pass_turn()

    def _withdraw(self, write: _Write) -> None:
        """The caller of ``write`` left before it was written (cancelled while waiting):
        it leaves the queue, and the turn goes on if it was about to lead."""
        if write in self._writes:
            self._writes.remove(write)
            if write.turn.is_set():
                self._pass_turn()

    def _pass_turn(self) -> None:
        if self._writes:
            self._writes[0].turn.set()  # the next batch's caller leads it
        else:
            self._writing = False

    def _write_batch(self, batch: list[_Write]) -> None:
        """Each write in a savepoint of one transaction: a write that fails is undone
        alone, and if the transaction itself fails, every write that had not failed
        already fails with it."""
        if len(batch) == 1:
            write = batch[0]
            try:
                write.result = self._transaction(write.work, True)
            except Exception as exc:
                write.error = exc
            return
        try:
            self._transaction(partial(self._savepoints, batch), True)
        except Exception as exc:
            for write in batch:
                if write.error is None:
                    write.result, write.error = None, exc

    @staticmethod
    def _savepoints(batch: list[_Write], cur: Any) -> None:
        for write in batch:
            cur.execute("SAVEPOINT dagflow_write")
            try:
                write.result = write.work(cur)
            except Exception as exc:
                write.error = exc
                cur.execute("ROLLBACK TO SAVEPOINT dagflow_write")
            cur.execute("RELEASE SAVEPOINT dagflow_write")

    def _setup(self, cur: Any) -> None:
        """Create the tables, or migrate them, and check the schema version."""
        for statement in _TABLES.split(";"):
            if statement.strip():
                cur.execute(statement)
        cur.execute("CREATE TABLE IF NOT EXISTS dagflow_schema (version INTEGER NOT NULL)")
        cur.execute("SELECT version FROM dagflow_schema")
        row = cur.fetchone()
        if row is None:
            cur.execute(self._q("INSERT INTO dagflow_schema (version) VALUES (?)"),
                        (SCHEMA_VERSION,))
            return
        version = int(row[0])
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"the database has dagflow schema version {version}, newer than this "
                f"dagflow's {SCHEMA_VERSION}: upgrade dagflow")
        while version < SCHEMA_VERSION:
            version += 1
            for statement in MIGRATIONS.get(version, ()):
                cur.execute(statement)
            cur.execute(self._q("UPDATE dagflow_schema SET version = ?"), (version,))

    # ------------------------------------------------------------------ rows

    def _header_sum(self, h: dict[str, Any]) -> str:
        return self.checksum(*self._header_parts(h))

    def _task_row(self, instance_id: str, state: TaskState,
                  texts: dict[int, str] | None = None,
                  output_seq: int | None = None) -> tuple[Any, ...]:
        """The row of ``state``: its output in the row, or (``output_seq``) in the event
        of that seq, the row's checksum covering the output's SHA-256."""
        out = state.output
        text = None if out is None else self._output_json(out, {} if texts is None else texts)
        values = (instance_id, state.task_id, state.state.value, _iso(state.started_at),
                  _iso(state.completed_at), state.attempts,
                  text if output_seq is None else None, state.error)
        if output_seq is None or text is None:
            return (*values, self.checksum("task", *values), None)
        return (*values, self.checksum("task", *values, output_seq, _digest(text)),
                output_seq)

    @staticmethod
    def _output_json(out: TaskOutput, texts: dict[int, str]) -> str:
        """``out`` as JSON, encoded once for the task row and the event that carry it in
        one commit (``texts``: the commit's encodings, by ``id`` of outputs it holds)."""
        text = texts.get(id(out))
        if text is None:
            text = texts[id(out)] = json.dumps(
                {"stdout": out.stdout, "stderr": out.stderr, "exit_code": out.exit_code,
                 "data": out.data, "metrics": out.metrics}, ensure_ascii=False, default=str)
        return text

    def _task_from_row(self, row: Sequence[Any]) -> TaskState | None:
        """The task state of a row (with the output of the event it names, if any), or
        None when its checksum does not match."""
        *values, checksum, output_seq, event_output = row
        if output_seq is None:
            if not self.checksum.matches(checksum, "task", *values):
                return None
            text = values[6]
        else:
            text = event_output
            if text is None or not self.checksum.matches(
                    checksum, "task", *values, int(output_seq), _digest(text)):
                return None
        _, task_id, state, started, completed, attempts, _, error = values
        return TaskState(task_id, TaskStatus(state), _time(started), _time(completed),
                         int(attempts), self._output(text) if text else None, error)

    def _output(self, text: str) -> TaskOutput:
        data = json.loads(text)
        if type(data) is dict and data.keys() == _OUTPUT_KEYS and type(data["metrics"]) is dict:
            # what this store wrote: build it directly (the checksum vouched for it)
            return TaskOutput(data["stdout"], data["stderr"], data["exit_code"], data["data"],
                              data["metrics"])
        output: TaskOutput = self._converter.structure(data, TaskOutput)
        return output

    def _event_rows(self, instance_id: str, events: Iterable[WorkflowEvent],
                    texts: dict[int, str] | None = None,
                    apart: Container[int] = ()) -> list[tuple[Any, ...]]:
        """Event rows; the output of an event whose seq is in ``apart`` goes in its own
        column (a task row names it), any other output in the body."""
        conv = self._converter
        texts = {} if texts is None else texts
        rows: list[tuple[Any, ...]] = []
        for e in events:
            out = getattr(e, "output", None)
            if type(out) is TaskOutput:
                head = json.dumps(event_to_dict(conv, e, without="output"),
                                  ensure_ascii=False, default=str)
                text = self._output_json(out, texts)
                if e.seq in apart:
                    rows.append((instance_id, e.seq, e.type_name, head, text))
                    continue
                body = _with_output(head, text)  # encoded once, as the task row has it
            else:
                body = json.dumps(event_to_dict(conv, e), ensure_ascii=False, default=str)
            rows.append((instance_id, e.seq, e.type_name, body, None))
        return rows

    # ------------------------------------------------------------------ protocol

    async def store_workflow(self, instance: WorkflowInstance) -> None:
        """Save a new instance with its definition snapshot.

        Raises:
            StorageError: An instance with this id exists already, or the write failed.
        """
        conv = self._converter

        def snapshot() -> str:
            # the canonical form (sorted keys) is what definition_hash hashes: checking the
            # snapshot later is one SHA-256 of the stored text
            return json.dumps(conv.unstructure(instance.definition), sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False)

        # a definition this store wrote or read already is in the database: its snapshot
        # (as long to write as the whole definition) is made only if it turns out not to be
        definition = (None if instance.definition_hash in self._definitions else snapshot())
        context = json.dumps(conv.unstructure(instance.execution_context), ensure_ascii=False,
                             default=str)
        header = {
            "id": instance.id, "workflow_id": instance.workflow_id,
            "state": instance.state.value, "created_at": _iso(instance.created_at),
            "created_by": instance.created_by, "started_at": _iso(instance.started_at),
            "completed_at": _iso(instance.completed_at), "error": instance.error,
            "workdir": instance.workdir, "parent_id": instance.parent_id,
            "definition_hash": instance.definition_hash, "context": context,
        }
        checksum = self._header_sum(header)
        tasks = [self._task_row(instance.id, s) for s in instance.task_states.values()]
        q = self._q
        transitions = [(instance.id, n, t.from_state.value, t.to_state.value,
                        t.timestamp.isoformat(), t.reason)
                       for n, t in enumerate(instance.state_history, 1)]

        def work(cur: Any) -> None:
            cur.execute(q("SELECT 1 FROM dagflow_instances WHERE id = ?"), (instance.id,))
            if cur.fetchone() is not None:
                raise StorageError(f"an instance with id {instance.id!r} exists already")
            cur.execute(q("SELECT 1 FROM dagflow_definitions WHERE hash = ?"),
                        (instance.definition_hash,))
            if cur.fetchone() is None:
                # another transaction may store the same definition meanwhile
                cur.execute(q("INSERT INTO dagflow_definitions (hash, body) VALUES (?, ?)"
                              " ON CONFLICT (hash) DO NOTHING"),
                            (instance.definition_hash, definition or snapshot()))
            cur.execute(q(
                "INSERT INTO dagflow_instances (id, workflow_id, state, created_at, created_by,"
                " started_at, completed_at, error, workdir, parent_id, definition_hash, context,"
                " transitions, checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                (*header.values(), len(transitions), checksum))
            if tasks:
                cur.executemany(q(
                    "INSERT INTO dagflow_task_states (instance_id, task_id, state, started_at,"
                    " completed_at, attempts, output, error, checksum, output_seq)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), tasks)
            if transitions:
                cur.executemany(q(
                    "INSERT INTO dagflow_transitions (instance_id, n, from_state, to_state, at,"
                    " reason) VALUES (?, ?, ?, ?, ?, ?)"), transitions)

        await self._run(work)
        self._definitions.setdefault(instance.definition_hash, instance.definition)

    _HEADER_COLUMNS = ("id, workflow_id, state, created_at, created_by, started_at, "
                       "completed_at, error, workdir, parent_id, definition_hash, context, "
                       "checksum")

    async def load_workflow(self, instance_id: str) -> WorkflowInstance | None:
        """The instance as last committed, or ``None``.

        Raises:
            CheckpointError: A row's checksum does not match (it is corrupt or was
                tampered with); ``.problems`` names them and ``.partial`` is the instance
                without those rows.
        """
        q = self._q

        def work(cur: Any) -> Any:
            cur.execute(q(f"SELECT {self._HEADER_COLUMNS} FROM dagflow_instances WHERE id = ?"),
                        (instance_id,))
            header = cur.fetchone()
            if header is None:
                return None
            cur.execute(q("SELECT t.instance_id, t.task_id, t.state, t.started_at,"
                          " t.completed_at, t.attempts, t.output, t.error, t.checksum,"
                          " t.output_seq, e.output FROM dagflow_task_states t"
                          " LEFT JOIN dagflow_events e ON e.instance_id = t.instance_id"
                          " AND e.seq = t.output_seq WHERE t.instance_id = ?"), (instance_id,))
            tasks = cur.fetchall()
            cur.execute(q("SELECT from_state, to_state, at, reason FROM dagflow_transitions"
                          " WHERE instance_id = ? ORDER BY n"), (instance_id,))
            transitions = cur.fetchall()
            definition = None
            if header[10] not in self._definitions:
                cur.execute(q("SELECT body FROM dagflow_definitions WHERE hash = ?"),
                            (header[10],))
                found = cur.fetchone()
                definition = found[0] if found else None
            return header, tasks, transitions, definition

        found = await self._run(work, write=False)
        if found is None:
            return None
        with building(len(found[1])):
            return self._build(*found)

    def _build(self, header: Sequence[Any], tasks: Sequence[Sequence[Any]],
               transitions: Sequence[Sequence[Any]], definition_text: str | None
               ) -> WorkflowInstance:
        names = self._HEADER_COLUMNS.split(", ")
        h = dict(zip(names, header, strict=True))
        problems: list[str] = []
        if not self.checksum.matches(h["checksum"], *self._header_parts(h)):
            problems.append(f"instance {h['id']}: header row checksum does not match")
        definition = self._definition(h["definition_hash"], definition_text)
        states: dict[str, TaskState] = {}
        for row in tasks:
            state = self._task_from_row(row)
            if state is None:
                problems.append(f"instance {h['id']}: task {row[1]!r} row checksum does not "
                                "match")
            else:
                states[state.task_id] = state
        context = self._converter.structure(json.loads(h["context"]), ExecutionContext)
        outputs = {k: s.output for k, s in states.items() if s.output is not None}
        instance = WorkflowInstance(
            id=h["id"], workflow_id=h["workflow_id"], definition=definition,
            state=WorkflowState(h["state"]), created_at=_time(h["created_at"]),  # type: ignore[arg-type]
            created_by=h["created_by"], started_at=_time(h["started_at"]),
            completed_at=_time(h["completed_at"]),
            execution_context=ExecutionContext(context.variables, outputs, context.environment),
            task_states=states, error=h["error"],
            state_history=tuple(StateTransition(WorkflowState(f), WorkflowState(t),
                                                _time(at), r)  # type: ignore[arg-type]
                                for f, t, at, r in transitions),
            workdir=h["workdir"], definition_hash=h["definition_hash"], parent_id=h["parent_id"],
        )
        if problems:
            raise CheckpointError("; ".join(problems), partial=instance, problems=problems)
        return instance

    def _header_parts(self, h: dict[str, Any]) -> tuple[Any, ...]:
        return ("instance", h["id"], h["workflow_id"], h["state"], h["created_at"],
                h["created_by"], h["started_at"], h["completed_at"], h["error"], h["workdir"],
                h["parent_id"], h["definition_hash"], h["context"])

    def _definition(self, digest: str, text: str | None) -> WorkflowDefinition:
        cached = self._definitions.get(digest)
        if cached is not None:
            return cached
        if text is None:
            raise CheckpointError(f"the definition snapshot {digest[:12]} is missing")
        if hashlib.sha256(text.encode()).hexdigest() != digest:
            raise CheckpointError(f"the definition snapshot {digest[:12]} does not match its "
                                  "hash (corrupt or edited)")
        # the hash proves this is the definition validated when the instance was created:
        # structure it, skip the validator (a third of a big recovery otherwise)
        try:
            converter = make_converter(self.task_types) if self.task_types else self._converter
            definition: WorkflowDefinition = converter.structure(json.loads(text),
                                                                 WorkflowDefinition)
        except Exception as exc:
            raise CheckpointError(f"the definition snapshot {digest[:12]} cannot be read: "
                                  f"{exc}") from None
        self._definitions[digest] = definition
        return definition

    async def update_workflow(self, instance: WorkflowInstance) -> None:
        """Replace the stored instance's header, task states and history; events stay.

        Raises:
            WorkflowNotFound: No instance has this id.
        """
        q = self._q
        context = json.dumps(self._converter.unstructure(instance.execution_context),
                             ensure_ascii=False, default=str)
        tasks = [self._task_row(instance.id, s) for s in instance.task_states.values()]
        transitions = [(instance.id, n, t.from_state.value, t.to_state.value,
                        t.timestamp.isoformat(), t.reason)
                       for n, t in enumerate(instance.state_history, 1)]

        def work(cur: Any) -> None:
            h = self._load_header(cur, instance.id)
            h.update(state=instance.state.value, started_at=_iso(instance.started_at),
                     completed_at=_iso(instance.completed_at), error=instance.error,
                     context=context)
            self._fence(cur, instance.id)
            cur.execute(q("UPDATE dagflow_instances SET state = ?, started_at = ?,"
                          " completed_at = ?, error = ?, context = ?, transitions = ?,"
                          " checksum = ? WHERE id = ?"),
                        (h["state"], h["started_at"], h["completed_at"], h["error"], context,
                         len(transitions), self._header_sum(h), instance.id))
            cur.execute(q("DELETE FROM dagflow_task_states WHERE instance_id = ?"),
                        (instance.id,))
            cur.execute(q("DELETE FROM dagflow_transitions WHERE instance_id = ?"),
                        (instance.id,))
            if tasks:
                cur.executemany(q(
                    "INSERT INTO dagflow_task_states (instance_id, task_id, state, started_at,"
                    " completed_at, attempts, output, error, checksum, output_seq)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), tasks)
            if transitions:
                cur.executemany(q(
                    "INSERT INTO dagflow_transitions (instance_id, n, from_state, to_state, at,"
                    " reason) VALUES (?, ?, ?, ?, ?, ?)"), transitions)

        await self._run(work)

    def _load_header(self, cur: Any, instance_id: str) -> dict[str, Any]:
        cur.execute(self._q(f"SELECT {self._HEADER_COLUMNS} FROM dagflow_instances"
                            " WHERE id = ?"), (instance_id,))
        row = cur.fetchone()
        if row is None:
            raise WorkflowNotFound(instance_id=instance_id)
        return dict(zip(self._HEADER_COLUMNS.split(", "), row, strict=True))

    def _fence(self, cur: Any, instance_id: str) -> None:
        """Refuse to write when another process took this instance's lease from us."""
        token = self._tokens.get(instance_id)
        if token is None:
            return
        cur.execute(self._q("SELECT lease_token FROM dagflow_instances WHERE id = ?"),
                    (instance_id,))
        row = cur.fetchone()
        if row is None or int(row[0]) != token:
            raise StorageError(f"instance {instance_id} is now driven by another process "
                               "(this process lost its lease): not writing")

    async def commit(self, instance_id: str, changes: InstanceChanges) -> None:
        """Apply one change in one transaction.

        Raises:
            WorkflowNotFound: No instance has this id.
            StorageError: The write failed, or this process lost the instance's lease.
        """
        await self.commit_many([(instance_id, changes)])

    async def commit_many(self, batch: Sequence[tuple[str, InstanceChanges]]) -> None:
        """Apply the changes of several instances in one transaction: all or nothing.

        Raises:
            WorkflowNotFound: One of the instances does not exist (nothing is applied).
            StorageError: The write failed, or this process lost an instance's lease.
        """
        headers = [self._header_work(instance_id, changes) for instance_id, changes in batch]
        # one row per task: a statement may not upsert the same key twice
        latest = {(instance_id, s.task_id): s for instance_id, changes in batch
                  for s in changes.task_states}
        # a task's output reported by an event of the same commit is kept in the event
        # only: instance -> {seq of that event: task}
        apart = {instance_id: _output_events(changes.events, latest, instance_id)
                 for instance_id, changes in batch}
        named = {(instance_id, task_id): seq for instance_id, seqs in apart.items()
                 for seq, task_id in seqs.items()}
        texts: dict[int, str] = {}  # each output encoded once
        tasks = [self._task_row(instance_id, s, texts, named.get((instance_id, task_id)))
                 for (instance_id, task_id), s in latest.items()]
        events = [row for instance_id, changes in batch
                  for row in self._event_rows(instance_id, changes.events, texts,
                                              apart[instance_id])]

        def work(cur: Any) -> None:
            for header in headers:
                header(cur)
            if tasks:
                self._many(cur, "INSERT INTO dagflow_task_states (instance_id, task_id, state,"
                           " started_at, completed_at, attempts, output, error, checksum,"
                           " output_seq)", tasks, _UPSERT_TASK)
            if events:
                self._many(cur, "INSERT INTO dagflow_events (instance_id, seq, type, body,"
                           " output)", events)

        await self._run(work)

    def _header_work(self, instance_id: str, changes: InstanceChanges
                     ) -> Callable[[Any], None]:
        """The statements that change an instance's own row (fenced by the lease token)
        and record its transitions."""
        q = self._q
        fields = changes.fields
        last_seq = changes.events[-1].seq if changes.events else None
        transitions = changes.transitions
        token = self._tokens.get(instance_id)

        def work(cur: Any) -> None:
            if fields or transitions:
                h = self._load_header(cur, instance_id)
                for name in _HEADER_FIELDS:
                    if name in fields:
                        value = fields[name]
                        h[name] = (value.value if isinstance(value, WorkflowState)
                                   else _iso(value) if isinstance(value, dt.datetime)
                                   else value)
                cur.execute(q("SELECT transitions FROM dagflow_instances WHERE id = ?"),
                            (instance_id,))
                count = int(cur.fetchone()[0])
                if transitions:
                    cur.executemany(q(
                        "INSERT INTO dagflow_transitions (instance_id, n, from_state, to_state,"
                        " at, reason) VALUES (?, ?, ?, ?, ?, ?)"),
                        [(instance_id, count + n, t.from_state.value, t.to_state.value,
                          t.timestamp.isoformat(), t.reason)
                         for n, t in enumerate(transitions, 1)])
                sql = ("UPDATE dagflow_instances SET state = ?, started_at = ?,"
                       " completed_at = ?, error = ?, transitions = ?, checksum = ?"
                       + (f", last_seq = {self.greatest}(last_seq, ?)"
                          if last_seq is not None else "") + " WHERE id = ?")
                params: list[Any] = [h["state"], h["started_at"], h["completed_at"],
                                     h["error"], count + len(transitions), self._header_sum(h)]
            else:
                sql = f"UPDATE dagflow_instances SET last_seq = {self.greatest}(last_seq, ?)" \
                    " WHERE id = ?"
                params = []
                if last_seq is None:
                    sql = "UPDATE dagflow_instances SET last_seq = last_seq WHERE id = ?"
            if last_seq is not None:
                params.append(last_seq)
            params.append(instance_id)
            if token is not None:
                sql += " AND lease_token = ?"
                params.append(token)
            cur.execute(q(sql), params)
            if cur.rowcount != 1:
                cur.execute(q("SELECT lease_token FROM dagflow_instances WHERE id = ?"),
                            (instance_id,))
                if cur.fetchone() is None:
                    raise WorkflowNotFound(instance_id=instance_id)
                raise StorageError(f"instance {instance_id} is now driven by another process "
                                   "(this process lost its lease): not writing")

        return work

    def _many(self, cur: Any, head: str, rows: Sequence[tuple[Any, ...]],
              tail: str = "") -> None:
        """Insert ``rows`` a few hundred per statement: one statement per row (executemany)
        hands the GIL to the event loop and back at every row, which made a busy run's
        commits several times slower."""
        width = len(rows[0])
        group = "(" + ", ".join([self.placeholder] * width) + ")"
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start:start + _ROWS_PER_STATEMENT]
            sql = f"{head} VALUES {', '.join([group] * len(chunk))}{tail}"
            cur.execute(sql, [value for row in chunk for value in row])

    async def instance_ids(self, filters: WorkflowFilters) -> list[tuple[str, str | None]]:
        """``(id, parent_id)`` of matching instances, newest first, without loading them."""
        sql, params = self._filter_sql(filters, "id, parent_id")

        def work(cur: Any) -> list[tuple[str, str | None]]:
            cur.execute(self._q(sql), params)
            return [(row[0], row[1]) for row in cur.fetchall()]

        return await self._run(work, write=False)  # type: ignore[no-any-return]

    async def last_event_seq(self, instance_id: str) -> int:
        """The seq of the instance's newest event (0 before any)."""
        def work(cur: Any) -> int:
            cur.execute(self._q("SELECT last_seq FROM dagflow_instances WHERE id = ?"),
                        (instance_id,))
            row = cur.fetchone()
            if row is None:
                raise WorkflowNotFound(instance_id=instance_id)
            return int(row[0])

        return await self._run(work, write=False)  # type: ignore[no-any-return]

    def _filter_sql(self, filters: WorkflowFilters, columns: str) -> tuple[str, list[Any]]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if filters.state is not None:
            where.append("state = ?")
            params.append(filters.state.value)
        if filters.user_id is not None:
            where.append("created_by = ?")
            params.append(filters.user_id)
        if filters.workflow_id is not None:
            where.append("workflow_id = ?")
            params.append(filters.workflow_id)
        if filters.created_after is not None:
            where.append("created_at > ?")
            params.append(_iso(filters.created_after))
        sql = (f"SELECT {columns} FROM dagflow_instances WHERE {' AND '.join(where)}"
               " ORDER BY created_at DESC, id DESC")
        if filters.limit is not None:
            sql += f" LIMIT {int(filters.limit)}"
        return sql, params

    async def list_workflows(self, filters: WorkflowFilters) -> list[WorkflowInstance]:
        """Matching instances, newest first (rows failing their checksum are left out and
        logged)."""
        out = []
        for instance_id, _ in await self.instance_ids(filters):
            try:
                instance = await self.load_workflow(instance_id)
            except CheckpointError as exc:
                import logging

                logging.getLogger("dagflow").error("not listing %s: %s", instance_id, exc)
                continue
            if instance is not None:
                out.append(instance)
        return out

    async def delete_workflow(self, instance_id: str) -> None:
        """Remove an instance and everything recorded about it."""
        q = self._q

        def work(cur: Any) -> None:
            for table in ("dagflow_task_states", "dagflow_events", "dagflow_transitions",
                          "dagflow_checkpoints", "dagflow_approvals", "dagflow_controls"):
                cur.execute(q(f"DELETE FROM {table} WHERE instance_id = ?"), (instance_id,))
            cur.execute(q("DELETE FROM dagflow_instances WHERE id = ?"), (instance_id,))

        await self._run(work)
        self._tokens.pop(instance_id, None)

    async def load_events(self, instance_id: str, after: int = 0,
                          limit: int | None = None) -> list[WorkflowEvent]:
        """Events with ``seq > after``, in order.

        Raises:
            WorkflowNotFound: No instance has this id.
        """
        q = self._q
        sql = ("SELECT body, output FROM dagflow_events WHERE instance_id = ? AND seq > ?"
               " ORDER BY seq") + (f" LIMIT {int(limit)}" if limit is not None else "")

        def work(cur: Any) -> list[str]:
            cur.execute(q(sql), (instance_id, after))
            rows = [body if output is None else _with_output(body, output)
                    for body, output in cur.fetchall()]
            if not rows:
                cur.execute(q("SELECT 1 FROM dagflow_instances WHERE id = ?"), (instance_id,))
                if cur.fetchone() is None:
                    raise WorkflowNotFound(instance_id=instance_id)
            return rows

        conv = self._converter
        return [event_from_dict(conv, json.loads(body))
                for body in await self._run(work, write=False)]

    # ------------------------------------------------------------------ checkpoints

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a snapshot (with its checksum) and prune the oldest beyond the limit."""
        body = json.dumps(self._converter.unstructure(checkpoint), ensure_ascii=False,
                          default=str)
        q = self._q

        def work(cur: Any) -> None:
            cur.execute(q("INSERT INTO dagflow_checkpoints (id, instance_id, created_at, body,"
                          " checksum) VALUES (?, ?, ?, ?, ?)"),
                        (checkpoint.id, checkpoint.instance_id, checkpoint.timestamp.isoformat(),
                         body, checkpoint.checksum))
            cur.execute(q("SELECT id FROM dagflow_checkpoints WHERE instance_id = ?"
                          " ORDER BY created_at DESC, id DESC"), (checkpoint.instance_id,))
            stale = [(row[0],) for row in cur.fetchall()[self.keep_checkpoints:]]
            if stale:
                cur.executemany(q("DELETE FROM dagflow_checkpoints WHERE id = ?"), stale)

        await self._run(work)

    async def load_checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        """A snapshot as stored (the CheckpointManager verifies its checksum)."""
        q = self._q

        def work(cur: Any) -> Any:
            cur.execute(q("SELECT body, checksum FROM dagflow_checkpoints WHERE id = ?"),
                        (checkpoint_id,))
            return cur.fetchone()

        row = await self._run(work, write=False)
        return self._checkpoint(row) if row is not None else None

    def _checkpoint(self, row: Sequence[Any]) -> Checkpoint:
        body, checksum = row
        try:
            data = json.loads(body)
            data["checksum"] = checksum
            checkpoint: Checkpoint = self._converter.structure(data, Checkpoint)
        except Exception as exc:
            raise CheckpointError(f"checkpoint cannot be read: {exc}") from None
        return checkpoint

    async def list_checkpoints(self, instance_id: str) -> list[Checkpoint]:
        """An instance's snapshots, oldest first (unreadable ones are left out)."""
        q = self._q

        def work(cur: Any) -> list[Any]:
            cur.execute(q("SELECT body, checksum FROM dagflow_checkpoints WHERE instance_id = ?"
                          " ORDER BY created_at, id"), (instance_id,))
            return list(cur.fetchall())

        out = []
        for row in await self._run(work, write=False):
            try:
                out.append(self._checkpoint(row))
            except CheckpointError:
                continue
        return out

    async def delete_checkpoint(self, checkpoint_id: str) -> None:
        """Remove one snapshot."""
        def work(cur: Any) -> None:
            cur.execute(self._q("DELETE FROM dagflow_checkpoints WHERE id = ?"),
                        (checkpoint_id,))

        await self._run(work)

    # ------------------------------------------------------------------ leases

    async def acquire_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        """Take (or renew) the right to drive an instance for ``seconds``.

        Returns:
            False when another owner holds an unexpired lease.
        """
        now = time.time()
        q = self._q

        def work(cur: Any) -> int | None:
            cur.execute(q("UPDATE dagflow_instances SET lease_owner = ?, lease_expires = ?,"
                          " lease_token = CASE WHEN lease_owner = ? THEN lease_token"
                          " ELSE lease_token + 1 END"
                          " WHERE id = ? AND (lease_owner IS NULL OR lease_owner = ?"
                          " OR lease_expires < ?)"),
                        (owner, now + seconds, owner, instance_id, owner, now))
            if cur.rowcount != 1:
                cur.execute(q("SELECT 1 FROM dagflow_instances WHERE id = ?"), (instance_id,))
                if cur.fetchone() is None:
                    raise WorkflowNotFound(instance_id=instance_id)
                return None
            cur.execute(q("SELECT lease_token FROM dagflow_instances WHERE id = ?"),
                        (instance_id,))
            return int(cur.fetchone()[0])

        token = await self._run(work)
        if token is None:
            return False
        self._tokens[instance_id] = token
        return True

    async def renew_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        """Extend the lease this store took for ``owner``; False once another process has
        taken it since (even if it released it again): the run must stop."""
        held = self._tokens.get(instance_id)
        if held is None:
            return False

        def work(cur: Any) -> bool:
            cur.execute(self._q("UPDATE dagflow_instances SET lease_expires = ? WHERE id = ?"
                                " AND lease_owner = ? AND lease_token = ?"),
                        (time.time() + seconds, instance_id, owner, held))
            return bool(cur.rowcount == 1)

        return bool(await self._run(work))

    async def release_lease(self, instance_id: str, owner: str) -> None:
        """Give up the lease (only if ``owner`` holds it)."""
        def work(cur: Any) -> None:
            cur.execute(self._q("UPDATE dagflow_instances SET lease_owner = NULL,"
                                " lease_expires = 0 WHERE id = ? AND lease_owner = ?"),
                        (instance_id, owner))

        await self._run(work)
        self._tokens.pop(instance_id, None)

    # ------------------------------------------------------------------ approvals

    def _approval_row(self, request: ApprovalRequest, state: str) -> tuple[Any, ...]:
        body = json.dumps(self._converter.unstructure(request), ensure_ascii=False,
                          default=str)
        values = (request.approval_id, request.instance_id, request.task_id, state,
                  _iso(request.expires_at), body)
        return (*values, self.checksum("approval", *values))

    def _approval_from_row(self, row: Sequence[Any]) -> ApprovalRequest:
        *values, checksum = row
        if not self.checksum.matches(checksum, "approval", *values):
            raise CheckpointError(f"approval {values[0]} does not match its checksum "
                                  "(corrupt or tampered with): not loading it")
        request: ApprovalRequest = self._converter.structure(json.loads(values[5]),
                                                             ApprovalRequest)
        return request

    _APPROVAL_COLUMNS = "id, instance_id, task_id, state, expires_at, body, checksum"

    async def save_approval(self, request: ApprovalRequest, state: str = "Pending") -> None:
        """Store a new approval gate."""
        row = self._approval_row(request, state)

        def work(cur: Any) -> None:
            cur.execute(self._q(f"INSERT INTO dagflow_approvals ({self._APPROVAL_COLUMNS})"
                                " VALUES (?, ?, ?, ?, ?, ?, ?)"), row)

        await self._run(work)

    async def load_approval(self, approval_id: str) -> ApprovalRequest | None:
        """A gate with its votes, or ``None``.

        Raises:
            CheckpointError: Its row fails its checksum.
        """
        def work(cur: Any) -> Any:
            cur.execute(self._q(f"SELECT {self._APPROVAL_COLUMNS} FROM dagflow_approvals"
                                " WHERE id = ?"), (approval_id,))
            return cur.fetchone()

        row = await self._run(work, write=False)
        return self._approval_from_row(row) if row is not None else None

    async def update_approval(
        self, approval_id: str,
        change: Callable[[ApprovalRequest], tuple[ApprovalRequest, str]],
    ) -> ApprovalRequest:
        """Read, change and write a gate in one transaction (votes from several processes
        never overwrite each other). ``change`` returns the new request and its state; an
        exception from it leaves the gate as it was.

        Raises:
            ApprovalError: No gate has this id (or what ``change`` raised).
        """
        q = self._q
        lock = self.for_update

        def work(cur: Any) -> ApprovalRequest:
            cur.execute(q(f"SELECT {self._APPROVAL_COLUMNS} FROM dagflow_approvals"
                          f" WHERE id = ?{lock}"), (approval_id,))
            row = cur.fetchone()
            if row is None:
                raise ApprovalError(f"no approval has id {approval_id!r}",
                                    approval_id=approval_id)
            updated, state = change(self._approval_from_row(row))
            new = self._approval_row(updated, state)
            cur.execute(q("UPDATE dagflow_approvals SET state = ?, body = ?, checksum = ?"
                          " WHERE id = ?"), (new[3], new[5], new[6], approval_id))
            return updated

        return await self._run(work)  # type: ignore[no-any-return]

    async def list_approvals(self, *, state: str | None = "Pending",
                             instance_id: str | None = None) -> list[ApprovalRequest]:
        """Gates in ``state`` (None: all), oldest first; rows failing their checksum are
        left out and logged."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if instance_id is not None:
            where.append("instance_id = ?")
            params.append(instance_id)
        sql = (f"SELECT {self._APPROVAL_COLUMNS} FROM dagflow_approvals WHERE "
               f"{' AND '.join(where)} ORDER BY expires_at, id")

        def work(cur: Any) -> list[Any]:
            cur.execute(self._q(sql), params)
            return list(cur.fetchall())

        out = []
        for row in await self._run(work, write=False):
            try:
                out.append(self._approval_from_row(row))
            except CheckpointError as exc:
                import logging

                logging.getLogger("dagflow").error("%s", exc)
        return out

    async def request_control(self, instance_id: str, action: str, reason: str) -> None:
        """Ask the process running an instance to ``cancel``, ``pause`` or ``resume`` it."""
        def work(cur: Any) -> None:
            cur.execute(self._q("INSERT INTO dagflow_controls (instance_id, at, action, reason)"
                                " VALUES (?, ?, ?, ?)"), (instance_id, time.time(), action,
                                                          reason))

        await self._run(work)

    async def take_controls(self, instance_id: str) -> list[tuple[str, str]]:
        """The requests made for an instance, oldest first, removing them."""
        q = self._q

        def work(cur: Any) -> list[tuple[str, str]]:
            cur.execute(q("SELECT action, reason FROM dagflow_controls WHERE instance_id = ?"
                          " ORDER BY at"), (instance_id,))
            rows = [(row[0], row[1]) for row in cur.fetchall()]
            if rows:
                cur.execute(q("DELETE FROM dagflow_controls WHERE instance_id = ?"),
                            (instance_id,))
            return rows

        return await self._run(work) if await self._has_controls(instance_id) else []

    async def pending_controls(self) -> set[str]:
        """The ids of the instances with requests waiting."""

        def work(cur: Any) -> set[str]:
            cur.execute("SELECT DISTINCT instance_id FROM dagflow_controls")
            return {row[0] for row in cur.fetchall()}

        found: set[str] = await self._run(work, write=False)
        return found

    async def _has_controls(self, instance_id: str) -> bool:
        # a read first: most polls find nothing and should not take the write lock
        def work(cur: Any) -> bool:
            cur.execute(self._q("SELECT 1 FROM dagflow_controls WHERE instance_id = ?"),
                        (instance_id,))
            return cur.fetchone() is not None

        return bool(await self._run(work, write=False))

    async def lease_of(self, instance_id: str) -> tuple[str | None, float]:
        """Who holds the instance's lease and until when (Unix time)."""
        def work(cur: Any) -> Any:
            cur.execute(self._q("SELECT lease_owner, lease_expires FROM dagflow_instances"
                                " WHERE id = ?"), (instance_id,))
            return cur.fetchone()

        row = await self._run(work, write=False)
        if row is None:
            raise WorkflowNotFound(instance_id=instance_id)
        return row[0], float(row[1])

