"""Durable stores: throughput, the cost of one chain hop against one raw commit, many
concurrent runs, and recovery, each beside the bare-anyio limit in the same process.

Everything runs with the engine's and the workflow's DEFAULT settings: no config in the
workflow definitions (so ``max_parallel_tasks`` is the default), SQLite with its default
``synchronous``. Each measurement gets a fresh store: a new SQLite file in a temporary
directory, or a new schema in a private PostgreSQL database created for the run and
dropped afterwards.

Sections (``--only`` picks some):

  wide      wide 1,000 and 10,000 no-op tasks (tasks/s); the 10k row gives the 10k/1k time
            ratio (about 10: the cost per task does not grow with the finished tasks).
            Targets: SQLite >= 7,500 tasks/s, PostgreSQL >= 4,000 tasks/s.
  hop       a chain of ``--hops`` no-op tasks: µs per hop, beside ONE raw commit on the same
            kind of database in the same process (sqlite3 with the pragmas SqliteStorage
            sets: WAL, synchronous=FULL, ``BEGIN IMMEDIATE`` + INSERT + COMMIT; psycopg
            autocommit INSERT of a small row), timed in a loop in a worker thread, and the
            same commit sent through ``anyio.to_thread.run_sync`` one at a time (what a
            store built on worker threads pays at least). ``hops/commit`` is µs per hop over
            µs per raw commit. Target: about 1.
  runs      ``--runs`` instances (default 1,000) of a 10-task chain, created, then all
            started with start_workflow in one engine and waited for: runs/s from the
            first start to the last completion (creating them is shown apart, and when
            the last start_workflow returned), and durable/memory. Target: >= 0.5.
  recovery  a 10,000-task instance stopped with half its tasks done is recovered by a new
            process: the time until it runs again (load, verify every row's checksum,
            rebuild) and until it completes.

The bare runner (benchmarks/_baseline.py) runs the same task lists by dependency counting
with the same ``max_parallel_tasks``, alternating with the engine; every figure is the best
of ``--repeat`` runs.

Run::

    python benchmarks/bench_durable.py [--stores memory,sqlite,postgres]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--backend asyncio|trio]
        [--repeat 3] [--only wide,hop,runs,recovery] [--quick] [--json]

``--postgres`` names a database to connect to (default: ``$DAGFLOW_TEST_POSTGRES``);
the benchmark creates its own database next to it and drops it at the end. ``--quick``
measures wide 1,000 only, a 100-hop chain, 200 runs and no recovery.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

import dagflow

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _baseline
import workloads
from _common import Table, definition, ratio, us_per_task

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_TASKS_PER_S = {"sqlite": 7_500, "postgres": 4_000}
TARGET_RUNS_RATIO = 0.5
PLUGINS = {"noop": _baseline.noop}
#: SqliteStorage's pragmas (src/dagflow/_storage/sqlite.py). journal_mode is read back
#: from the engine's own file; synchronous is not stored in the file, so it is the
#: store's documented default.
SQLITE_SYNCHRONOUS = "FULL"
COMMITS = 200  # raw commits per sample


# ---------------------------------------------------------------------------- stores


class Stores:
    """Fresh store URLs of each kind, and raw commits on the same kind of database."""

    def __init__(self, tmp: str, postgres: str | None) -> None:
        self.tmp = tmp
        self.postgres = postgres  # the private database's URL
        self._count = 0

    def fresh(self, kind: str) -> str:
        self._count += 1
        if kind == "memory":
            return "memory://"
        if kind == "sqlite":
            return f"sqlite:///{self.tmp}/store-{self._count}.db"
        if kind == "postgres":
            assert self.postgres is not None
            return _with_query(self.postgres, schema=f"bench_{self._count}")
        raise ValueError(kind)

    async def commit_us(self, kind: str, engine_url: str) -> tuple[float, float, str]:
        """µs of one raw commit (best of a loop in a worker thread), µs of one commit
        through ``to_thread.run_sync``, and what was committed to."""
        if kind == "sqlite":
            return await self._sqlite_commit(engine_url)
        if kind == "postgres":
            return await self._postgres_commit()
        raise ValueError(kind)

    async def _sqlite_commit(self, engine_url: str) -> tuple[float, float, str]:
        engine_file = urllib.parse.urlsplit(engine_url).path[1:]

        def open_like_the_store() -> tuple[sqlite3.Connection, str]:
            probe = sqlite3.connect(engine_file)
            journal = probe.execute("PRAGMA journal_mode").fetchone()[0].upper()
            probe.close()
            self._count += 1
            conn = sqlite3.connect(f"{self.tmp}/commit-{self._count}.db", timeout=10.0,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA journal_mode={journal}")
            conn.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
            conn.execute("CREATE TABLE bench_commit (id INTEGER PRIMARY KEY, v TEXT)")
            return conn, journal

        conn, journal = await anyio.to_thread.run_sync(open_like_the_store)
        row = ("x" * 64,)

        def one() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench_commit (v) VALUES (?)", row)
            conn.execute("COMMIT")

        try:
            raw, threaded = await _commit_costs(one)
        finally:
            await anyio.to_thread.run_sync(conn.close)
        return raw, threaded, f"sqlite3 journal_mode={journal} synchronous={SQLITE_SYNCHRONOUS}"

    async def _postgres_commit(self) -> tuple[float, float, str]:
        import psycopg

        def connect() -> Any:
            conn = psycopg.connect(self.postgres, autocommit=True)
            conn.execute("CREATE TABLE IF NOT EXISTS bench_commit "
                         "(id BIGSERIAL PRIMARY KEY, v TEXT)")
            return conn

        conn = await anyio.to_thread.run_sync(connect)
        row = ("x" * 64,)

        def one() -> None:
            conn.execute("INSERT INTO bench_commit (v) VALUES (%s)", row)

        try:
            raw, threaded = await _commit_costs(one)
        finally:
            await anyio.to_thread.run_sync(conn.close)
        return raw, threaded, "psycopg autocommit INSERT"


async def _commit_costs(one: Any) -> tuple[float, float]:
    """µs per commit: ``COMMITS`` of them in a loop in one worker thread, then ``COMMITS``
    sent one by one through ``to_thread.run_sync``."""

    def loop() -> float:
        start = time.perf_counter()
        for _ in range(COMMITS):
            one()
        return (time.perf_counter() - start) / COMMITS * 1e6

    raw = await anyio.to_thread.run_sync(loop)
    start = time.perf_counter()
    for _ in range(COMMITS):
        await anyio.to_thread.run_sync(one)
    return raw, (time.perf_counter() - start) / COMMITS * 1e6


def _with_query(url: str, **options: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [*urllib.parse.parse_qsl(parts.query), *options.items()]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def create_database(url: str) -> tuple[str, str]:
    """A new, empty database on the server of ``url``: its name and URL."""
    import psycopg

    name = f"dagflow_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path=f"/{name}"))


def drop_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------- engine runs


class Transactions:
    """Counts the transactions the SQL stores run while it is entered: a probe on their
    one place that runs a transaction (private, so this is a benchmark's tool, not an
    API)."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> Transactions:
        from dagflow._storage._sql import SqlStorage

        self._original = original = SqlStorage._transaction

        def counted(store: Any, *args: Any) -> Any:
            self.count += 1
            return original(store, *args)

        SqlStorage._transaction = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        from dagflow._storage._sql import SqlStorage

        SqlStorage._transaction = self._original  # type: ignore[method-assign]


