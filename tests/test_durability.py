"""Durability (CONTRACT section 5; guarantees G1-G9 of design/reliability-security.md A.6):
runs killed with SIGKILL or ended at the engine's crash points and recovered in a fresh
process, tampered rows and checkpoints, torn SQLite copies, two processes on one instance
(leases and fencing), retry of one loop iteration, the definition snapshot, and an
approval gate across an interrupt.

The crash tests drive child processes (``tests/durability_child.py``, the Python API) and
read the store from here. They run against SQLite and, when ``DAGFLOW_TEST_POSTGRES`` is
set, PostgreSQL, each test in a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import dagflow
from dagflow import TaskStatus, WorkflowState
from dagflow._storage import open_storage

CHILD = Path(__file__).with_name("durability_child.py")
T = TaskStatus
S = WorkflowState


# --------------------------------------------------------------------------- stores


def postgres_url() -> str:
    """The test PostgreSQL URL; skips (or fails, when services are required) if unset."""
    url = os.environ.get("DAGFLOW_TEST_POSTGRES", "")
    if url:
        return url
    if os.environ.get("DAGFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail("DAGFLOW_REQUIRE_SERVICES=1 but DAGFLOW_TEST_POSTGRES is not set")
    pytest.skip("PostgreSQL tests need DAGFLOW_TEST_POSTGRES=postgresql://USER@HOST:PORT/DB")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh durable store: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/s.db"
        return
    base = postgres_url()
    schema = f"dagflow_crash_{uuid.uuid4().hex[:12]}"
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@attrs.frozen
class Stored:
    """What a store holds about one instance, read from this (the test's) process."""

    instance: Any
    events: list[Any]
    lease: tuple[str | None, float]

    @property
    def states(self) -> dict[str, tuple[TaskStatus, int]]:
        """Task id -> (status, attempts) as recorded."""
        if self.instance is None:
            return {}
        return {k: (s.state, s.attempts) for k, s in self.instance.task_states.items()}

    def with_status(self, status: TaskStatus) -> dict[str, int]:
        """Tasks recorded with ``status`` -> their attempts."""
        return {k: a for k, (s, a) in self.states.items() if s == status}


def read_store(url: str, instance_id: str) -> Stored:
    """Open the store afresh and read the instance, its events and its lease."""

    async def read() -> Stored:
        store = open_storage(url)
        try:
            instance = await store.load_workflow(instance_id)
            if instance is None:
                return Stored(None, [], (None, 0.0))
            return Stored(instance, await store.load_events(instance_id),
                          await store.lease_of(instance_id))
        finally:
            await store.close()

    return anyio.run(read)


def assert_gapless(events: list[Any]) -> None:
    """Event seqs are 1, 2, ..., N."""
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"seq gaps or repeats: {seqs}"


def log_counts(log: Path) -> Counter[str]:
    """How many times each task id was appended to the side-effect log."""
    return Counter(log.read_text().split()) if log.exists() else Counter()


def poll(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Call ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- children


class Child:
    """``durability_child.py`` running in a process of its own; stdout and stderr go to
    files in the test's directory."""

    def __init__(self, workdir: Path, name: str, args: dict[str, Any],
                 crash_at: str | None) -> None:
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        if crash_at is not None:
            args = {**args, "crash_at": crash_at}
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, str(CHILD), json.dumps(args)],
                                         stdout=out, stderr=err, cwd=workdir)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def report(self) -> str:
        """Its output, for assertion messages."""
        return (f"child {self.out.stem} (exit {self.proc.poll()}):\n{self.out.read_text()}"
                f"stderr:\n{self.err.read_text()[-4000:]}")

    def started(self, timeout: float = 30.0) -> bool:
        """Wait until it drives the instance (it wrote STARTED); False if it exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "STARTED" in self.out.read_text():
                return True
            if self.proc.poll() is not None:
                return "STARTED" in self.out.read_text()
            time.sleep(0.01)
        return False

    def finish(self, timeout: float = 60.0) -> tuple[int, dict[str, Any] | None]:
        """Wait for it to exit: its exit status and its last JSON line."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"child did not finish within {timeout}s\n{self.report()}")
        lines = [line for line in self.out.read_text().splitlines() if line.startswith("{")]
        return rc, json.loads(lines[-1]) if lines else None

    def kill(self) -> None:
        """SIGKILL it and reap it."""
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """``spawn(name, args, crash_at=None)`` starts a child; leftovers are killed after."""
    children: list[Child] = []

    def start(name: str, args: dict[str, Any], crash_at: str | None = None) -> Child:
        child = Child(tmp_path, name, args, crash_at)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.proc.poll() is None:
            child.kill()


def write_workflow(path: Path, doc: dict[str, Any]) -> Path:
    """Write a workflow file (JSON) and return its path."""
    path.write_text(json.dumps(doc, indent=1))
    return path


def sh(script: str) -> dict[str, Any]:
    """A Command task type running ``sh -c script``."""
    return {"type": "Command", "command": "sh", "args": ["-c", script]}


