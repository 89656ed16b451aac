"""``check_storage``: the contract every :class:`~dagflow.WorkflowStorage` keeps, as a kit.

dagflow runs it against its own stores (memory, SQLite, PostgreSQL), and host
applications run it against theirs (compare trio's ``check_two_way_stream``)::

    from dagflow.testing import check_storage

    async def test_my_store(tmp_path):
        await check_storage(lambda: MyStore(tmp_path / f"{uuid.uuid4()}.db"),
                            reopen=lambda old: MyStore(old.path))

Each check gets its own store from the factory and closes it (and any store it reopened)
at the end. Checks use random (uuid4) instance ids and workflow ids, and never assume the
store is empty, so a factory may hand out stores over one shared database.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import attrs

from .._errors import ApprovalError, StorageError, WorkflowNotFound
from .._events import (
    ApprovalRequired,
    TaskCompleted,
    TaskFailed,
    TaskOutputLine,
    TaskStarted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowEvent,
    WorkflowStarted,
)
from .._models import (
    ApprovalRequest,
    ApprovalVote,
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
from .._protocols import WorkflowStorage

__all__ = ["check_storage"]

S = TypeVar("S", bound=WorkflowStorage)

#: Text that stores must keep exactly: emoji, CJK, right-to-left, combining marks,
#: zero-width and line-separator characters, control characters (but no NUL), quotes,
#: backslashes, SQL and interpolation look-alikes.
UNICODE = ("héllo wörld 🚀🔥👩‍💻 日本語テキスト مرحبا עברית e\u0301 \u200b\u200d \u2028\u2029 "
           "tab\tnl\ncr\r bell\x07 esc\x1b del\x7f \x01\x1f 'quote' \"dq\" back\\slash "
           "'; DROP TABLE dagflow_instances; -- ${not.a.ref} $${literal} %s ? :name")

# --------------------------------------------------------------------------- the kit


async def check_storage(
    make: Callable[[], Awaitable[S]] | Callable[[], S],
    *,
    durable: bool = True,
    concurrency: bool = True,
    reopen: Callable[[S], Awaitable[S] | S] | None = None,
) -> None:
    """Run the :class:`~dagflow.WorkflowStorage` contract against a store factory.

    The checks, in order: a full instance round trip; unknown ids; storing an existing
    id again; ``update_workflow``; ``list_workflows`` with each filter, newest first (and
    ``instance_ids`` in the same order); ``delete_workflow`` removing events,
    checkpoints, controls and leases too; ``commit`` of fields, task states, events and
    transitions, and ``load_events`` with ``after``/``limit``; large values (1 MB
    stdout, 10,000-item data); Unicode everywhere; checkpoints (and pruning to
    ``store.keep_checkpoints`` if the store has that attribute); leases; control
    requests; approval gates (``save_approval``, ``load_approval``, ``update_approval``
    and ``list_approvals``); then, for durable stores, reopening and lease fencing; then concurrent
    writers. It stops at the first violation.

    Args:
        make: Returns a new store (or an awaitable of one) each time it is called. Each
            check gets its own; the kit closes it. Stores may share a database: checks
            use uuid4 ids and never assume the store is empty.
        durable: The store keeps what it was given across processes: storing an
            existing id again must raise :class:`~dagflow.StorageError`, a second store
            on the same database must see everything (``reopen``), and a store that lost
            an instance's lease must not write (fencing). Non-durable stores may either
            refuse or replace an existing id.
        concurrency: Also check concurrent writers (20 tasks writing 20 instances, 10
            tasks appending events to one instance).
        reopen: Given a store made by ``make``, returns another store on the same
            database (``lambda old: SqliteStorage(old.path)``), as a second process
            would open it. It may be called while the first store is open (fencing) or
            after it was closed (reopening). Required when ``durable`` is true.

    Raises:
        AssertionError: The store broke the contract; the message names the check and
            what differed.
        TypeError: ``durable`` is true but no ``reopen`` was given.
    """
    if durable and reopen is None:
        raise TypeError("check_storage(durable=True) needs reopen=: a callable that opens "
                        "a second store on the same database as the store it is given")
    checks: list[tuple[str, Callable[[_Run], Awaitable[None]]]] = [
        ("round trip", _check_round_trip),
        ("unknown ids", _check_unknown_ids),
        ("storing an existing id", _check_store_existing),
        ("update_workflow", _check_update),
        ("list_workflows", _check_list),
        ("delete_workflow", _check_delete),
        ("commit and load_events", _check_commit),
        ("large values", _check_large),
        ("unicode", _check_unicode),
        ("checkpoints", _check_checkpoints),
        ("leases", _check_leases),
        ("controls", _check_controls),
        ("approval gates", _check_approvals),
    ]
    if durable:
        checks += [("reopen", _check_reopen), ("lease fencing", _check_fencing)]
    if concurrency:
        checks += [("concurrent instances", _check_concurrent_instances),
                   ("concurrent events", _check_concurrent_events)]
    for name, check in checks:
        run = _Run(make, reopen, durable)
        try:
            await check(run)
        except AssertionError as exc:
            raise AssertionError(f"check_storage: {name}: {exc}") from exc
        except Exception as exc:
            raise AssertionError(f"check_storage: {name}: unexpected {type(exc).__name__}: "
                                 f"{exc}") from exc
        finally:
            await run.close()


@attrs.define(eq=False)
class _Run:
    """One check's stores: made, reopened, and closed at the end."""

    make: Callable[[], Any]
    reopen: Callable[[Any], Any] | None
    durable: bool
    opened: list[Any] = attrs.Factory(list)
    closed: set[int] = attrs.Factory(set)

    async def new(self) -> Any:
        return await self._track(self.make())

    async def again(self, store: Any) -> Any:
        assert self.reopen is not None
        return await self._track(self.reopen(store))

    async def _track(self, made: Any) -> Any:
        store = await made if inspect.isawaitable(made) else made
        self.opened.append(store)
        return store

    async def close_one(self, store: Any) -> None:
        if id(store) not in self.closed:
            self.closed.add(id(store))
            await store.close()

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):  # shielded: a failed check still closes
            for store in reversed(self.opened):
                await self.close_one(store)