async def run_seconds(url: str, wf: dagflow.WorkflowDefinition,
                      transactions: Transactions | None = None) -> float:
    """Wall seconds of ``engine.run(wf)`` on an opened store (counting its transactions
    in ``transactions``)."""
    async with dagflow.Engine(store=url, plugins=PLUGINS) as engine:
        await engine.list_workflows(dagflow.WorkflowFilters(limit=1))  # open the store
        gc.collect()
        start = time.perf_counter()
        if transactions is None:
            instance = await engine.run(wf)
        else:
            with transactions:
                instance = await engine.run(wf)
        took = time.perf_counter() - start
    assert instance.state == dagflow.WorkflowState.COMPLETED, (instance.state, instance.error)
    return took


async def many_runs(url: str, wf: dagflow.WorkflowDefinition, runs: int
                    ) -> tuple[float, float, float]:
    """Seconds to create ``runs`` instances; from the first start_workflow until the last
    one returned; and from the first start_workflow to the end of the last wait."""
    async with dagflow.Engine(store=url, plugins=PLUGINS) as engine:
        await engine.list_workflows(dagflow.WorkflowFilters(limit=1))
        gc.collect()
        start = time.perf_counter()
        ids = [(await engine.create_workflow(wf)).id for _ in range(runs)]
        created = time.perf_counter() - start
        start = time.perf_counter()
        for instance_id in ids:
            await engine.start_workflow(instance_id)
        started = time.perf_counter() - start
        finals = [await engine.wait(instance_id) for instance_id in ids]
        took = time.perf_counter() - start
    states = {final.state for final in finals}
    assert states == {dagflow.WorkflowState.COMPLETED}, states
    return created, started, took