def appends(task_id: str, log: Path, before: str = "") -> dict[str, Any]:
    """A Command that appends ``task_id`` to ``log`` (after running ``before``)."""
    return sh(f"{before}echo {task_id} >> {shlex.quote(str(log))}")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- 1. SIGKILL


def big_workflow(log: Path, rng: random.Random) -> dict[str, Any]:
    """200 tasks: 100 independent ones, then layers of 50, 30 and 20 each depending on two
    tasks of the layer before; half of them sleep 30-90 ms so that kills land mid-task."""
    tasks: list[dict[str, Any]] = []

    def task(task_id: str, deps: list[str]) -> None:
        pause = f"sleep 0.0{rng.randint(3, 9)}; " if rng.random() < 0.5 else ""
        tasks.append({"id": task_id, "depends_on": deps, "type": appends(task_id, log, pause)})

    layer = [f"a{i:03d}" for i in range(100)]
    for task_id in layer:
        task(task_id, [])
    for name, size in (("b", 50), ("c", 30), ("d", 20)):
        below, layer = layer, [f"{name}{i:03d}" for i in range(size)]
        for task_id in layer:
            task(task_id, sorted(rng.sample(below, 2)))
    return {"id": "two-hundred", "config": {"max_parallel_tasks": 3}, "tasks": tasks}


def test_sigkill_at_random_moments_never_reruns_completed_tasks(
        store_url: str, tmp_path: Path, spawn: Callable[..., Child]) -> None:
    """G1 and G2 under SIGKILL: a 200-task run killed at 10 random moments and recovered
    each time completes, never runs a task recorded Completed again, runs every task that
    was in flight again (its attempts count it), and keeps event seqs gapless."""
    rng = random.Random(20240611)
    log = tmp_path / "log"
    workflow = write_workflow(tmp_path / "big.json", big_workflow(log, random.Random(7)))
    instance_id = new_id("kill")
    base = {"store": store_url, "id": instance_id, "lease": 1.0}
    child = spawn("run", {**base, "mode": "run", "workflow": str(workflow)})
    # the clock of the first kill starts once the instance is stored and running
    poll(lambda: getattr(read_store(store_url, instance_id).instance, "state", None)
         == S.RUNNING, "the first run to start")
    kills: list[tuple[Stored, Counter[str]]] = []  # the store and the log after each kill
    killed = False
    for k in range(1, 11):
        assert child.started(), child.report()
        time.sleep(rng.uniform(0.05, 0.4))
        if child.proc.poll() is not None:
            break  # it finished first
        child.kill()
        killed = True
        stored = read_store(store_url, instance_id)
        kills.append((stored, log_counts(log)))
        if stored.instance.state == S.COMPLETED:
            break  # killed after its last commit: nothing to recover
        # the dead process's lease stays live for up to a second: recover() waits for it
        child = spawn(f"recover{k}", {**base, "mode": "recover"})
        killed = False
    if not killed:
        rc, result = child.finish(timeout=60)
        assert (rc, result) == (0, {"state": "Completed", "error": None}), child.report()

    final = read_store(store_url, instance_id)
    counts = log_counts(log)
    assert final.instance.state == S.COMPLETED
    assert_gapless(final.events)
    assert len(final.states) == 200
    for task_id, (status, attempts) in final.states.items():
        assert status == T.COMPLETED, task_id
        # each attempt is recorded before its side effect: never more effects than attempts
        assert 1 <= counts[task_id] <= attempts, (task_id, counts[task_id], attempts)
    mid_run = [stored for stored, _ in kills if stored.instance.state != S.COMPLETED]
    assert len(mid_run) >= 5, f"only {len(mid_run)} of the kills landed mid-run"
    in_flight_seen = 0
    for n, (stored, seen) in enumerate(kills, 1):
        for task_id in stored.with_status(T.COMPLETED):
            assert counts[task_id] == seen[task_id], \
                f"{task_id} was Completed at kill {n} but ran again after it"
        for task_id, attempts in stored.with_status(T.RUNNING).items():
            in_flight_seen += 1
            assert final.states[task_id][1] > attempts, \
                f"{task_id} was in flight at kill {n} (attempt {attempts}) and did not run again"
        for task_id in seen:  # a side effect implies a durable attempt record
            assert task_id in stored.states, f"{task_id} ran with no Running record"
    assert in_flight_seen, "no kill caught a task in flight"


# --------------------------------------------------------------------------- 2. crash points


def twenty_tasks(log: Path) -> dict[str, Any]:
    """8 independent tasks, then 12 that each depend on two earlier ones."""
    tasks = []
    for i in range(20):
        deps = [] if i < 8 else [f"t{i - 8:02d}", f"t{i - 7:02d}"]
        tasks.append({"id": f"t{i:02d}", "depends_on": deps, "type": appends(f"t{i:02d}", log)})
    return {"id": "twenty", "config": {"max_parallel_tasks": 3}, "tasks": tasks}


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("point", ["task-started", "task-finished", "before-commit",
                                   "after-commit"])