# --------------------------------------------------------------------------- values


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _definition(workflow_id: str | None = None) -> WorkflowDefinition:
    """A valid definition using every built-in task type and most optional fields."""
    from .._parse import loads

    doc = {
        "id": workflow_id or f"kit-{uuid.uuid4().hex[:12]}",
        "name": "check_storage 🚀",
        "description": UNICODE,
        "version": "1.2.3",
        "variables": {"stage": "staging", "regions": ["eu-west-1", "ap-south-1"],
                      "nested": {"a": [1, 2.5, None, True, {"b": "ü"}]}},
        "metadata": {"owner": "platform", "note": "日本語"},
        "config": {"max_parallel_tasks": 3, "timeout_seconds": 600,
                   "checkpoint_interval_seconds": 5, "enable_rollback": True,
                   "notification_config": {"on_completion": ["team@example.com"],
                                           "webhook_url": "http://127.0.0.1:9/hook"}},
        "tasks": [
            {"id": "build", "type": {"type": "Command", "command": "make",
                                     "args": ["build", "N=${stage}"], "env": {"K": "v ✓"},
                                     "working_dir": "src"},
             "retry_policy": {"max_attempts": 2, "initial_delay_ms": 10},
             "timeout": "PT10M", "rollback": {"type": "Command", "command": "make",
                                              "args": ["clean"]}},
            {"id": "check", "type": {"type": "Http", "method": "POST",
                                     "url": "http://127.0.0.1:9/check",
                                     "headers": {"X-Kit": "1"}, "body": "{\"a\": 1}"},
             "depends_on": ["build"], "timeout": 30},
            {"id": "count", "type": {"type": "Query", "query_type": "analytics",
                                     "query": "SELECT count(*) FROM t WHERE r = :r",
                                     "parameters": {"r": "eu"}}},
            {"id": "approve", "type": {"type": "Approval", "approvers": ["alice@example.com"],
                                       "timeout_seconds": 3600}, "depends_on": ["check"]},
            {"id": "deploy", "type": {"type": "Deploy", "manifest": "k8s/app.yaml",
                                      "namespace": "staging", "dry_run": True},
             "depends_on": ["approve"], "config": {"on_failure": "Rollback"}},
            {"id": "scale", "type": {"type": "Scale", "resource": "deployment/app",
                                     "replicas": 3}, "depends_on": ["deploy"]},
            {"id": "branch", "type": {"type": "Conditional", "condition": "${stage} == 'prod'",
                                      "true_branch": ["each"], "false_branch": ["note"]},
             "depends_on": ["count"]},
            {"id": "each", "type": {"type": "Loop", "items": "${regions}", "parallel": True,
                                    "task_template": {"id": "each-region", "type": {
                                        "type": "Command", "command": "echo",
                                        "args": ["${item}"]}}}},
            {"id": "note", "type": {"type": "Plugin", "plugin_name": "notify",
                                    "config": {"text": "ünïcödé", "n": [1, 2]}}},
            {"id": "report", "type": {"type": "Subworkflow", "workflow_id": "send-report",
                                      "inputs": {"region": "${stage}"}},
             "depends_on": ["each", "note", "scale"], "join": "one_success"},
        ],
    }
    return loads(json.dumps(doc), format="json")


def _output(n: int = 0, text: str = "") -> TaskOutput:
    return TaskOutput(stdout=f"out {n} {text}\n", stderr=f"err {n}", exit_code=n % 3,
                      data={"n": n, "items": [1, "two", {"three": [3.5, None, False]}],
                            "text": text},
                      metrics={"duration_seconds": 1.25 + n, "rows": 3.0})


def _instance(definition: WorkflowDefinition | None = None, *, instance_id: str | None = None,
              created_at: dt.datetime | None = None, created_by: str = "kit-user",
              state: WorkflowState = WorkflowState.RUNNING, full: bool = True,
              text: str = "") -> WorkflowInstance:
    """An instance; ``full`` fills every field (task states, history, context...)."""
    from .._serde import definition_hash

    definition = definition or _definition()
    created = created_at or _now()
    if not full:
        return WorkflowInstance(
            id=instance_id or _new_id(), workflow_id=definition.id, definition=definition,
            state=state, created_at=created, created_by=created_by,
            definition_hash=definition_hash(definition))
    second = dt.timedelta(seconds=1)
    states = {
        "build": TaskState("build", TaskStatus.COMPLETED, created + second, created + 2 * second,
                           2, _output(1, text), None),
        "check": TaskState("check", TaskStatus.FAILED, created + 3 * second,
                           created + 4 * second, 3, _output(2, text), f"HTTP 503 {text}"),
        "count": TaskState("count", TaskStatus.RUNNING, created + 5 * second, None, 1),
        "note": TaskState("note", TaskStatus.SKIPPED, error=f"branch not taken {text}"),
    }
    history = (
        StateTransition(WorkflowState.PENDING, WorkflowState.RUNNING, created, None),
        StateTransition(WorkflowState.RUNNING, WorkflowState.PAUSED, created + second,
                        f"paused by José {text}"),
        StateTransition(WorkflowState.PAUSED, WorkflowState.RUNNING, created + 2 * second,
                        "resumed"),
    )
    variables = {"env": "staging", "text": text or "plain", "list": [1, 2, [3, {"k": "v"}]],
                 "nested": {"ü": {"deeper": [None, True, 1.5, -7, 10**15]}}, "empty": {}}
    return WorkflowInstance(
        id=instance_id or _new_id(), workflow_id=definition.id, definition=definition,
        state=state, created_at=created, created_by=created_by,
        started_at=created + second, completed_at=None,
        execution_context=ExecutionContext(
            variables=variables,
            outputs={k: s.output for k, s in states.items() if s.output is not None},
            environment={"HOME": "/home/kit", "LANG": "C.UTF-8", "NOTE": text}),
        task_states=states, error=None, state_history=history,
        workdir=f"/var/lib/dagflow/runs/kit {text}",
        definition_hash=definition_hash(definition), parent_id=_new_id())