# ---------------------------------------------------------------------------- sections


async def wide(args: argparse.Namespace, stores: Stores, common: dict[str, Any]) -> None:
    table = Table("bench_durable", "wide", "wide: independent no-op tasks, default settings",
                  [("store", "store", "{}"), ("tasks", "tasks", "{:,}"),
                   ("max_parallel", "max_parallel", "{}"),
                   ("engine_s", "engine s", "{:.3f}"),
                   ("engine_tasks_per_s", "engine tasks/s", "{:,.0f}"),
                   ("bare_tasks_per_s", "bare tasks/s", "{:,.0f}"),
                   ("ratio", "engine/bare", "{:.1f}"), ("target", "target tasks/s", ">= {:,}"),
                   ("meets", "meets", "{}"), ("time_ratio_10k_1k", "10k/1k time", "{:.1f}")],
                  as_json=args.json, common=common)
    sizes = (1_000,) if args.quick else (1_000, 10_000)
    for kind in args.store_kinds:
        first = None
        for n in sizes:
            tasks = workloads.w1_wide(n)
            wf = definition(tasks, f"wide-{n}")
            limit = wf.config.max_parallel_tasks
            engine, bare = [], []
            for _ in range(args.repeat):
                engine.append(await run_seconds(stores.fresh(kind), wf))
                bare.append(await _baseline.bare_seconds(tasks, limit))
            e, b = min(engine), min(bare)
            first = first or e
            target = TARGET_TASKS_PER_S.get(kind)
            table.row(store=kind, tasks=n, max_parallel=limit, engine_s=e, bare_s=b,
                      engine_tasks_per_s=n / e, bare_tasks_per_s=n / b, ratio=ratio(e, b),
                      target=target, meets=None if target is None else n / e >= target,
                      time_ratio_10k_1k=e / first if n == 10_000 and first != e else None,
                      engine_samples_s=engine, bare_samples_s=bare)


