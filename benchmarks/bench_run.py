"""Run the standard workloads through the engine and report throughput and makespan.

Workloads (benchmarks/workloads.py, the same shapes used to measure other engines):
  wide     1,000 independent no-op tasks
  chain    200 sequential no-op tasks
  layered  20 levels x 50 tasks, each with 3 dependencies in the level before
  sleep    60 tasks sleeping 10-200 ms in a random DAG, max_parallel_tasks 8

No-op tasks are Plugin tasks whose handler returns at once, so the numbers measure the
engine itself. ``makespan ratio`` is the run's wall time over the ideal
max(critical path, total work / 8); 1.0 is a perfect scheduler.

Run: ``python benchmarks/bench_run.py [--store memory://] [--backend asyncio|trio]
[--repeat 3] [--parallel N]`` (``--parallel`` sets max_parallel_tasks for the no-op
workloads; default 1000, i.e. unbounded; the seed's default is 10).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio

import dagflow

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads

NAMES = {"wide": "W1", "chain": "W2", "layered": "W3", "sleep": "W4"}


def definition(tasks: list[dict[str, Any]], parallel: int) -> dagflow.WorkflowDefinition:
    """The workload as a workflow: no-op Plugin tasks, or sleeping ones."""
    doc: dict[str, Any] = {"id": "bench", "config": {"max_parallel_tasks": parallel,
                                                     "timeout_seconds": 86_400}, "tasks": []}
    for task in tasks:
        entry: dict[str, Any] = {"id": task["id"], "type": {
            "type": "Plugin", "plugin_name": "sleep" if task["sleep_ms"] else "noop",
            **({"config": {"ms": task["sleep_ms"]}} if task["sleep_ms"] else {})}}
        if task["deps"]:
            entry["depends_on"] = task["deps"]
        doc["tasks"].append(entry)
    return dagflow.loads(json.dumps(doc), format="json")


async def noop(config: Any, ctx: Any) -> None:
    return None


async def sleep(config: Any, ctx: Any) -> None:
    await anyio.sleep(config["ms"] / 1000)


async def measure(name: str, store: str, repeat: int, parallel: int) -> dict[str, Any]:
    tasks = workloads.get(NAMES[name])
    limit = workloads.W4_PARALLELISM if name == "sleep" else parallel
    wf = definition(tasks, limit)
    best = float("inf")
    for _ in range(repeat):
        async with dagflow.Engine(store=store, plugins={"noop": noop, "sleep": sleep}) as engine:
            start = time.perf_counter()
            instance = await engine.run(wf)
            took = time.perf_counter() - start
        assert instance.state == dagflow.WorkflowState.COMPLETED, instance.error
        best = min(best, took)
    result = {"workload": name, "tasks": len(tasks), "seconds": round(best, 4),
              "tasks_per_second": round(len(tasks) / best)}
    if name == "sleep":
        ideal = max(workloads.critical_path_ms(tasks),
                    -(-workloads.total_work_ms(tasks) // limit)) / 1000
        result["ideal_seconds"] = ideal
        result["makespan_ratio"] = round(best / ideal, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="memory://")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=1000)
    parser.add_argument("--workloads", default="wide,chain,layered,sleep")
    args = parser.parse_args()

    async def run_all() -> None:
        for name in args.workloads.split(","):
            result = await measure(name, args.store, args.repeat, args.parallel)
            extra = (f"  makespan {result['seconds']:.3f}s / ideal {result['ideal_seconds']:.3f}s"
                     f" = {result['makespan_ratio']}" if "makespan_ratio" in result else "")
            print(f"{args.backend:7} {args.store:12} {name:8} {result['tasks']:5} tasks "
                  f"{result['seconds']:7.3f}s {result['tasks_per_second']:>8,} tasks/s{extra}",
                  flush=True)

    anyio.run(run_all, backend=args.backend)


if __name__ == "__main__":
    main()