def _with_outputs(instance: WorkflowInstance) -> WorkflowInstance:
    """``instance`` with its context's outputs matching its task states, as loaded."""
    context = instance.execution_context
    return attrs.evolve(instance, execution_context=ExecutionContext(
        context.variables, instance.outputs, context.environment))


def _events(instance_id: str, start: int, n: int, text: str = "") -> list[WorkflowEvent]:
    """``n`` events of several types with seq ``start``, ``start + 1``..."""
    at = _now()
    kinds: list[Callable[[int], WorkflowEvent]] = [
        lambda seq: WorkflowStarted(seq=seq, instance_id=instance_id, timestamp=at,
                                    workflow_id="kit"),
        lambda seq: TaskStarted(seq=seq, instance_id=instance_id, timestamp=at,
                                task_id="build", attempt=2),
        lambda seq: TaskOutputLine(seq=seq, instance_id=instance_id, timestamp=at,
                                   task_id="build", stream="stdout", line=f"line {seq} {text}"),
        lambda seq: TaskCompleted(seq=seq, instance_id=instance_id, timestamp=at,
                                  task_id="build", output=_output(seq, text)),
        lambda seq: TaskFailed(seq=seq, instance_id=instance_id, timestamp=at,
                               task_id="check", error=f"boom {text}", attempt=3,
                               output=_output(seq)),
        lambda seq: ApprovalRequired(seq=seq, instance_id=instance_id, timestamp=at,
                                     task_id="approve", approvers=("alice@example.com",),
                                     approval_id="ap-1", expires_at=at + dt.timedelta(hours=1),
                                     min_approvals=1),
        lambda seq: WorkflowCancelled(seq=seq, instance_id=instance_id, timestamp=at,
                                      reason=f"stopped {text}"),
        lambda seq: WorkflowCompleted(seq=seq, instance_id=instance_id, timestamp=at),
    ]
    return [kinds[(start + i) % len(kinds)](start + i) for i in range(n)]


def _checkpoint(instance: WorkflowInstance, at: dt.datetime, text: str = "") -> Checkpoint:
    return Checkpoint(id=f"cp_{uuid.uuid4().hex}", timestamp=at,
                      workflow_state=instance.state, task_states=dict(instance.task_states),
                      execution_context=_with_outputs(instance).execution_context,
                      instance_id=instance.id, checksum=f"s:{uuid.uuid4().hex} {text}")


# --------------------------------------------------------------------------- assertions


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else f"{text[:120]}... ({len(text)} chars)"


def _diff(got: Any, want: Any, path: str) -> str | None:
    """Where ``got`` first differs from ``want``, or None if they are equal."""
    if got == want:
        return None
    if type(got) is not type(want):
        return f"{path}: got {type(got).__name__} {_short(got)}, expected " \
               f"{type(want).__name__} {_short(want)}"
    if attrs.has(type(want)):
        for field in attrs.fields(type(want)):
            found = _diff(getattr(got, field.name), getattr(want, field.name),
                          f"{path}.{field.name}")
            if found:
                return found
    elif isinstance(want, dict):
        if got.keys() != want.keys():
            return (f"{path}: keys {sorted(map(str, got))[:10]}, expected "
                    f"{sorted(map(str, want))[:10]}")
        for key in want:
            found = _diff(got[key], want[key], f"{path}[{key!r}]")
            if found:
                return found
    elif isinstance(want, list | tuple):
        if len(got) != len(want):
            return f"{path}: {len(got)} items, expected {len(want)}"
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            found = _diff(a, b, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(want, str):
        at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                  min(len(got), len(want)))
        return (f"{path}: strings differ at index {at} (lengths {len(got)} and {len(want)}): "
                f"got {_short(got[at:at + 20])}, expected {_short(want[at:at + 20])}")
    return f"{path}: got {_short(got)}, expected {_short(want)}"


def _same(what: str, got: Any, want: Any) -> None:
    found = _diff(got, want, what)
    if found is not None:
        raise AssertionError(found)


async def _load(store: Any, instance_id: str, what: str) -> WorkflowInstance:
    loaded = await store.load_workflow(instance_id)
    if loaded is None:
        raise AssertionError(f"{what}: load_workflow({instance_id!r}) returned None")
    assert isinstance(loaded, WorkflowInstance), \
        f"{what}: load_workflow returned {type(loaded).__name__}, not a WorkflowInstance"
    return loaded


async def _expect(exc_type: type[BaseException], what: str, call: Awaitable[Any]) -> None:
    try:
        result = await call
    except exc_type:
        return
    except Exception as exc:
        raise AssertionError(f"{what}: raised {type(exc).__name__} ({exc}), expected "
                             f"{exc_type.__name__}") from exc
    raise AssertionError(f"{what}: returned {_short(result)}, expected {exc_type.__name__}")


async def _no_events(store: Any, instance_id: str, what: str) -> None:
    """``load_events`` finds nothing: ``[]``, or WorkflowNotFound for an unknown id."""
    try:
        events = await store.load_events(instance_id)
    except WorkflowNotFound:
        return
    assert events == [], f"{what}: load_events returned {len(events)} events, expected none"


def _ids(instances: Sequence[WorkflowInstance]) -> list[str]:
    return [i.id for i in instances]


# --------------------------------------------------------------------------- checks


async def _check_round_trip(run: _Run) -> None:
    """A full instance (and a minimal one) loads back equal, with no events."""
    store = await run.new()
    instance = _instance(text="round trip")
    await store.store_workflow(instance)
    _same("load_workflow", await _load(store, instance.id, "after store_workflow"), instance)
    assert await store.load_events(instance.id) == [], "a new instance has events"
    assert await store.last_event_seq(instance.id) == 0, \
        "last_event_seq of a new instance is not 0"
    minimal = _instance(full=False, state=WorkflowState.PENDING)
    await store.store_workflow(minimal)
    _same("load_workflow (minimal instance)", await _load(store, minimal.id, "minimal"),
          minimal)