async def hop(args: argparse.Namespace, stores: Stores, common: dict[str, Any]) -> None:
    hops = 100 if args.quick else args.hops
    table = Table("bench_durable", "hop", f"hop: a chain of {hops} no-op tasks vs one commit",
                  [("store", "store", "{}"), ("engine_us", "engine µs/hop", "{:,.0f}"),
                   ("bare_us", "bare µs/hop", "{:.1f}"),
                   ("commit_us", "raw commit µs", "{:,.0f}"),
                   ("commit_thread_us", "commit via thread µs", "{:,.0f}"),
                   ("hops_per_commit", "hop/commit", "{:.2f}"),
                   ("commits_per_hop", "commits/hop", "{:.2f}"), ("commit", "commit", "{}")],
                  as_json=args.json, common=common)
    tasks = workloads.w2_chain(hops)
    wf = definition(tasks, f"chain-{hops}")
    limit = wf.config.max_parallel_tasks
    for kind in args.store_kinds:
        engine, bare, raw, threaded = [], [], [], []
        what = None
        counted = Transactions()
        for _ in range(args.repeat):  # the commits right after each run: the same weather
            url = stores.fresh(kind)
            counted.count = 0
            engine.append(await run_seconds(url, wf, counted))
            bare.append(await _baseline.bare_seconds(tasks, limit))
            if kind != "memory":
                one, through_thread, what = await stores.commit_us(kind, url)
                raw.append(one)
                threaded.append(through_thread)
        e, b = min(engine), min(bare)
        row: dict[str, Any] = {"store": kind, "hops": hops, "engine_us": us_per_task(e, hops),
                               "bare_us": us_per_task(b, hops), "engine_samples_s": engine,
                               "bare_samples_s": bare}
        if raw:
            row.update(commit_us=min(raw), commit_thread_us=min(threaded), commit=what,
                       commits_per_hop=counted.count / hops,
                       hops_per_commit=row["engine_us"] / min(raw),
                       hops_per_thread_commit=row["engine_us"] / min(threaded),
                       commit_samples_us=raw, commit_thread_samples_us=threaded)
        table.row(**row)
    table.note("hop/commit: µs per hop over µs per raw commit; commits/hop: transactions "
               "the store committed during the run over the hops (target: 1)")


async def runs(args: argparse.Namespace, stores: Stores, common: dict[str, Any]) -> None:
    count = 200 if args.quick else args.runs
    table = Table("bench_durable", "runs",
                  f"runs: {count:,} concurrent 10-task chains in one engine",
                  [("store", "store", "{}"), ("create_s", "create s", "{:.2f}"),
                   ("start_s", "all started s", "{:.2f}"),
                   ("engine_s", "start..done s", "{:.2f}"),
                   ("engine_runs_per_s", "engine runs/s", "{:,.0f}"),
                   ("bare_runs_per_s", "bare runs/s", "{:,.0f}"),
                   ("ratio", "engine/bare", "{:.1f}"),
                   ("vs_memory", "durable/memory", "{:.2f}"),
                   ("meets", "meets", "{}")],
                  as_json=args.json, common=common)
    tasks = workloads.w2_chain(10)
    wf = definition(tasks, "chain-10")
    limit = wf.config.max_parallel_tasks
    memory_rate = None
    kinds = args.store_kinds
    if "memory" in kinds:  # first: the others are compared with it
        kinds = ["memory", *(k for k in kinds if k != "memory")]
    for kind in kinds:
        created, started, engine, bare = [], [], [], []
        for _ in range(args.repeat):
            make, start, took = await many_runs(stores.fresh(kind), wf, count)
            created.append(make)
            started.append(start)
            engine.append(took)
            bare.append(await _baseline.bare_runs_seconds(tasks, count, limit))
        e, b = min(engine), min(bare)
        rate = count / e
        if kind == "memory":
            memory_rate = rate
        vs_memory = rate / memory_rate if memory_rate and kind != "memory" else None
        table.row(store=kind, runs=count, create_s=min(created), start_s=min(started),
                  engine_s=e, bare_s=b,
                  engine_runs_per_s=rate, bare_runs_per_s=count / b, ratio=ratio(e, b),
                  vs_memory=vs_memory,
                  meets=None if vs_memory is None else vs_memory >= TARGET_RUNS_RATIO,
                  engine_samples_s=engine, bare_samples_s=bare, create_samples_s=created)
    table.note(f"durable/memory: runs/s over memory's runs/s; target: >= {TARGET_RUNS_RATIO}")


async def recovery(args: argparse.Namespace, stores: Stores, common: dict[str, Any]) -> None:
    table = Table("bench_durable", "recovery",
                  "recovery: a 10,000-task instance with 5,000 done, in a new process",
                  [("store", "store", "{}"), ("running_s", "running again s", "{:.3f}"),
                   ("completed_s", "completed s", "{:.3f}")],
                  as_json=args.json, common=common)
    for kind in args.store_kinds:
        if kind == "memory":
            continue
        running, completed = await recover_big(stores.fresh(kind), args.backend)
        table.row(store=kind, tasks=10_000, running_s=running, completed_s=completed)