def test_crash_point_then_recover_in_a_fresh_process(
        store_url: str, tmp_path: Path, spawn: Callable[..., Child], point: str,
        n: int) -> None:
    """G1 and G2 at each crash point: the process dies (exit 137), recover() in a fresh one
    completes the run; Completed tasks do not run again, tasks in flight do."""
    log = tmp_path / "log"
    workflow = write_workflow(tmp_path / "twenty.json", twenty_tasks(log))
    instance_id = new_id("crash")
    base = {"store": store_url, "id": instance_id, "lease": 0.5}
    crashed = spawn("crash", {**base, "mode": "run", "workflow": str(workflow)},
                    crash_at=f"{point}:{n}")
    rc, _ = crashed.finish(timeout=30)
    assert rc == 137, crashed.report()
    before = read_store(store_url, instance_id)
    seen = log_counts(log)
    assert before.instance is not None
    assert before.instance.state in (S.PENDING, S.RUNNING), before.instance.state
    for task_id in seen:  # a side effect implies a durable attempt record (G4)
        assert task_id in before.states, f"{task_id} ran with no Running record"
    in_flight = before.with_status(T.RUNNING)
    if point == "task-finished":
        # the handler that finished last wrote its line; its result was never recorded
        assert any(seen[t] for t in in_flight), (in_flight, seen)

    recovered = spawn("recover", {**base, "mode": "recover", "patience": 3})
    rc, result = recovered.finish(timeout=60)
    assert (rc, result) == (0, {"state": "Completed", "error": None}), (
        f"after a crash at {point}:{n} the instance was {before.instance.state} with "
        f"{len(before.events)} events; recover() did not complete it\n{recovered.report()}")

    after = read_store(store_url, instance_id)
    counts = log_counts(log)
    assert after.instance.state == S.COMPLETED
    assert_gapless(after.events)
    for task_id, (status, attempts) in after.states.items():
        assert status == T.COMPLETED, task_id
        assert 1 <= counts[task_id] <= attempts, (task_id, counts[task_id], attempts)
    assert sorted(counts) == [f"t{i:02d}" for i in range(20)]
    for task_id in before.with_status(T.COMPLETED):
        assert counts[task_id] == seen[task_id] == 1, f"{task_id} ran again (G1)"
    for task_id, attempts in in_flight.items():
        assert after.states[task_id][1] > attempts, f"{task_id} did not run again (G2)"
    for task_id, count in counts.items():
        if task_id not in in_flight:
            assert count == 1, f"{task_id} ran {count} times but was not in flight"
    if point == "task-finished":
        assert any(counts[t] == 2 for t in in_flight)  # at least once, visibly


# --------------------------------------------------------------------------- 3. tampering


#: edits the stored output of task 'a' (kept in the event that reported it, which the
#: task row names)
_EDIT_OUTPUT_OF_A = (
    "UPDATE dagflow_events SET output = replace(output, 'ORIGINAL', 'TAMPERED')"
    " WHERE seq = (SELECT output_seq FROM dagflow_task_states WHERE task_id = 'a')")