async def _check_unknown_ids(run: _Run) -> None:
    """Unknown ids: None, [] or WorkflowNotFound, and nothing is created."""
    store = await run.new()
    unknown = _new_id()
    got = await store.load_workflow(unknown)
    assert got is None, f"load_workflow of an unknown id returned {_short(got)}, not None"
    await _expect(WorkflowNotFound, "commit to an unknown id",
                  store.commit(unknown, InstanceChanges(
                      fields={"state": WorkflowState.RUNNING},
                      events=tuple(_events(unknown, 1, 1)))))
    await _expect(WorkflowNotFound, "update_workflow of an unknown id",
                  store.update_workflow(_instance(instance_id=unknown)))
    assert await store.load_workflow(unknown) is None, \
        "a failed commit or update_workflow created the instance"
    await _expect(WorkflowNotFound, "load_events of an unknown id", store.load_events(unknown))
    assert await store.load_checkpoint(f"cp_{uuid.uuid4().hex}") is None, \
        "load_checkpoint of an unknown id did not return None"
    assert await store.list_checkpoints(unknown) == [], \
        "list_checkpoints of an unknown instance is not []"
    assert await store.take_controls(unknown) == [], \
        "take_controls of an unknown instance is not []"


async def _check_store_existing(run: _Run) -> None:
    """Storing an existing id raises StorageError (durable) or replaces it."""
    store = await run.new()
    first = _instance()
    await store.store_workflow(first)
    second = attrs.evolve(_instance(instance_id=first.id, state=WorkflowState.PENDING,
                                    full=False), created_by="someone-else")
    try:
        await store.store_workflow(second)
    except StorageError:
        _same("after a refused store_workflow", await _load(store, first.id, "original"),
              first)
        return
    if run.durable:
        raise AssertionError("storing an existing id again did not raise StorageError")
    _same("after store_workflow replaced an instance",
          await _load(store, first.id, "replaced"), second)


async def _check_update(run: _Run) -> None:
    """update_workflow replaces header, task states and history; events stay."""
    store = await run.new()
    instance = _instance()
    await store.store_workflow(instance)
    events = _events(instance.id, 1, 3)
    await store.commit(instance.id, InstanceChanges(events=tuple(events)))
    at = instance.created_at + dt.timedelta(minutes=5)
    states = dict(instance.task_states)
    del states["note"]  # a task state the update leaves out is gone
    states["count"] = TaskState("count", TaskStatus.COMPLETED, at, at, 2, _output(7), None)
    states["deploy"] = TaskState("deploy", TaskStatus.CANCELLED, at, at, 1, None, "cancelled")
    context = instance.execution_context
    updated = _with_outputs(attrs.evolve(
        instance, state=WorkflowState.FAILED, completed_at=at, error="failed: check 💥",
        task_states=states,
        state_history=(StateTransition(WorkflowState.PENDING, WorkflowState.RUNNING, at, "r"),
                       StateTransition(WorkflowState.RUNNING, WorkflowState.FAILED, at,
                                       "check failed")),
        execution_context=ExecutionContext({"env": "prod", "new": [1, {"x": "y"}]},
                                           context.outputs, {"ONLY": "this"})))
    await store.update_workflow(updated)
    _same("load_workflow after update_workflow", await _load(store, instance.id, "updated"),
          updated)
    _same("load_events after update_workflow", await store.load_events(instance.id), events)
    retry = StateTransition(WorkflowState.FAILED, WorkflowState.RUNNING, at, "retry")
    await store.commit(instance.id, InstanceChanges(
        fields={"state": WorkflowState.RUNNING, "completed_at": None, "error": None},
        transitions=(retry,), events=tuple(_events(instance.id, 4, 1))))
    again = await _load(store, instance.id, "committed after update")
    _same("state_history after update_workflow and commit", again.state_history,
          (*updated.state_history, retry))
    _same("state after update_workflow and commit", again.state, WorkflowState.RUNNING)
    assert again.completed_at is None and again.error is None, \
        "commit of fields completed_at=None, error=None did not clear them"
    assert len(await store.load_events(instance.id)) == 4, \
        "events appended after update_workflow are missing"


async def _check_list(run: _Run) -> None:
    """Every filter of list_workflows, newest (by created_at) first."""
    store = await run.new()
    definition = _definition()
    tag = uuid.uuid4().hex[:8]
    users = [f"kit-a-{tag}", f"kit-b-{tag} José"]
    kinds = [WorkflowState.PENDING, WorkflowState.RUNNING, WorkflowState.COMPLETED,
             WorkflowState.FAILED, WorkflowState.RUNNING, WorkflowState.COMPLETED]
    # half-second steps: created_at alternates between whole and fractional seconds
    base = _now().replace(microsecond=0) - dt.timedelta(hours=1)
    made = [_instance(definition, created_at=base + dt.timedelta(seconds=i / 2),
                      created_by=users[i % 2], state=state, full=i % 2 == 0)
            for i, state in enumerate(kinds)]
    for i in (3, 0, 5, 1, 4, 2):  # newest first means by created_at, not by storing order
        await store.store_workflow(made[i])
    newest = made[::-1]

    async def listed(what: str, filters: WorkflowFilters,
                     want: list[WorkflowInstance]) -> None:
        got = await store.list_workflows(filters)
        assert _ids(got) == _ids(want), (
            f"list_workflows({what}) returned {_ids(got)} (created_at "
            f"{[i.created_at.isoformat() for i in got]}), expected {_ids(want)} newest first")
        _same(f"list_workflows({what})", got, [_with_outputs(i) for i in want])
        pairs = await store.instance_ids(filters)
        assert pairs == [(i.id, i.parent_id) for i in want], \
            f"instance_ids({what}) returned {pairs}, expected the ids of list_workflows"

    wf = definition.id
    await listed("workflow_id", WorkflowFilters(workflow_id=wf), newest)
    await listed("user_id", WorkflowFilters(user_id=users[0]), newest[1::2])
    await listed("user_id with Unicode", WorkflowFilters(user_id=users[1]), newest[::2])
    await listed("state=Running", WorkflowFilters(workflow_id=wf, state=WorkflowState.RUNNING),
                 [made[4], made[1]])
    await listed("state=Completed, user_id",
                 WorkflowFilters(state=WorkflowState.COMPLETED, user_id=users[1]), [made[5]])
    cutoff = made[2].created_at
    await listed("created_after (strictly after)",
                 WorkflowFilters(workflow_id=wf, created_after=cutoff), newest[:3])
    await listed("created_after between two instances",
                 WorkflowFilters(workflow_id=wf, created_after=cutoff + dt.timedelta(
                     milliseconds=1)), newest[:3])
    elsewhere = dt.timezone(dt.timedelta(hours=-7))
    await listed("created_after in another time zone",
                 WorkflowFilters(workflow_id=wf, created_after=cutoff.astimezone(elsewhere)),
                 newest[:3])
    await listed("limit=2", WorkflowFilters(workflow_id=wf, limit=2), newest[:2])
    await listed("limit=0", WorkflowFilters(workflow_id=wf, limit=0), [])
    await listed("every filter", WorkflowFilters(
        workflow_id=wf, user_id=users[0], state=WorkflowState.RUNNING,
        created_after=made[0].created_at, limit=5), [made[4]])
    await listed("unknown workflow_id", WorkflowFilters(workflow_id=f"none-{tag}"), [])
    everything = _ids(await store.list_workflows(WorkflowFilters()))
    assert set(_ids(made)) <= set(everything), \
        "list_workflows(WorkflowFilters()) leaves out stored instances"


