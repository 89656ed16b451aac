"""Durable runs: the wide workload on SQLite and PostgreSQL, and recovery of a big instance.

  wide 1,000 and 10,000 no-op tasks, every state change committed (tasks/s, and the
  10k/1k time ratio: about 10 means the cost per task does not grow with the number of
  finished tasks)
  recovery: a 10,000-task instance stopped with half its tasks done is recovered by a new
  engine; the time until it runs again (load, verify every row's checksum, rebuild) and
  until it completes

Run: ``python benchmarks/bench_durable.py [--stores sqlite,postgres] [--postgres URL]``
(PostgreSQL tables go to a throw-away schema that is dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

import dagflow

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def wide(n: int, parallel: int = 1000) -> dagflow.WorkflowDefinition:
    doc = {"id": f"wide-{n}", "config": {"max_parallel_tasks": parallel,
                                         "timeout_seconds": 86_400},
           "tasks": [{"id": t["id"], "type": {"type": "Plugin", "plugin_name": "noop"}}
                     for t in workloads.w1_wide(n)]}
    return dagflow.loads(json.dumps(doc), format="json")


async def noop(config: Any, ctx: Any) -> None:
    return None


async def throughput(url: str, n: int, repeat: int) -> float:
    best = float("inf")
    wf = wide(n)
    for _ in range(repeat):
        async with dagflow.Engine(store=url, plugins={"noop": noop}) as engine:
            await engine.list_workflows(dagflow.WorkflowFilters(limit=1))  # open the store
            start = time.perf_counter()
            instance = await engine.run(wf)
            best = min(best, time.perf_counter() - start)
        assert instance.state == dagflow.WorkflowState.COMPLETED, instance.error
    return best


async def recovery(url: str, n: int = 10_000) -> tuple[float, float]:
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

    wf = wide(n, parallel=n)
    async with dagflow.Engine(store=url, plugins={"noop": stall}) as first:
        instance = await first.create_workflow(wf)
        await first.start_workflow(instance.id)
        await half.wait()
        await anyio.sleep(0.5)  # let the completions commit
    # leaving the block stops the run the way a dying process would (state stays Running)
    result = await anyio.run_process(
        [sys.executable, __file__, "--recover", url, instance.id], check=True)
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


async def main(args: argparse.Namespace) -> None:
    targets: list[tuple[str, str, Any]] = []
    tmp = tempfile.mkdtemp(prefix="dagflow-bench-")
    for kind in args.stores.split(","):
        if kind == "sqlite":
            targets.append(("sqlite", f"sqlite:///{tmp}/bench.db", None))
        elif kind == "postgres":
            schema = f"dagflow_bench_{uuid.uuid4().hex[:8]}"
            targets.append(("postgres", f"{args.postgres}?schema={schema}", schema))
    try:
        for name, url, _ in targets:
            one = await throughput(url, 1000, args.repeat)
            ten = await throughput(url, 10_000, args.repeat)
            print(f"{name:8} wide  1,000: {one:6.3f}s {1000 / one:>9,.0f} tasks/s", flush=True)
            print(f"{name:8} wide 10,000: {ten:6.3f}s {10_000 / ten:>9,.0f} tasks/s"
                  f"   10k/1k time ratio {ten / one:.1f}", flush=True)
            running, completed = await recovery(url)
            print(f"{name:8} recovery of a 10,000-task instance (5,000 done): running again "
                  f"in {running:.3f}s, completed in {completed:.3f}s", flush=True)
    finally:
        for _, _, schema in targets:
            if schema:
                import psycopg

                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--postgres", default=os.environ.get("DAGFLOW_TEST_POSTGRES",
                                                             PG_DEFAULT))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--recover", nargs=2, metavar=("URL", "ID"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.recover:
        anyio.run(recover_here, *arguments.recover)
    else:
        anyio.run(main, arguments)