def _tamper(db: Path, sql: str, *params: Any) -> int:
    """Run an UPDATE on the SQLite file behind dagflow's back; the rows it changed."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            changed = conn.execute(sql, params).rowcount
    finally:
        conn.close()
    return changed


async def _wait_event(engine: dagflow.Engine, instance_id: str, kind: str,
                      task_id: str | None = None, after: int = 0) -> Any:
    with anyio.fail_after(20):
        async for event in engine.stream_events(instance_id, after=after):
            if type(event).__name__ == kind and (task_id is None or event.task_id == task_id):
                return event
    raise AssertionError(f"no {kind} event")


async def _settled(engine: dagflow.Engine, instance_id: str,
                   *states: WorkflowState) -> Any:
    """Poll until the instance is in one of ``states``."""
    with anyio.fail_after(30):
        while True:
            instance = await engine.get_status(instance_id)
            if instance.state in states:
                return instance
            await anyio.sleep(0.02)


#: After an interrupt, asyncio closes the killed command's pipe transports a few loop
#: iterations later; a test that ends (and stops the loop) right away leaves them open,
#: and they warn (ResourceWarning, an error here) when the loop is finally closed.
_LET_PIPES_CLOSE = 0.1


async def _paused_after_a(tmp_path: Path) -> tuple[str, str, Path]:
    """An instance whose task ``a`` (stdout ORIGINAL) is Completed, ``hold`` was
    interrupted, ``c`` (which echoes a's stdout) has not run: Paused, with checkpoints."""
    url = f"sqlite:///{tmp_path}/s.db"
    log = tmp_path / "log"
    go = shlex.quote(str(tmp_path / "GO"))
    workflow = dagflow.loads(json.dumps({"id": "tamper", "tasks": [
        {"id": "a", "type": appends("a", log, before="echo ORIGINAL; ")},
        {"id": "hold", "depends_on": ["a"],
         "type": appends("hold", log, before=f"while [ ! -f {go} ]; do sleep 0.05; done; ")},
        {"id": "c", "depends_on": ["a", "hold"],
         "type": appends("c", log, before="echo got ${tasks.a.stdout}; ")},
    ]}), format="json")
    async with dagflow.Engine(store=url) as engine:
        instance = await engine.create_workflow(workflow)
        await engine.start_workflow(instance.id)
        await _wait_event(engine, instance.id, "TaskStarted", "hold")
        await engine.interrupt_workflow(instance.id)
        paused = await _settled(engine, instance.id, S.PAUSED)
        assert paused.task_states["a"].state == T.COMPLETED
        assert paused.task_states["a"].output.stdout == "ORIGINAL\n"
        await engine.checkpoint(instance.id)  # on demand, besides the one taken on pause
    await anyio.sleep(_LET_PIPES_CLOSE)
    return url, instance.id, log


@pytest.mark.anyio
async def test_tampered_task_row_is_replaced_from_the_checkpoint(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """G7: a Completed task's row edited in the database fails its checksum; resuming logs
    the CheckpointError, takes the task from the last good checkpoint, and neither runs it
    again nor ever uses the edited output."""
    url, instance_id, log = await _paused_after_a(tmp_path)
    changed = _tamper(tmp_path / "s.db", _EDIT_OUTPUT_OF_A)
    assert changed == 1
    store = open_storage(url)
    with pytest.raises(dagflow.CheckpointError, match="task 'a' row checksum"):
        await store.load_workflow(instance_id)
    await store.close()

    (tmp_path / "GO").touch()
    async with dagflow.Engine(store=url) as engine:
        await engine.resume_workflow(instance_id)
        final = await _settled(engine, instance_id, S.COMPLETED, S.FAILED, S.CANCELLED)
    assert final.state == S.COMPLETED
    assert "row checksum does not match" in caplog.text
    assert final.task_states["a"].output.stdout == "ORIGINAL\n"
    assert final.task_states["c"].output.stdout == "got ORIGINAL\n"
    assert log_counts(log) == {"a": 1, "hold": 1, "c": 1}  # a did not run again
    assert "TAMPERED" not in json.dumps([str(s) for s in final.task_states.values()])


@pytest.mark.anyio
async def test_tampered_row_and_checkpoints_refuse_to_resume(tmp_path: Path) -> None:
    """G7: with the row and every checkpoint edited, resuming raises CheckpointError and
    runs nothing (no new events, no side effects, the instance stays Paused)."""
    url, instance_id, log = await _paused_after_a(tmp_path)
    db = tmp_path / "s.db"
    assert _tamper(db, _EDIT_OUTPUT_OF_A) == 1
    assert _tamper(db, "UPDATE dagflow_checkpoints SET body ="
                   " replace(body, 'ORIGINAL', 'TAMPERED')") >= 2
    before = log_counts(log)
    events_before = await _events(url, instance_id)
    (tmp_path / "GO").touch()
    async with dagflow.Engine(store=url) as engine:
        with pytest.raises(dagflow.CheckpointError, match="no good checkpoint"):
            await engine.resume_workflow(instance_id)
        await anyio.sleep(0.3)  # nothing may be running in the background either
        assert instance_id not in await engine.recover()
    assert log_counts(log) == before
    assert await _events(url, instance_id) == events_before
    conn = sqlite3.connect(db)
    try:
        (state,) = conn.execute("SELECT state FROM dagflow_instances").fetchone()
    finally:
        conn.close()
    assert state == "Paused"


async def _events(url: str, instance_id: str) -> list[Any]:
    store = open_storage(url)
    try:
        return await store.load_events(instance_id)
    finally:
        await store.close()


def chain_workflow(log: Path, size: int) -> dict[str, Any]:
    """``size`` tasks in a chain, one at a time."""
    tasks = [{"id": f"s{i:02d}", "depends_on": [f"s{i - 1:02d}"] if i else [],
              "type": appends(f"s{i:02d}", log)} for i in range(size)]
    return {"id": "chain", "tasks": tasks}


def _state_after(events: list[Any], upto: int
                 ) -> tuple[WorkflowState, dict[str, tuple[TaskStatus, int]]]:
    """The instance state and task (status, attempt) implied by the first ``upto`` events
    of a chain run (TaskStarted -> Running, TaskCompleted -> Completed)."""
    state = S.PENDING if upto == 0 else S.RUNNING
    tasks: dict[str, tuple[TaskStatus, int]] = {}
    for event in events[:upto]:
        kind = type(event).__name__
        if kind == "TaskStarted":
            tasks[event.task_id] = (T.RUNNING, event.attempt)
        elif kind == "TaskCompleted":
            tasks[event.task_id] = (T.COMPLETED, event.attempt)
        elif kind == "WorkflowCompleted":
            state = S.COMPLETED
    return state, tasks


def test_torn_sqlite_copies_open_to_an_earlier_state_or_fail_cleanly(
        tmp_path: Path, spawn: Callable[..., Child]) -> None:
    """G7 and A.6 step 4: copies of the SQLite file and its WAL taken while a run writes,
    truncated at random offsets, open either to a state the run really passed through (its
    rows agree with a prefix of the real event history) or to a clean StorageError or
    CheckpointError, never to a silently wrong instance."""
    rng = random.Random(99)
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    log = tmp_path / "log"
    workflow = write_workflow(tmp_path / "chain.json", chain_workflow(log, 30))
    instance_id = new_id("torn")
    child = spawn("run", {"mode": "run", "store": url, "workflow": str(workflow),
                          "id": instance_id, "lease": 5.0})
    copies: list[Path] = []
    lines = -1
    while child.proc.poll() is None:
        now = len(log_counts(log))
        if now == lines:
            time.sleep(0.005)
            continue
        lines = now  # a copy each time a task's side effect lands: mid-run states
        where = tmp_path / f"copy{len(copies)}"
        where.mkdir()
        for name in ("s.db", "s.db-wal"):  # not -shm: SQLite rebuilds it from the WAL
            if (tmp_path / name).exists():
                shutil.copyfile(tmp_path / name, where / name)
        copies.append(where)
    rc, _ = child.finish()
    assert rc == 0, child.report()
    reference = read_store(url, instance_id).events
    assert type(reference[-1]).__name__ == "WorkflowCompleted"

    outcomes: Counter[str] = Counter()
    for i, copy in enumerate(copies[:: max(1, len(copies) // 6)]):
        for cut in range(3):
            torn = tmp_path / f"torn{i}-{cut}"
            shutil.copytree(copy, torn)
            target = torn / ("s.db" if cut == 2 else "s.db-wal")
            if target.exists():
                size = target.stat().st_size
                with target.open("r+b") as fh:
                    fh.truncate(rng.randrange(size + 1) if size else 0)
            outcomes[_open_torn(torn / "s.db", instance_id, reference)] += 1
    # the finished file (its WAL checkpointed into it on close), cut short
    size = db.stat().st_size
    for cut in range(3):
        torn = tmp_path / f"final{cut}"
        torn.mkdir()
        shutil.copyfile(db, torn / "s.db")
        with (torn / "s.db").open("r+b") as fh:
            fh.truncate(rng.randrange(size))
        outcomes[_open_torn(torn / "s.db", instance_id, reference)] += 1
    assert outcomes["mid-run"] >= 1, outcomes  # the test did look at unfinished states
    assert set(outcomes) <= {"absent", "mid-run", "completed", "error"}, outcomes


def _open_torn(db: Path, instance_id: str, reference: list[Any]) -> str:
    """Open a torn copy and classify it; fail the test if it loads a wrong instance."""

    async def load() -> tuple[Any, list[Any]]:
        store = open_storage(f"sqlite:///{db}")
        try:
            instance = await store.load_workflow(instance_id)
            events = await store.load_events(instance_id) if instance is not None else []
            return instance, events
        finally:
            await store.close()

    try:
        instance, events = anyio.run(load)
    except (dagflow.StorageError, dagflow.CheckpointError):
        return "error"
    if instance is None:
        return "absent"
    upto = len(events)
    assert events == reference[:upto], f"{db}: events are not a prefix of the real history"
    state, tasks = _state_after(reference, upto)
    recorded = {k: (s.state, s.attempts) for k, s in instance.task_states.items()}
    assert (instance.state, recorded) == (state, tasks), \
        f"{db}: rows disagree with the {upto} events they were committed with"
    return "completed" if state == S.COMPLETED else "mid-run"


# --------------------------------------------------------------------------- 4. two processes


def _holder(url: str, instance_id: str) -> str | None:
    holder, until = read_store(url, instance_id).lease
    return holder if holder is not None and until > time.time() else None


def test_second_process_cannot_resume_a_live_instance(
        store_url: str, tmp_path: Path, spawn: Callable[..., Child]) -> None:
    """G9: while process A drives an instance, process B's resume_workflow is refused
    ("cannot be resumed twice") and B's recover() leaves it alone; A completes normally."""
    log = tmp_path / "log"
    workflow = write_workflow(tmp_path / "long.json", {"id": "long", "tasks": [
        {"id": "slow", "type": appends("slow", log, before="sleep 1.5; ")},
        {"id": "done", "depends_on": ["slow"], "type": appends("done", log)}]})
    instance_id = new_id("two")
    a = spawn("a", {"mode": "run", "store": store_url, "workflow": str(workflow),
                    "id": instance_id, "lease": 2.0})
    poll(lambda: "slow" in read_store(store_url, instance_id).with_status(T.RUNNING),
         "A to start slow")

    async def process_b() -> None:
        async with dagflow.Engine(store=store_url) as engine:
            with pytest.raises(dagflow.WorkflowError, match="cannot be resumed twice"):
                await engine.resume_workflow(instance_id)
            assert instance_id not in await engine.recover()

    anyio.run(process_b)
    rc, result = a.finish(timeout=30)
    assert (rc, result) == (0, {"state": "Completed", "error": None}), a.report()
    final = read_store(store_url, instance_id)
    assert final.states == {"slow": (T.COMPLETED, 1), "done": (T.COMPLETED, 1)}
    assert log_counts(log) == {"slow": 1, "done": 1}
    assert_gapless(final.events)


class HeldStore(dagflow.SqliteStorage):
    """A SQLite store whose next commit, once ``hold`` is set, waits for ``gate``."""

    hold = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.holding, self.gate = anyio.Event(), anyio.Event()

    async def commit_many(self, batch: Any) -> None:
        if self.hold:
            self.hold = False
            self.holding.set()
            await self.gate.wait()
        await super().commit_many(batch)


@pytest.mark.anyio
async def test_engine_leaving_its_block_leaves_its_tasks_to_recover(tmp_path: Path) -> None:
    """A host stopping its engine (leaving ``async with``) while a run has tasks in flight
    stops it the way a crash would, even while a commit is still being written: no task
    is recorded as failed or cancelled, and a new engine recovers the instance and runs
    them again."""
    n = 50
    workflow = dagflow.loads(json.dumps({
        "id": "many", "config": {"max_parallel_tasks": n + 1},
        "tasks": [{"id": "last", "type": {"type": "Plugin", "plugin_name": "last"}},
                  *({"id": f"t{i}", "type": {"type": "Plugin", "plugin_name": "work"}}
                    for i in range(n))]}), format="json")
    store = HeldStore(tmp_path / "s.db")
    in_flight = stopped = 0
    all_in, all_stopped = anyio.Event(), anyio.Event()

    async def stall(config: Any, ctx: Any) -> None:
        nonlocal in_flight, stopped
        in_flight += 1
        if in_flight == n:
            all_in.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped += 1
            if stopped == n:
                all_stopped.set()

    async def last(config: Any, ctx: Any) -> None:
        await all_in.wait()
        store.hold = True  # this task's completion is the commit being written

    async def open_the_gate() -> None:
        await all_stopped.wait()  # every task saw the shutdown while the commit waited
        store.gate.set()

    plugins = {"work": stall, "last": last}
    async with anyio.create_task_group() as outer, \
            dagflow.Engine(store=store, plugins=plugins) as first:
        instance = await first.create_workflow(workflow)
        await first.start_workflow(instance.id)
        with anyio.fail_after(30):
            await store.holding.wait()
        outer.start_soon(open_the_gate)
    url = f"sqlite:///{tmp_path}/s.db"
    async with dagflow.Engine(store=url) as looking:
        left = await looking.get_status(instance.id)
    assert left.state == S.RUNNING, left.error
    assert Counter(state.state for state in left.task_states.values()) == {
        T.RUNNING: n, T.COMPLETED: 1}
    ran: list[str] = []

    async def finish(config: Any, ctx: Any) -> None:
        ran.append(ctx.task_id)

    async with dagflow.Engine(store=url, plugins={"work": finish, "last": finish}) as second:
        assert await second.recover() == [instance.id]
        final = await second.wait(instance.id)
    assert final.state == S.COMPLETED, final.error
    assert sorted(ran) == sorted(f"t{i}" for i in range(n))


@pytest.mark.anyio
async def test_start_workflow_refuses_an_instance_claimed_elsewhere(tmp_path: Path) -> None:
    """G9: start_workflow of a Pending instance whose lease another process holds raises
    WorkflowError at once, as resume_workflow does, and the engine stays usable."""
    workflow = dagflow.loads(json.dumps({"id": "claimed", "tasks": [
        {"id": "a", "type": {"type": "Command", "command": "true"}}]}), format="json")
    async with dagflow.Engine(store=f"sqlite:///{tmp_path}/s.db") as engine:
        instance = await engine.create_workflow(workflow)
        # another process took it (like a run() that was killed before its first commit)
        assert await engine.store.acquire_lease(instance.id, "elsewhere:1:feed", 30.0)
        with pytest.raises(dagflow.WorkflowError, match="cannot be resumed twice"):
            await engine.start_workflow(instance.id)
        other = await engine.run(workflow)
        assert other.state == S.COMPLETED
        assert (await engine.get_status(instance.id)).state == S.PENDING


def _stop_a_and_let_b_take_over(store_url: str, tmp_path: Path, spawn: Callable[..., Child],
                                 workflow: dict[str, Any]) -> tuple[str, Child, Child, float]:
    """A (lease 1 s) starts ``slow`` and is SIGSTOPped; once its lease expired, B takes
    the instance over with recover(). Returns the id, A, B and when A was stopped. A file
    ``GO`` is created after A was stopped (so that B's attempt can differ from A's)."""
    path = write_workflow(tmp_path / "fence.json", workflow)
    instance_id = new_id("fence")
    a = spawn("a", {"mode": "run", "store": store_url, "workflow": str(path),
                    "id": instance_id, "lease": 1.0})
    poll(lambda: "slow" in read_store(store_url, instance_id).with_status(T.RUNNING),
         "A to start slow")
    os.kill(a.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    (tmp_path / "GO").touch()
    b = spawn("b", {"mode": "recover", "store": store_url, "id": instance_id, "lease": 1.0})
    assert b.started(), b.report()
    return instance_id, a, b, stopped_at


def test_stopped_process_loses_its_lease_and_cannot_write(
        store_url: str, tmp_path: Path, spawn: Callable[..., Child]) -> None:
    """G9 fencing: A is suspended (SIGSTOP) past its lease, B takes over with recover();
    when A continues while B still runs, A's writes are refused ("lost its lease"), A
    stops, and B completes the instance with nothing of A's overwriting it."""
    log = tmp_path / "log"
    instance_id, a, b, stopped_at = _stop_a_and_let_b_take_over(
        store_url, tmp_path, spawn, {"id": "fence", "tasks": [
            {"id": "slow", "type": appends("slow", log, before="sleep 1.2; ")},
            {"id": "after", "depends_on": ["slow"],
             "type": appends("after", log, before="sleep 1; ")}]})
    time.sleep(max(0.0, 2.0 - (time.monotonic() - stopped_at)))
    assert b.proc.poll() is None, "B finished too early for this test"
    os.kill(a.pid, signal.SIGCONT)  # A's `sleep 1.2` is over: it has a result to write
    _, result_a = a.finish(timeout=30)
    rc_b, result_b = b.finish(timeout=30)
    assert (rc_b, result_b) == (0, {"state": "Completed", "error": None}), b.report()
    # A stops: engine.run raises StorageError, or returns the instance as it stood
    assert result_a is not None and result_a.get("state") != "Completed", a.report()
    assert "lost its lease" in a.out.read_text() + a.err.read_text(), a.report()
    final = read_store(store_url, instance_id)
    assert final.instance.state == S.COMPLETED
    assert final.states == {"slow": (T.COMPLETED, 2), "after": (T.COMPLETED, 1)}
    assert_gapless(final.events)
    kinds = [type(e).__name__ for e in final.events]
    assert kinds.count("WorkflowCompleted") == 1 and kinds.count("TaskCompleted") == 2, kinds
    assert log_counts(log)["after"] == 1


def test_stopped_process_does_not_retake_a_released_lease(
        store_url: str, tmp_path: Path, spawn: Callable[..., Child]) -> None:
    """G9 fencing after the new driver is gone: B takes over from a suspended A and
    completes the instance (releasing its lease); when A continues it must not take the
    lease again, and its late result is refused as a lost lease, changing nothing."""
    log = tmp_path / "log"
    go = shlex.quote(str(tmp_path / "GO"))
    release = tmp_path / "RELEASE"
    # A's attempt waits for RELEASE; B's is instant (GO exists once A is stopped)
    wait = (f"n=0; test -f {go} || until [ -f {shlex.quote(str(release))} ] || [ $n -gt 999 ];"
            " do sleep 0.02; n=$((n+1)); done; ")  # bounded: no orphan loops forever
    instance_id, a, b, _ = _stop_a_and_let_b_take_over(store_url, tmp_path, spawn, {
        "id": "fence", "tasks": [
            {"id": "slow", "type": appends("slow", log, before=wait)},
            {"id": "after", "depends_on": ["slow"], "type": appends("after", log)}]})
    rc_b, result_b = b.finish(timeout=30)
    assert (rc_b, result_b) == (0, {"state": "Completed", "error": None}), b.report()
    done = read_store(store_url, instance_id)
    os.kill(a.pid, signal.SIGCONT)
    time.sleep(0.5)  # A's lease renewal is overdue: it runs at once
    holder = _holder(store_url, instance_id)
    release.touch()  # now A's attempt ends and A has a (stale) result to write
    a.finish(timeout=30)
    final = read_store(store_url, instance_id)
    assert final.states == done.states == {"slow": (T.COMPLETED, 2), "after": (T.COMPLETED, 1)}
    assert final.events == done.events
    assert final.instance.state == S.COMPLETED
    assert holder is None or f":{a.pid}:" not in holder, (
        f"A (pid {a.pid}) took the lease of the finished instance back: {holder}")
    assert "lost its lease" in a.out.read_text() + a.err.read_text(), a.report()


# --------------------------------------------------------------------------- 5. retry


@pytest.mark.anyio
async def test_retry_reruns_only_the_failed_loop_item_and_what_follows(tmp_path: Path) -> None:
    """CONTRACT 5 retry: of a 10-item Loop whose item 7 failed, retry runs only item 7 and
    the task after the loop; the loop's data has all 10 outputs in item order."""
    log = tmp_path / "log"
    marker = shlex.quote(str(tmp_path / "MARKER-"))
    for k in range(10):
        if k != 7:
            (tmp_path / f"MARKER-{k}").touch()
    workflow = dagflow.loads(json.dumps({"id": "loop", "tasks": [
        {"id": "each", "type": {"type": "Loop", "items": list(range(10)), "parallel": True,
                                "task_template": {"id": "item", "type": sh(
                                    f"test -f {marker}${{item}} && echo ${{item}} >> "
                                    f"{shlex.quote(str(log))} && echo out-${{item}}")}}},
        {"id": "after", "depends_on": ["each"], "type": appends("after", log)},
    ]}), format="json")
    async with dagflow.Engine(store=f"sqlite:///{tmp_path}/s.db") as engine:
        first = await engine.run(workflow)
        errors = {k: s.error for k, s in first.task_states.items() if s.error}
        assert first.state == S.FAILED, errors
        assert sorted(log_counts(log)) == [str(k) for k in range(10) if k != 7], errors
        lines = len(log.read_text().split())
        (tmp_path / "MARKER-7").touch()
        final = await engine.retry(first.id)
    assert final.state == S.COMPLETED
    assert final.id == first.id
    assert log.read_text().split()[lines:] == ["7", "after"]
    data = final.task_states["each"].output.data
    assert [item["stdout"] for item in data] == [f"out-{k}\n" for k in range(10)]


# --------------------------------------------------------------------------- 6. snapshot


async def _paused_before_say(tmp_path: Path, url: str) -> tuple[str, Path]:
    """An instance from a file whose ``say`` task runs ``echo OLD``, Paused before ``say``."""
    go = shlex.quote(str(tmp_path / "GO"))
    up = shlex.quote(str(tmp_path / "UP"))
    path = tmp_path / "snap.yaml"
    path.write_text("id: snap\ntasks:\n"
                    "  - id: hold\n"
                    "    type: {type: Command, command: sh, args: ['-c', "
                    f"'touch {up}; while [ ! -f {go} ]; do sleep 0.05; done']}}\n"
                    "  - id: say\n    depends_on: [hold]\n"
                    "    type: {type: Command, command: echo, args: [OLD]}\n")
    async with dagflow.Engine(store=url) as engine:
        instance = await engine.create_workflow(engine.load(path))
        await engine.start_workflow(instance.id)
        await _wait_event(engine, instance.id, "TaskStarted", "hold")
        while not (tmp_path / "UP").exists():  # noqa: ASYNC110 - a file has no event
            await anyio.sleep(0.01)
        await engine.interrupt_workflow(instance.id)
        await _settled(engine, instance.id, S.PAUSED)
    await anyio.sleep(_LET_PIPES_CLOSE)
    path.write_text(path.read_text().replace("OLD", "NEW"))
    assert dagflow.load(path).tasks[1].type.args == ("NEW",)
    (tmp_path / "GO").touch()
    return instance.id, path


@pytest.mark.anyio
async def test_resume_uses_the_definition_snapshot_not_the_edited_file(tmp_path: Path) -> None:
    """G8: an instance paused before ``echo OLD`` and resumed after the file was edited to
    ``echo NEW`` prints OLD: resume uses the stored snapshot."""
    url = f"sqlite:///{tmp_path}/s.db"
    instance_id, _ = await _paused_before_say(tmp_path, url)
    async with dagflow.Engine(store=url) as engine:
        await engine.resume_workflow(instance_id)
        final = await _settled(engine, instance_id, S.COMPLETED, S.FAILED, S.CANCELLED)
    assert final.state == S.COMPLETED
    assert final.task_states["say"].output.stdout == "OLD\n"


@pytest.mark.anyio
async def test_corrupt_definition_snapshot_refuses_to_resume(tmp_path: Path) -> None:
    """G8: a stored definition snapshot edited in the database no longer matches its hash;
    resuming raises CheckpointError and runs nothing."""
    url = f"sqlite:///{tmp_path}/s.db"
    instance_id, _ = await _paused_before_say(tmp_path, url)
    assert _tamper(tmp_path / "s.db", "UPDATE dagflow_definitions SET body ="
                   " replace(body, 'OLD', 'NEW')") == 1
    async with dagflow.Engine(store=url) as engine:
        with pytest.raises(dagflow.CheckpointError, match="does not match its hash"):
            await engine.resume_workflow(instance_id)
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        rows = conn.execute("SELECT task_id, state FROM dagflow_task_states").fetchall()
        (state,) = conn.execute("SELECT state FROM dagflow_instances").fetchone()
    finally:
        conn.close()
    assert state == "Paused"
    assert dict(rows) == {"hold": "Pending"}  # say never ran


# --------------------------------------------------------------------------- 7. approvals


@pytest.mark.anyio
async def test_interrupted_approval_gate_waits_again_with_its_deadline(tmp_path: Path) -> None:
    """G6 (within one process, as approvals are in memory for now): an instance waiting at
    an approval gate, interrupted and resumed, waits again at the same gate with the same
    deadline, and a grant then completes it."""
    workflow = dagflow.loads(json.dumps({"id": "gate", "tasks": [
        {"id": "gate", "type": {"type": "Approval", "approvers": ["alice@example.com"],
                                "timeout_seconds": 3600}},
        {"id": "after", "depends_on": ["gate"], "type": {"type": "Command",
                                                         "command": "true"}}]}), format="json")
    async with dagflow.Engine(store=f"sqlite:///{tmp_path}/s.db") as engine:
        instance = await engine.create_workflow(workflow, user_id="bob@example.com")
        await engine.start_workflow(instance.id)
        first = await _wait_event(engine, instance.id, "ApprovalRequired")
        await _settled(engine, instance.id, S.WAITING_APPROVAL)
        await engine.interrupt_workflow(instance.id)
        paused = await _settled(engine, instance.id, S.PAUSED)
        await engine.resume_workflow(instance.id)
        again = await _wait_event(engine, instance.id, "ApprovalRequired", after=first.seq)
        waiting = await _settled(engine, instance.id, S.WAITING_APPROVAL)
        assert (again.approval_id, again.expires_at) == (first.approval_id, first.expires_at)
        await engine.approvals.grant_approval(again.approval_id, "alice@example.com")
        final = await _settled(engine, instance.id, S.COMPLETED, S.FAILED, S.CANCELLED)
    assert paused.task_states["gate"].state == T.PENDING
    assert waiting.state == S.WAITING_APPROVAL
    assert final.state == S.COMPLETED