async def _check_delete(run: _Run) -> None:
    """delete_workflow removes everything recorded about one instance, only it."""
    store = await run.new()
    definition = _definition()
    doomed = _instance(definition)
    kept = _instance(definition)  # shares the definition (and its snapshot)
    for instance in (doomed, kept):
        await store.store_workflow(instance)
        await store.commit(instance.id, InstanceChanges(events=tuple(_events(instance.id, 1, 4))))
        await store.save_checkpoint(_checkpoint(instance, _now()))
        await store.request_control(instance.id, "pause", "please")
    assert await store.acquire_lease(doomed.id, "owner-a", 60.0), "acquire_lease refused"
    checkpoint = (await store.list_checkpoints(doomed.id))[0]
    await store.delete_workflow(doomed.id)
    assert await store.load_workflow(doomed.id) is None, \
        "load_workflow finds an instance after delete_workflow"
    assert doomed.id not in _ids(await store.list_workflows(
        WorkflowFilters(workflow_id=definition.id))), "list_workflows lists a deleted instance"
    await _no_events(store, doomed.id, "after delete_workflow")
    assert await store.list_checkpoints(doomed.id) == [], \
        "delete_workflow left the instance's checkpoints (list_checkpoints)"
    assert await store.load_checkpoint(checkpoint.id) is None, \
        "delete_workflow left the instance's checkpoints (load_checkpoint)"
    assert await store.take_controls(doomed.id) == [], \
        "delete_workflow left the instance's control requests"
    await store.delete_workflow(doomed.id)  # deleting twice is not an error
    await store.delete_workflow(_new_id())
    # the same id can be stored again, and starts with nothing from before
    fresh = _instance(definition, instance_id=doomed.id, full=False)
    await store.store_workflow(fresh)
    _same("an instance stored again after delete_workflow",
          await _load(store, doomed.id, "stored again"), fresh)
    assert await store.load_events(doomed.id) == [], \
        "an instance stored again after delete_workflow has the old events"
    owner, _ = await store.lease_of(doomed.id)
    assert owner is None, \
        f"an instance stored again after delete_workflow still has the old lease ({owner!r})"
    # the other instance, and the definition snapshot it shares, are untouched
    readers = [store] + ([await run.again(store)] if run.durable else [])
    for reader in readers:
        _same("another instance after delete_workflow",
              await _load(reader, kept.id, "the other instance"), kept)
        assert len(await reader.load_events(kept.id)) == 4, \
            "delete_workflow removed another instance's events"
        assert len(await reader.list_checkpoints(kept.id)) == 1, \
            "delete_workflow removed another instance's checkpoints"


async def _check_commit(run: _Run) -> None:
    """Commits show on load; load_events honours after and limit."""
    store = await run.new()
    instance = _instance(full=False, state=WorkflowState.PENDING)
    await store.store_workflow(instance)
    iid = instance.id
    t0 = _now()
    start = StateTransition(WorkflowState.PENDING, WorkflowState.RUNNING, t0, "started")
    events = _events(iid, 1, 8)
    await store.commit(iid, InstanceChanges(
        fields={"state": WorkflowState.RUNNING, "started_at": t0}, transitions=(start,),
        events=tuple(events[:1])))
    running = TaskState("build", TaskStatus.RUNNING, t0, None, 1)
    await store.commit(iid, InstanceChanges(task_states=(running,), events=tuple(events[1:2])))
    got = await _load(store, iid, "after two commits")
    _same("state after commit", got.state, WorkflowState.RUNNING)
    _same("started_at after commit", got.started_at, t0)
    _same("task_states after commit", got.task_states, {"build": running})
    _same("state_history after commit", got.state_history, (start,))
    done = TaskState("build", TaskStatus.COMPLETED, t0, t0, 1, _output(3), None)
    other = TaskState("check", TaskStatus.RUNNING, t0, None, 2)
    await store.commit(iid, InstanceChanges(task_states=(done, other),
                                            events=tuple(events[2:5])))
    await store.commit(iid, InstanceChanges(events=tuple(events[5:6])))
    await store.commit(iid, InstanceChanges(fields={"error": "stopping 🛑"}))
    t1 = t0 + dt.timedelta(seconds=3)
    end = StateTransition(WorkflowState.RUNNING, WorkflowState.COMPLETED, t1, None)
    await store.commit(iid, InstanceChanges(
        fields={"state": WorkflowState.COMPLETED, "completed_at": t1, "error": None},
        transitions=(end,), events=tuple(events[6:])))
    want = _with_outputs(attrs.evolve(
        instance, state=WorkflowState.COMPLETED, started_at=t0, completed_at=t1,
        task_states={"build": done, "check": other}, state_history=(start, end)))
    _same("load_workflow after commits", await _load(store, iid, "after commits"), want)
    _same("load_events()", await store.load_events(iid), events)
    _same("load_events(after=2)", await store.load_events(iid, after=2), events[2:])
    _same("load_events(limit=3)", await store.load_events(iid, limit=3), events[:3])
    _same("load_events(after=2, limit=3)", await store.load_events(iid, 2, 3), events[2:5])
    _same("load_events(after=7, limit=5)", await store.load_events(iid, 7, 5), events[7:])
    _same("load_events(after=8)", await store.load_events(iid, after=8), [])
    _same("load_events(after=100)", await store.load_events(iid, after=100), [])
    _same("load_events(limit=0)", await store.load_events(iid, limit=0), [])
    _same("last_event_seq", await store.last_event_seq(iid), 8)
    _same("instance_ids", await store.instance_ids(
        WorkflowFilters(workflow_id=instance.workflow_id)), [(iid, None)])