def wide_parallel(n: int) -> dagflow.WorkflowDefinition:
    """Wide n with max_parallel_tasks n: every task in flight at once (for recovery)."""
    return definition(workloads.w1_wide(n), f"wide-{n}",
                      config={"max_parallel_tasks": n, "timeout_seconds": 86_400})


async def recover_big(url: str, backend: str, n: int = 10_000) -> tuple[float, float]:
    """Seconds until a recovered n-task instance runs again, and until it completes.

    A first engine runs the instance until half its tasks are done, then stops the way a
    dying process does (the rest stay Running). A new process, as after a crash, recovers
    it: it loads the instance, verifies every row's checksum and rebuilds the run.
    """
    half = anyio.Event()
    done = 0

    async def stall(config: Any, ctx: Any) -> None:
        nonlocal done
        done += 1
        if done > n // 2:
            half.set()
            await anyio.sleep_forever()  # the rest stay in flight until the "crash"

    async with dagflow.Engine(store=url, plugins={"noop": stall}) as first:
        instance = await first.create_workflow(wide_parallel(n))
        await first.start_workflow(instance.id)
        await half.wait()
        await anyio.sleep(0.5)  # let the completions commit
    # leaving the block stops the run the way a dying process would (state stays Running)
    result = await anyio.run_process(
        [sys.executable, __file__, "--backend", backend, "--recover", url, instance.id],
        check=True)
    running, completed = map(float, result.stdout.split())
    return running, completed


async def recover_here(url: str, instance_id: str) -> None:
    """In a fresh process: recover, and print when it runs again and when it completes."""
    again = anyio.Event()

    async def first_call(config: Any, ctx: Any) -> None:
        again.set()

    async with dagflow.Engine(store=url, plugins={"noop": first_call}) as engine:
        start = time.perf_counter()
        recovered = await engine.recover()
        assert recovered == [instance_id], recovered
        await again.wait()  # the first in-flight task runs again
        running = time.perf_counter() - start
        final = await engine.wait(instance_id)
        completed = time.perf_counter() - start
    assert final.state == dagflow.WorkflowState.COMPLETED, final.error
    print(running, completed)


SECTIONS = {"wide": wide, "hop": hop, "runs": runs, "recovery": recovery}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="memory,sqlite,postgres",
                        help="comma-separated: memory, sqlite, postgres")
    parser.add_argument("--postgres", default=os.environ.get("DAGFLOW_TEST_POSTGRES",
                                                             PG_DEFAULT))
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hops", type=int, default=200, help="length of the hop chain")
    parser.add_argument("--runs", type=int, default=1000, help="concurrent runs")
    parser.add_argument("--only", default="wide,hop,runs,recovery",
                        help="sections to run, comma-separated (wide, hop, runs, recovery)")
    parser.add_argument("--quick", action="store_true", help="small sizes, no recovery")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--recover", nargs=2, metavar=("URL", "ID"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recover:
        anyio.run(recover_here, *args.recover, backend=args.backend)
        return
    args.store_kinds = args.stores.split(",")
    names = args.only.split(",")
    if args.quick and "recovery" in names:
        names.remove("recovery")
    for given, known in ((args.store_kinds, {"memory", "sqlite", "postgres"}),
                         (names, set(SECTIONS))):
        unknown = set(given) - known
        if unknown:
            parser.error(f"unknown: {', '.join(sorted(unknown))}")
    common = {"backend": args.backend}

    tmp = tempfile.mkdtemp(prefix="dagflow-bench-")
    database = private = None
    try:
        if "postgres" in args.store_kinds:
            database, private = create_database(args.postgres)
        stores = Stores(tmp, private)

        async def run_all() -> None:
            for name in names:
                await SECTIONS[name](args, stores, common)

        anyio.run(run_all, backend=args.backend)
    finally:
        if database is not None:
            drop_database(args.postgres, database)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
