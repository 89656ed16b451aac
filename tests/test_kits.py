"""The conformance kits of ``dagflow.testing``: every default passes its seam's kit, and an
implementation broken on purpose (a default with one method changed) fails it with a
message that names what was wrong.

PostgreSQL tests read ``DAGFLOW_TEST_POSTGRES`` (a URL); without it they skip, unless
``DAGFLOW_REQUIRE_SERVICES=1``, when they fail. Each gets a schema of its own, dropped
afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from dagflow import (
    ApprovalRequest,
    ApprovalVote,
    Checkpoint,
    Command,
    ComposedStorage,
    CycleDetected,
    DefaultApprovalSystem,
    DefaultCheckpointManager,
    DefaultDagBuilder,
    DefaultStateMachine,
    DefaultTaskExecutor,
    MemoryApprovalSystem,
    MemoryStorage,
    TaskContext,
    TaskDefinition,
    TaskExecutionFailed,
    TaskOutput,
    ValidationError,
    WorkflowDag,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowState,
)
from dagflow._approval._rules import status_of
from dagflow._storage import open_storage
from dagflow._storage.sqlite import SqliteStorage
from dagflow.testing import (
    FakeClock,
    check_approval_store,
    check_approval_system,
    check_checkpoint_manager,
    check_checkpoint_store,
    check_control_store,
    check_dag_builder,
    check_executor,
    check_instance_store,
    check_lease_store,
    check_state_machine,
    check_storage,
)

pytestmark = pytest.mark.anyio

PART_KITS = [check_checkpoint_store, check_lease_store, check_approval_store,
             check_control_store]


def postgres_base() -> str:
    """The PostgreSQL URL to test against, or skip (fail under DAGFLOW_REQUIRE_SERVICES=1)."""
    url = os.environ.get("DAGFLOW_TEST_POSTGRES", "")
    if url:
        return url
    if os.environ.get("DAGFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail("DAGFLOW_REQUIRE_SERVICES=1 but DAGFLOW_TEST_POSTGRES is not set")
    pytest.skip("PostgreSQL tests need DAGFLOW_TEST_POSTGRES=postgresql://USER@HOST:PORT/DB")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of an empty schema of its own, dropped afterwards."""
    base = postgres_base()
    schema = f"dagflow_kits_{uuid.uuid4().hex}"
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_import_dagflow_does_not_load_the_kits() -> None:
    """``import dagflow`` (and using the engine's names) leaves dagflow.testing unloaded."""
    probe = ("import sys, dagflow\ndagflow.Engine, dagflow.MemoryStorage\n"
             "print('dagflow.testing' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------- storage parts


@pytest.mark.parametrize("kit", PART_KITS, ids=lambda kit: kit.__name__)
async def test_memory_store_passes_each_part_kit(kit: Callable[..., Any]) -> None:
    """MemoryStorage passes the kit of each part it implements."""
    await kit(MemoryStorage)


async def test_memory_store_passes_the_instance_kit() -> None:
    """MemoryStorage passes the instance kit as a non-durable store."""
    await check_instance_store(MemoryStorage, durable=False)


@pytest.mark.parametrize("kit", PART_KITS, ids=lambda kit: kit.__name__)
async def test_sqlite_store_passes_each_part_kit(tmp_path: Path,
                                                 kit: Callable[..., Any]) -> None:
    """SqliteStorage passes the kit of each part, every check on one shared file."""
    await kit(lambda: SqliteStorage(tmp_path / "shared.db"))


async def test_sqlite_store_passes_the_instance_kit(tmp_path: Path) -> None:
    """SqliteStorage passes the instance kit as a durable store, reopened on its file."""
    await check_instance_store(lambda: SqliteStorage(tmp_path / f"{uuid.uuid4().hex}.db"),
                               reopen=lambda old: SqliteStorage(old.path))


@pytest.mark.parametrize("kit", [*PART_KITS, check_instance_store],
                         ids=lambda kit: kit.__name__)
async def test_postgres_store_passes_each_part_kit(postgres_url: str,
                                                   kit: Callable[..., Any]) -> None:
    """PostgresStorage passes the kit of each part, every check on one shared schema."""
    if kit is check_instance_store:
        await kit(lambda: open_storage(postgres_url), reopen=lambda old: open_storage(
            postgres_url))
    else:
        await kit(lambda: open_storage(postgres_url))


def _composed(path: Path) -> ComposedStorage:
    """Instances and leases in one SQLite file, every other part in another."""
    both = SqliteStorage(path)
    return ComposedStorage(SqliteStorage(path.with_suffix(".rest.db")), instances=both,
                           leases=both)


def _reopen_composed(old: ComposedStorage) -> ComposedStorage:
    assert isinstance(old.instances, SqliteStorage)
    return _composed(Path(old.instances.path))


async def test_composed_store_of_one_sqlite_store_passes_check_storage(tmp_path: Path) -> None:
    """A ComposedStorage with every part from one SQLite store passes the whole kit."""
    await check_storage(lambda: ComposedStorage(SqliteStorage(tmp_path / f"{uuid.uuid4()}.db")),
                        reopen=lambda old: ComposedStorage(SqliteStorage(old.default.path)))


@pytest.mark.parametrize("kit", [*PART_KITS, check_instance_store],
                         ids=lambda kit: kit.__name__)
async def test_composed_store_of_two_sqlite_stores_passes_each_part_kit(
        tmp_path: Path, kit: Callable[..., Any]) -> None:
    """A ComposedStorage whose parts live in two SQLite files passes every part's kit."""
    def make() -> ComposedStorage:
        return _composed(tmp_path / f"{uuid.uuid4().hex}.db")

    if kit is check_instance_store:
        await kit(make, reopen=_reopen_composed)
    else:
        await kit(make)


async def test_composed_store_of_two_sqlite_stores_passes_check_storage(
        tmp_path: Path) -> None:
    """A ComposedStorage of two SQLite files passes the whole kit, fencing included
    (instances and leases are one store)."""
    await check_storage(lambda: _composed(tmp_path / f"{uuid.uuid4().hex}.db"),
                        reopen=_reopen_composed)


class _AnyoneRenews(MemoryStorage):
    """Renews a lease for whoever asks, even after another owner took it."""

    async def renew_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        return True


class _NewestFirst(MemoryStorage):
    """Lists checkpoints newest first."""

    async def list_checkpoints(self, instance_id: str) -> list[Checkpoint]:
        return list(reversed(await super().list_checkpoints(instance_id)))


class _KeepsControls(MemoryStorage):
    """Hands out control requests without removing them."""

    async def take_controls(self, instance_id: str) -> list[tuple[str, str]]:
        taken = await super().take_controls(instance_id)
        for action, reason in taken:
            await self.request_control(instance_id, action, reason)
        return taken


class _SwallowsRefusals(MemoryStorage):
    """Ignores an error raised by an approval change, as if it had been applied."""

    async def update_approval(
        self, approval_id: str,
        change: Callable[[ApprovalRequest], tuple[ApprovalRequest, str]],
    ) -> ApprovalRequest:
        try:
            return await super().update_approval(approval_id, change)
        except Exception:
            found = await self.load_approval(approval_id)
            assert found is not None
            return found


class _IgnoresAfter(MemoryStorage):
    """Returns every event, whatever ``after`` says."""

    async def load_events(self, instance_id: str, after: int = 0,
                          limit: int | None = None) -> list[Any]:
        return await super().load_events(instance_id, 0, limit)


@pytest.mark.parametrize(("kit", "store", "message"), [
    (check_lease_store, _AnyoneRenews,
     r"check_lease_store: leases: A renewed a lease B has taken over"),
    (check_checkpoint_store, _NewestFirst,
     r"check_checkpoint_store: checkpoints: list_checkpoints \(oldest first\)"),
    (check_control_store, _KeepsControls,
     r"check_control_store: controls: take_controls a second time: 3 items, expected 0"),
    (check_approval_store, _SwallowsRefusals,
     r"check_approval_store: approval gates: update_approval swallowed the error"),
    (check_instance_store, _IgnoresAfter,
     r"check_instance_store: commit and load_events: load_events\(after=2\): 8 items, "
     r"expected 6"),
], ids=["lease", "checkpoint", "control", "approval", "instance"])
async def test_part_kit_names_what_a_broken_store_got_wrong(
        kit: Callable[..., Any], store: type[MemoryStorage], message: str) -> None:
    """A store broken in one method fails its part's kit, which names the check and the
    difference."""
    options = {"durable": False} if kit is check_instance_store else {}
    with pytest.raises(AssertionError, match=message):
        await kit(store, **options)


async def test_instance_kit_needs_reopen_for_durable_stores() -> None:
    """``check_instance_store(durable=True)`` without ``reopen`` is a TypeError."""
    with pytest.raises(TypeError, match="reopen"):
        await check_instance_store(MemoryStorage)


# --------------------------------------------------------------------------- executor

ECHO = TaskDefinition("ok", Command("echo", ("ok",)))
FALSE = TaskDefinition("bad", Command("false"))
SLEEP = TaskDefinition("slow", Command("sleep", ("30",)))


async def test_default_executor_passes_the_kit(tmp_path: Path) -> None:
    """DefaultTaskExecutor passes with Command tasks: ``sleep 30`` is killed when its
    attempt is cancelled, and no process of it is left."""
    await check_executor(DefaultTaskExecutor(), succeeds=ECHO, fails=FALSE, slow=SLEEP,
                         context=lambda ctx: attrs.evolve(ctx, workdir=str(tmp_path)))


async def test_default_executor_runs_the_interpolated_spec() -> None:
    """Given ``echo ${x}`` as the task and ``echo resolved`` as ``context.spec``, the
    default executor prints ``resolved`` (what the kit's spec check relies on)."""
    task = TaskDefinition("t", Command("echo", ("${x}",)))
    ctx = TaskContext(task_id="t", spec=Command("echo", ("resolved",)), task=task)
    output = await DefaultTaskExecutor().execute_task(task, ctx)
    assert output.stdout == "resolved\n"


class _ReturnsOnFailure(DefaultTaskExecutor):
    """Returns a failed attempt's output instead of raising."""

    async def execute_task(self, task: TaskDefinition, context: TaskContext) -> TaskOutput:
        try:
            return await super().execute_task(task, context)
        except TaskExecutionFailed as exc:
            output: TaskOutput = exc.output
            return output


class _RunsTaskType(DefaultTaskExecutor):
    """Runs the task as written, ignoring the interpolated spec."""

    async def execute_task(self, task: TaskDefinition, context: TaskContext) -> TaskOutput:
        return await super().execute_task(task, attrs.evolve(context, spec=task.type))


class _SwallowsCancel(DefaultTaskExecutor):
    """Turns its cancellation into an empty output."""

    async def execute_task(self, task: TaskDefinition, context: TaskContext) -> TaskOutput:
        try:
            return await super().execute_task(task, context)
        except anyio.get_cancelled_exc_class():
            return TaskOutput()


class _IgnoresCancel(DefaultTaskExecutor):
    """Shields its attempts from cancellation."""

    async def execute_task(self, task: TaskDefinition, context: TaskContext) -> TaskOutput:
        with anyio.CancelScope(shield=True):
            return await super().execute_task(task, context)


@attrs.define
class _LeakyCommand:
    """Runs a Command, and leaves its process running when cancelled."""

    left: list[Any] = attrs.Factory(list)

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        spec = ctx.spec
        process = await anyio.open_process([spec.command, *spec.args],
                                           start_new_session=True)
        try:
            code = await process.wait()
        except BaseException:
            self.left.append(process)  # closed by the test, once the kit killed it
            raise
        await process.aclose()
        if code:
            raise TaskExecutionFailed(reason=f"exit code {code}")
        return TaskOutput(exit_code=code)


@attrs.define(eq=False)
class _LeavesTask(DefaultTaskExecutor):
    """Starts a watcher task in a group it was given, and never stops it."""

    group: Any = None

    async def execute_task(self, task: TaskDefinition, context: TaskContext) -> TaskOutput:
        self.group.start_soon(anyio.sleep_forever, name="kit-leftover-watcher")
        return await super().execute_task(task, context)


@pytest.mark.parametrize(("broken", "message"), [
    (_ReturnsOnFailure, r"check_executor: a task that fails: execute_task returned "
                        r"TaskOutput\(.*a failed attempt must raise"),
    (_RunsTaskType, r"check_executor: context.spec, not task.type: the failing task given "
                    r"the spec of the one that succeeds"),
    (_SwallowsCancel, r"check_executor: cancellation: execute_task returned TaskOutput\(.*"
                      r"after its cancel scope was cancelled"),
    (_IgnoresCancel, r"check_executor: cancellation: execute_task ended .* after its cancel "
                     r"scope was cancelled \(allowed: 0.5 s\) and only once the kit killed "
                     r"pid \d+ \(sleep\)"),
], ids=["returns on failure", "runs task.type", "swallows cancel", "ignores cancel"])
async def test_executor_kit_names_what_a_broken_executor_got_wrong(
        broken: type[DefaultTaskExecutor], message: str) -> None:
    """An executor broken in execute_task fails the kit, which says how."""
    with pytest.raises(AssertionError, match=message):
        await check_executor(broken(), succeeds=ECHO, fails=FALSE, slow=SLEEP,
                             cancel_within=0.5)


async def test_executor_kit_finds_and_kills_a_process_left_running() -> None:
    """A Command handler that leaves its process running when cancelled fails the kit,
    which kills that process."""
    leaky = _LeakyCommand()
    executor = DefaultTaskExecutor(handlers={"Command": leaky})
    with pytest.raises(AssertionError, match=r"check_executor: cancellation: the cancelled "
                       r"attempt left 1 process\(es\) running \(the kit killed them\): "
                       r"pid \d+ \(sleep\)"):
        await check_executor(executor, succeeds=ECHO, fails=FALSE, slow=SLEEP,
                             cancel_within=0.5)
    [process] = leaky.left
    with anyio.fail_after(5):
        assert await process.wait() == -9  # SIGKILL, by the kit
    await process.aclose()


async def test_executor_kit_finds_a_task_left_running() -> None:
    """An executor that leaves a task of its attempt running fails the kit, naming it."""
    async with anyio.create_task_group() as tg:
        executor = _LeavesTask(group=tg)
        with pytest.raises(AssertionError, match=r"check_executor: cancellation: the "
                           r"cancelled attempt left tasks running: kit-leftover-watcher"):
            await check_executor(executor, succeeds=ECHO, fails=FALSE, slow=SLEEP,
                                 cancel_within=0.5)
        tg.cancel_scope.cancel()


async def test_executor_kit_refuses_a_slow_task_that_ends_by_itself() -> None:
    """A ``slow`` task that finishes before it is cancelled is the caller's mistake, and
    the kit says so."""
    with pytest.raises(AssertionError, match=r"the slow task ended by itself"):
        await check_executor(DefaultTaskExecutor(), succeeds=ECHO, fails=FALSE, slow=ECHO)


# --------------------------------------------------------------------------- DAG builder


def test_default_dag_builder_passes_the_kit() -> None:
    """DefaultDagBuilder passes on every sample, cycles included."""
    check_dag_builder(DefaultDagBuilder())


def _evolved(dag: WorkflowDag, parents: list[list[int]]) -> WorkflowDag:
    return WorkflowDag(dag.definition, dag.ids, dag.index, parents, dag.level,
                       dag.execution_batches)


class _DropsAnEdge(DefaultDagBuilder):
    """Forgets the first dependency of the last task that has one."""

    def build_dag(self, workflow: WorkflowDefinition) -> WorkflowDag:
        dag = super().build_dag(workflow)
        parents = [list(p) for p in dag.parents]
        last = max(i for i, p in enumerate(parents) if p)
        parents[last] = parents[last][1:]
        return _evolved(dag, parents)


class _OptimizesAnEdgeAway(DefaultDagBuilder):
    """Its optimized graph forgets every dependency of the last task."""

    def optimize_parallelism(self, dag: WorkflowDag) -> WorkflowDag:
        parents = [list(p) for p in dag.parents]
        parents[-1] = []
        return _evolved(dag, parents)


class _ForgetsBranches(DefaultDagBuilder):
    """Leaves out a Conditional's implicit edges to its branch tasks."""

    def build_dag(self, workflow: WorkflowDefinition) -> WorkflowDag:
        dag = super().build_dag(workflow)
        parents = [[p for p in ps if dag.ids[p] in workflow.tasks[c].depends_on]
                   for c, ps in enumerate(dag.parents)]
        return _evolved(dag, parents)


class _ReportsHalfACycle(DefaultDagBuilder):
    """Names the tasks of a cycle without closing it."""

    def build_dag(self, workflow: WorkflowDefinition) -> WorkflowDag:
        try:
            return super().build_dag(workflow)
        except CycleDetected as exc:
            raise CycleDetected(exc.problems, path=exc.path[:-1]) from None


class _CallsACycleInvalid(DefaultDagBuilder):
    """Raises a plain ValidationError for a cycle."""

    def build_dag(self, workflow: WorkflowDefinition) -> WorkflowDag:
        try:
            return super().build_dag(workflow)
        except CycleDetected as exc:
            raise ValidationError(exc.problems) from None


@pytest.mark.parametrize(("broken", "message"), [
    (_DropsAnEdge, r"check_dag_builder: a chain: build_dag: task 'd' waits for \[\], "
                   r"expected \['c'\] \(the edge c -> d is missing\)"),
    (_OptimizesAnEdgeAway, r"check_dag_builder: a chain: optimize_parallelism: task 'd' "
                           r"waits for \[\], expected \['c'\]"),
    (_ForgetsBranches, r"check_dag_builder: a Conditional with branches: build_dag: task "
                       r"'deploy' waits for \[\], expected \['decide'\]"),
    (_ReportsHalfACycle, r"check_dag_builder: a cycle of two tasks: CycleDetected.path is "
                         r"\('a', 'b'\): it must walk around the cycle"),
    (_CallsACycleInvalid, r"check_dag_builder: a cycle of two tasks: build_dag raised "
                          r"ValidationError .*expected CycleDetected"),
], ids=["drops an edge", "optimizes an edge away", "forgets branches", "half a cycle",
        "not CycleDetected"])
def test_dag_kit_names_what_a_broken_builder_got_wrong(broken: type[DefaultDagBuilder],
                                                       message: str) -> None:
    """A builder broken in one method fails the kit, which names the sample and the edge."""
    with pytest.raises(AssertionError, match=message):
        check_dag_builder(broken())


# --------------------------------------------------------------------------- state machine


def test_default_state_machine_passes_the_kit() -> None:
    """DefaultStateMachine passes, with the system clock and with a fake one."""
    check_state_machine(DefaultStateMachine())
    check_state_machine(DefaultStateMachine(now=FakeClock().now))


class _NoRetries(DefaultStateMachine):
    """Refuses to run a Failed or Cancelled instance again: stricter than the table."""

    def is_valid_transition(self, from_state: WorkflowState, to_state: WorkflowState) -> bool:
        retry = to_state == WorkflowState.RUNNING and from_state in (
            WorkflowState.FAILED, WorkflowState.CANCELLED)
        return not retry and super().is_valid_transition(from_state, to_state)


def test_a_stricter_state_machine_passes_the_kit() -> None:
    """A machine that refuses more than the table (no retries) keeps the contract."""
    check_state_machine(_NoRetries())


class _RestartsCompleted(DefaultStateMachine):
    """Lets a Completed instance run again."""

    def is_valid_transition(self, from_state: WorkflowState, to_state: WorkflowState) -> bool:
        restart = (from_state, to_state) == (WorkflowState.COMPLETED, WorkflowState.RUNNING)
        return restart or super().is_valid_transition(from_state, to_state)


class _Disagrees(DefaultStateMachine):
    """Reports Paused -> Running valid but refuses to make the change."""

    def transition(self, instance_id: str, from_state: WorkflowState,
                   to_state: WorkflowState, reason: str | None = None) -> Any:
        if (from_state, to_state) == (WorkflowState.PAUSED, WorkflowState.RUNNING):
            from dagflow import InvalidStateTransition

            raise InvalidStateTransition(from_state=from_state, to_state=to_state)
        return super().transition(instance_id, from_state, to_state, reason)


class _RefusesWithValueError(DefaultStateMachine):
    """Refuses a change with a ValueError."""

    def transition(self, instance_id: str, from_state: WorkflowState,
                   to_state: WorkflowState, reason: str | None = None) -> Any:
        if not self.is_valid_transition(from_state, to_state):
            raise ValueError(f"no: {from_state} -> {to_state}")
        return super().transition(instance_id, from_state, to_state, reason)


@pytest.mark.parametrize(("machine", "message"), [
    (_RestartsCompleted(), r"check_state_machine: is_valid_transition: allows Completed -> "
                           r"Running, which the contract forbids"),
    (_Disagrees(), r"check_state_machine: transition: transition\(Paused -> Running\) "
                   r"raised InvalidStateTransition, but is_valid_transition allows it"),
    (_RefusesWithValueError(), r"check_state_machine: transition: transition\(Draft -> "
                               r"Draft\) raised ValueError .*must be InvalidStateTransition"),
    (DefaultStateMachine(now=dt.datetime.now), r"check_state_machine: transition: "
                                               r".* has a naive timestamp"),
], ids=["allows Completed -> Running", "disagrees", "ValueError", "naive time"])
def test_state_machine_kit_names_what_a_broken_machine_got_wrong(
        machine: DefaultStateMachine, message: str) -> None:
    """A machine broken in one method (or given a naive clock) fails the kit, which names
    the change."""
    with pytest.raises(AssertionError, match=message):
        check_state_machine(machine)


# --------------------------------------------------------------------------- approvals


async def test_default_approval_system_passes_the_kit_in_memory() -> None:
    """DefaultApprovalSystem over a MemoryStorage passes."""
    await check_approval_system(lambda clock: DefaultApprovalSystem(MemoryStorage(),
                                                                    clock=clock))


async def test_default_approval_system_passes_the_kit_on_sqlite(tmp_path: Path) -> None:
    """DefaultApprovalSystem over one shared SQLite store passes."""
    store = SqliteStorage(tmp_path / "gates.db")
    try:
        await check_approval_system(lambda clock: DefaultApprovalSystem(store, clock=clock))
    finally:
        await store.close()


async def test_default_approval_system_passes_the_kit_on_postgres(postgres_url: str) -> None:
    """DefaultApprovalSystem over one shared PostgreSQL store passes."""
    store = open_storage(postgres_url)
    try:
        await check_approval_system(lambda clock: DefaultApprovalSystem(store, clock=clock))
    finally:
        await store.close()


async def test_memory_approval_system_passes_the_kit() -> None:
    """MemoryApprovalSystem passes."""
    await check_approval_system(lambda clock: MemoryApprovalSystem(clock=clock))


class _AcceptsStrangers(DefaultApprovalSystem):
    """Records a grant by anyone, without the rules."""

    async def grant_approval(self, approval_id: str, approver: str,
                             comment: str | None = None) -> None:
        now = self.clock.now()

        def change(gate: ApprovalRequest) -> tuple[ApprovalRequest, str]:
            vote = ApprovalVote(approver, True, now, comment)
            gate = attrs.evolve(gate, votes=(*gate.votes, vote))
            return gate, status_of(gate, now).state

        await self.store.update_approval(approval_id, change)


class _ListsEveryone(MemoryApprovalSystem):
    """Lists every open gate, whoever asks."""

    async def list_pending_approvals(self, approver: str | None = None
                                     ) -> list[ApprovalRequest]:
        return await super().list_pending_approvals(None)


class _NeverWakes(MemoryApprovalSystem):
    """Waits for a change that it is never told of."""

    async def wait_for_change(self, approval_id: str, seen_votes: int) -> None:
        await anyio.sleep_forever()


@pytest.mark.parametrize(("make", "message"), [
    (lambda clock: _AcceptsStrangers(MemoryStorage(), clock=clock),
     r"check_approval_system: a stranger: grant_approval by 'mallory\.\w+@EXAMPLE\.com' "
     r"\(not listed\): returned None, expected ApprovalError"),
    (lambda clock: _ListsEveryone(clock=clock),
     r"check_approval_system: list_pending_approvals: list_pending_approvals\('alice\..*'\) "
     r"lists \['alice voted', 'open, alice listed', 'open, alice not listed'\], expected "
     r"\['open, alice listed'\]"),
    (lambda clock: _NeverWakes(clock=clock),
     r"check_approval_system: wait_for_change: wait_for_change did not return within 0.2 s "
     r"of a vote"),
], ids=["accepts strangers", "lists everyone", "never wakes"])
async def test_approval_kit_names_what_a_broken_system_got_wrong(
        make: Callable[[FakeClock], Any], message: str) -> None:
    """A system broken in one method fails the kit, which names the rule it broke."""
    with pytest.raises(AssertionError, match=message):
        await check_approval_system(make, wake_within=0.2)


# --------------------------------------------------------------------------- checkpoints


async def test_default_checkpoint_manager_passes_the_kit() -> None:
    """DefaultCheckpointManager passes, with plain SHA-256 and with an HMAC key."""
    await check_checkpoint_manager(DefaultCheckpointManager)
    await check_checkpoint_manager(lambda store: DefaultCheckpointManager(store, key=b"k"))


class _Trusting(DefaultCheckpointManager):
    """Loads checkpoints without verifying their checksum."""

    def verify(self, checkpoint: Checkpoint) -> Checkpoint:
        return checkpoint


class _RestoresAnything(DefaultCheckpointManager):
    """Applies a checkpoint to whichever instance it is asked to."""

    async def restore_from_checkpoint(self, instance_id: str, checkpoint_id: str
                                      ) -> WorkflowInstance:
        from dagflow._checkpoint import apply_checkpoint

        checkpoint = await self.load_checkpoint(checkpoint_id)
        instance = await self.store.load_workflow(instance_id)
        assert instance is not None
        return apply_checkpoint(instance, checkpoint)


@pytest.mark.parametrize(("broken", "message"), [
    (_Trusting, r"check_checkpoint_manager: a checkpoint altered in the store: "
                r"load_checkpoint of a checkpoint with task 'build' marked Failed: returned "
                r"Checkpoint\(.*expected CheckpointError"),
    (_RestoresAnything, r"check_checkpoint_manager: another instance's checkpoint: "
                        r"restore_from_checkpoint of another instance's checkpoint: returned "
                        r"WorkflowInstance\(.*expected CheckpointError"),
], ids=["does not verify", "restores another instance"])
async def test_checkpoint_kit_names_what_a_broken_manager_got_wrong(
        broken: type[DefaultCheckpointManager], message: str) -> None:
    """A manager broken in one method fails the kit, which names the alteration it let
    through."""
    with pytest.raises(AssertionError, match=message):
        await check_checkpoint_manager(broken)