async def _check_large(run: _Run) -> None:
    """A 1 MB stdout, 10,000-item data and large variables round trip."""
    store = await run.new()
    instance = _instance(full=False)
    await store.store_workflow(instance)
    line = "line ✓ %07d the quick brown fox jumps over the lazy dog\n"
    stdout = "".join(line % i for i in range(1_048_576 // len(line % 0) + 1))
    big = TaskOutput(stdout=stdout, stderr="e" * 100_000, exit_code=0,
                     data={"items": [{"i": i, "name": f"item-{i}", "ok": i % 2 == 0}
                                     for i in range(10_000)]},
                     metrics={f"m{i}": float(i) for i in range(100)})
    at = _now()
    state = TaskState("build", TaskStatus.COMPLETED, at, at, 1, big, None)
    event = TaskCompleted(seq=1, instance_id=instance.id, timestamp=at, task_id="build",
                          output=big)
    await store.commit(instance.id, InstanceChanges(task_states=(state,), events=(event,)))
    got = await _load(store, instance.id, "with a large output")
    _same("a large task output", got.task_states.get("build"), state)
    _same("an event with a large output", await store.load_events(instance.id), [event])
    variables = {"big": "v" * 500_000, "many": list(range(10_000))}
    large = attrs.evolve(_instance(), execution_context=ExecutionContext(variables))
    await store.store_workflow(large)
    _same("large variables", await _load(store, large.id, "with large variables"),
          _with_outputs(large))


async def _check_unicode(run: _Run) -> None:
    """Any text (but NUL) round trips in every field that holds text."""
    store = await run.new()
    user = f"José 🚀 {uuid.uuid4().hex[:8]} {UNICODE}"
    instance = attrs.evolve(_instance(created_by=user, text=UNICODE), error=UNICODE)
    await store.store_workflow(instance)
    _same("load_workflow with Unicode", await _load(store, instance.id, "Unicode"), instance)
    _same("list_workflows(user_id=Unicode)",
          _ids(await store.list_workflows(WorkflowFilters(user_id=user))), [instance.id])
    at = _now()
    events = _events(instance.id, 1, 8, UNICODE)
    transition = StateTransition(WorkflowState.RUNNING, WorkflowState.FAILED, at, UNICODE)
    state = TaskState("check", TaskStatus.FAILED, at, at, 1, _output(5, UNICODE), UNICODE)
    await store.commit(instance.id, InstanceChanges(
        fields={"state": WorkflowState.FAILED, "error": UNICODE + "!"}, task_states=(state,),
        events=tuple(events), transitions=(transition,)))
    got = await _load(store, instance.id, "after a Unicode commit")
    _same("error after a Unicode commit", got.error, UNICODE + "!")
    _same("task state after a Unicode commit", got.task_states["check"], state)
    _same("transition after a Unicode commit", got.state_history[-1], transition)
    _same("Unicode events", await store.load_events(instance.id), events)
    checkpoint = _checkpoint(got, at, UNICODE)
    await store.save_checkpoint(checkpoint)
    _same("a Unicode checkpoint", await store.load_checkpoint(checkpoint.id), checkpoint)
    await store.request_control(instance.id, "cancel", UNICODE)
    _same("a Unicode control reason", await store.take_controls(instance.id),
          [("cancel", UNICODE)])


async def _check_checkpoints(run: _Run) -> None:
    """save/load/list (oldest first)/delete, and pruning to keep_checkpoints."""
    store = await run.new()
    instance, other = _instance(), _instance()
    await store.store_workflow(instance)
    await store.store_workflow(other)
    t0 = _now()
    saved = [_checkpoint(instance, t0 + dt.timedelta(seconds=i)) for i in range(3)]
    for checkpoint in saved:
        await store.save_checkpoint(checkpoint)
    await store.save_checkpoint(_checkpoint(other, t0))
    for checkpoint in saved:
        _same("load_checkpoint", await store.load_checkpoint(checkpoint.id), checkpoint)
    _same("list_checkpoints (oldest first)", await store.list_checkpoints(instance.id), saved)
    await store.delete_checkpoint(saved[1].id)
    assert await store.load_checkpoint(saved[1].id) is None, \
        "load_checkpoint finds a deleted checkpoint"
    _same("list_checkpoints after delete_checkpoint",
          await store.list_checkpoints(instance.id), [saved[0], saved[2]])
    await store.delete_checkpoint(saved[1].id)  # deleting twice is not an error
    assert len(await store.list_checkpoints(other.id)) == 1, \
        "deleting one instance's checkpoint touched another instance's"
    keep = getattr(store, "keep_checkpoints", None)
    if isinstance(keep, int) and 0 < keep <= 100:
        many = [_checkpoint(instance, t0 + dt.timedelta(seconds=10 + i))
                for i in range(keep + 2)]
        for checkpoint in many:
            await store.save_checkpoint(checkpoint)
        _same(f"list_checkpoints after saving {keep + 2} (keep_checkpoints={keep})",
              _ids_of(await store.list_checkpoints(instance.id)), _ids_of(many[-keep:]))
        assert len(await store.list_checkpoints(other.id)) == 1, \
            "pruning one instance's checkpoints removed another instance's"


def _ids_of(checkpoints: Sequence[Checkpoint]) -> list[str]:
    return [c.id for c in checkpoints]


async def _check_leases(run: _Run) -> None:
    """Leases: exclusive while unexpired, renewable, taken over after expiry."""
    store = await run.new()
    instance = _instance(full=False)
    await store.store_workflow(instance)
    iid = instance.id
    owner, _ = await store.lease_of(iid)
    assert owner is None, f"a new instance has a lease held by {owner!r}"
    before = _now().timestamp()
    assert await store.acquire_lease(iid, "A", 30.0), "acquire_lease of a free lease failed"
    owner, until = await store.lease_of(iid)
    assert owner == "A", f"lease_of names {owner!r} after A acquired it"
    assert before + 25 <= until <= _now().timestamp() + 35, \
        f"lease_of: a 30 s lease expires at {until}, {until - before:.1f} s from now"
    assert not await store.acquire_lease(iid, "B", 30.0), \
        "B acquired a lease A holds (unexpired)"
    assert (await store.lease_of(iid))[0] == "A", "a refused acquire_lease changed the holder"
    assert await store.acquire_lease(iid, "A", 0.2), "A could not renew its own lease"
    await store.release_lease(iid, "B")  # not B's to release
    assert (await store.lease_of(iid))[0] == "A", "release_lease by a non-holder released it"
    await anyio.sleep(0.3)
    assert await store.acquire_lease(iid, "B", 30.0), "B could not take an expired lease"
    assert (await store.lease_of(iid))[0] == "B", "lease_of does not name the new holder"
    assert not await store.renew_lease(iid, "A", 30.0), \
        "A renewed a lease B has taken over"
    assert await store.renew_lease(iid, "B", 30.0), "B could not renew the lease it holds"
    assert not await store.acquire_lease(iid, "A", 30.0), \
        "A took the lease back while B's is unexpired"
    await store.release_lease(iid, "B")
    owner, _ = await store.lease_of(iid)
    assert owner is None, f"lease_of names {owner!r} after the lease was released"
    assert not await store.renew_lease(iid, "A", 30.0), \
        "A renewed a lease it lost, after its new holder released it"
    assert await store.acquire_lease(iid, "A", 30.0), "acquire_lease after release failed"


async def _check_controls(run: _Run) -> None:
    """Control requests come back oldest first, once."""
    store = await run.new()
    instance, other = _instance(full=False), _instance(full=False)
    await store.store_workflow(instance)
    await store.store_workflow(other)
    assert await store.take_controls(instance.id) == [], "a new instance has control requests"
    asked = [("pause", "for the weekend"), ("resume", ""), ("cancel", "superseded ✗")]
    for action, reason in asked:
        await store.request_control(instance.id, action, reason)
    await store.request_control(other.id, "cancel", "other")
    _same("take_controls (oldest first)", await store.take_controls(instance.id), asked)
    _same("take_controls a second time", await store.take_controls(instance.id), [])
    _same("take_controls of another instance", await store.take_controls(other.id),
          [("cancel", "other")])


def _gate(instance_id: str, expires_in_hours: int) -> ApprovalRequest:
    at = _now()
    return ApprovalRequest(
        approval_id=f"apr_{uuid.uuid4().hex}", workflow_id="kit", task_id="approve ✓",
        requested_at=at, expires_at=at + dt.timedelta(hours=expires_in_hours),
        approvers=("alice@example.com", "bob@example.com"), instance_id=instance_id,
        min_approvals=2, context={"requested_by": "carol", "note": "ünïcode"})


async def _check_approvals(run: _Run) -> None:
    """Gates round-trip with their votes; update_approval is atomic (a refused change
    changes nothing) and sets the state list_approvals filters on; deadlines order them."""
    store = await run.new()
    instance_id = f"kit-{uuid.uuid4().hex}"
    later, sooner = _gate(instance_id, 48), _gate(instance_id, 2)
    assert await store.load_approval(later.approval_id) is None, "a gate before it was saved"
    await store.save_approval(later)
    await store.save_approval(sooner)
    _same("load_approval", await store.load_approval(later.approval_id), later)
    mine = await store.list_approvals(state="Pending", instance_id=instance_id)
    _same("list_approvals (earliest deadline first)", [g.approval_id for g in mine],
          [sooner.approval_id, later.approval_id])

    vote = ApprovalVote("alice@example.com", True, _now(), "lgtm ✓")

    def grant(gate: ApprovalRequest) -> tuple[ApprovalRequest, str]:
        return attrs.evolve(gate, votes=(*gate.votes, vote)), "Pending"

    updated = await store.update_approval(later.approval_id, grant)
    _same("update_approval's result", updated.votes, (vote,))
    _same("the gate after update_approval",
          await store.load_approval(later.approval_id), updated)

    def refuse(gate: ApprovalRequest) -> tuple[ApprovalRequest, str]:
        raise ApprovalError("refused by the rules", approval_id=gate.approval_id)

    try:
        await store.update_approval(later.approval_id, refuse)
    except ApprovalError:
        pass
    else:
        raise AssertionError("update_approval swallowed the error its change raised")
    _same("the gate after a refused change", await store.load_approval(later.approval_id),
          updated)
    try:
        await store.update_approval(f"apr_{uuid.uuid4().hex}", grant)
    except ApprovalError:
        pass
    else:
        raise AssertionError("update_approval of an unknown id did not raise ApprovalError")

    def decide(gate: ApprovalRequest) -> tuple[ApprovalRequest, str]:
        return gate, "Approved"

    await store.update_approval(sooner.approval_id, decide)
    pending = await store.list_approvals(state="Pending", instance_id=instance_id)
    _same("Pending gates after one was decided", [g.approval_id for g in pending],
          [later.approval_id])
    approved = await store.list_approvals(state="Approved", instance_id=instance_id)
    _same("Approved gates", [g.approval_id for g in approved], [sooner.approval_id])
    every = await store.list_approvals(state=None, instance_id=instance_id)
    _same("all gates of the instance", sorted(g.approval_id for g in every),
          sorted([sooner.approval_id, later.approval_id]))
    other = await store.list_approvals(state=None, instance_id=f"kit-{uuid.uuid4().hex}")
    _same("gates of an instance that has none", other, [])


async def _check_reopen(run: _Run) -> None:
    """A second store on the same database sees everything the first wrote."""
    first = await run.new()
    instance = _instance(text="reopen ✓")
    await first.store_workflow(instance)
    events = _events(instance.id, 1, 5)
    at = _now()
    state = TaskState("count", TaskStatus.COMPLETED, at, at, 1, _output(9), None)
    await first.commit(instance.id, InstanceChanges(task_states=(state,), events=tuple(events)))
    checkpoint = _checkpoint(instance, at)
    await first.save_checkpoint(checkpoint)
    await first.request_control(instance.id, "pause", "later")
    assert await first.acquire_lease(instance.id, "A", 60.0), "acquire_lease refused"
    want = _with_outputs(attrs.evolve(
        instance, task_states={**instance.task_states, "count": state}))
    await run.close_one(first)
    second = await run.again(first)
    # a new store parses the definition snapshot instead of reusing the object it was given
    _same("load_workflow from a reopened store",
          await _load(second, instance.id, "reopened"), want)
    _same("load_events from a reopened store", await second.load_events(instance.id), events)
    _same("last_event_seq from a reopened store", await second.last_event_seq(instance.id), 5)
    _same("list_checkpoints from a reopened store", await second.list_checkpoints(instance.id),
          [checkpoint])
    _same("take_controls from a reopened store", await second.take_controls(instance.id),
          [("pause", "later")])
    assert (await second.lease_of(instance.id))[0] == "A", \
        "the lease did not survive reopening"
    assert not await second.acquire_lease(instance.id, "B", 30.0), \
        "B acquired A's unexpired lease through a reopened store"


async def _check_fencing(run: _Run) -> None:
    """A store whose lease was taken by another writes nothing more."""
    a = await run.new()
    instance = _instance(full=False, state=WorkflowState.RUNNING)
    await a.store_workflow(instance)
    iid = instance.id
    assert await a.acquire_lease(iid, "A", 30.0), "acquire_lease refused"
    await a.commit(iid, InstanceChanges(events=tuple(_events(iid, 1, 1))))
    b = await run.again(a)
    assert not await b.acquire_lease(iid, "B", 30.0), \
        "a second store acquired an unexpired lease"
    assert await a.acquire_lease(iid, "A", 0.2), "A could not renew (shorten) its lease"
    await anyio.sleep(0.3)
    assert await b.acquire_lease(iid, "B", 30.0), \
        "a second store could not take an expired lease"
    at = _now()
    late = InstanceChanges(
        fields={"state": WorkflowState.COMPLETED, "completed_at": at, "error": "late"},
        task_states=(TaskState("build", TaskStatus.COMPLETED, at, at, 1, _output(1)),),
        events=tuple(_events(iid, 2, 2)),
        transitions=(StateTransition(WorkflowState.RUNNING, WorkflowState.COMPLETED, at),))
    await _expect(StorageError, "commit by a store whose lease another store took",
                  a.commit(iid, late))
    got = await _load(b, iid, "after a fenced commit")
    _same("instance after a fenced commit (nothing of it may be applied)", got,
          _with_outputs(instance))
    assert len(await b.load_events(iid)) == 1, "a fenced commit appended events"
    await b.commit(iid, InstanceChanges(events=tuple(_events(iid, 2, 1))))
    assert len(await b.load_events(iid)) == 2, "the new lease holder could not commit"


async def _check_concurrent_instances(run: _Run) -> None:
    """20 tasks writing 20 instances at once lose nothing."""
    store = await run.new()
    definition = _definition()
    instances = [_instance(definition, full=False) for _ in range(20)]
    names = ["build", "check", "count", "approve", "deploy"]

    async def drive(instance: WorkflowInstance) -> None:
        await store.store_workflow(instance)
        for seq, name in enumerate(names, 1):
            at = _now()
            await store.commit(instance.id, InstanceChanges(
                task_states=(TaskState(name, TaskStatus.COMPLETED, at, at, 1, _output(seq)),),
                events=tuple(_events(instance.id, seq, 1))))

    async with anyio.create_task_group() as tg:
        for instance in instances:
            tg.start_soon(drive, instance)
    for instance in instances:
        got = await _load(store, instance.id, "after concurrent writers")
        assert sorted(got.task_states) == sorted(names), (
            f"instance {instance.id}: task states {sorted(got.task_states)} after concurrent "
            f"writers, expected {sorted(names)}")
        seqs = [e.seq for e in await store.load_events(instance.id)]
        assert seqs == [1, 2, 3, 4, 5], \
            f"instance {instance.id}: event seqs {seqs} after concurrent writers"
    listed = await store.instance_ids(WorkflowFilters(workflow_id=definition.id))
    assert len(listed) == 20, f"{len(listed)} instances listed after 20 concurrent writers"


async def _check_concurrent_events(run: _Run) -> None:
    """10 tasks appending events to one instance lose nothing; seq order."""
    store = await run.new()
    instance = _instance(full=False)
    await store.store_workflow(instance)

    async def append(seq: int) -> None:
        at = _now()
        await store.commit(instance.id, InstanceChanges(
            task_states=(TaskState(f"t{seq}", TaskStatus.COMPLETED, at, at, 1),),
            events=tuple(_events(instance.id, seq, 1))))

    async with anyio.create_task_group() as tg:
        for seq in (3, 7, 1, 10, 5, 2, 9, 4, 8, 6):  # commits may land in any order
            tg.start_soon(append, seq)
    seqs = [e.seq for e in await store.load_events(instance.id)]
    assert seqs == list(range(1, 11)), \
        f"event seqs {seqs} after 10 concurrent commits to one instance, expected 1..10"
    got = await _load(store, instance.id, "after concurrent commits")
    assert len(got.task_states) == 10, \
        f"{len(got.task_states)} task states after 10 concurrent commits to one instance"

