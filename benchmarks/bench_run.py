"""The engine's cost per task in memory, beside the bare-anyio limit measured in the same
process, on the same backend, in alternation with it.

Sections (``--only`` picks some):

  shapes  the shared workloads (benchmarks/workloads.py, the shapes other engines were
          measured with): wide 1,000 independent tasks, layered 20 levels x 50 (3
          dependencies each in the level before), chain 200 sequential tasks.
          Targets: engine/bare <= 2.5 for wide and layered, <= 3 for chain.
  scale   wide and layered at 1,000, 10,000 and 100,000 tasks (layered keeps 50 tasks
          per level and adds levels); ``growth`` is the cost per task over the cost per
          task at 1,000. Target: flat (growth about 1).
  sleep   60 tasks sleeping 10-200 ms in a random DAG with max_parallel_tasks 8:
          makespan over the ideal max(critical path, total work / 8); 1.0 is a perfect
          scheduler. The bare runner (FIFO, no priorities) is shown beside it.

Tasks are Plugin tasks whose handler returns at once; the bare runner (benchmarks/
_baseline.py) awaits the same handler by plain dependency counting in one task group.
Engine times are ``await engine.run(wf)`` (validation, DAG build, run, final load) in an
entered ``Engine(store="memory://")``; each figure is the best of ``--repeat`` runs, engine
and bare alternating (workflows of up to 1,000 tasks: 3x ``--repeat`` runs, they take
milliseconds). ``cpu engine/bare`` is the same ratio in CPU seconds of this process, which
other processes on a busy machine disturb less. No-op workflows use
``max_parallel_tasks`` ``--parallel`` (default 1,000); the bare runner keeps the same
bound.

Run::

    python benchmarks/bench_run.py [--backend asyncio|trio] [--repeat 3] [--quick]
                                   [--only shapes,scale,sleep] [--json]

``--quick`` measures scale at 1,000 and 10,000 tasks only.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

import anyio

import dagflow

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _baseline
import workloads
from _common import Table, definition, ratio, us_per_task

TARGETS = {"wide": 2.5, "layered": 2.5, "chain": 3.0}
SCALE_SIZES = (1_000, 10_000, 100_000)
SMALL, SMALL_REPEAT = 1_000, 3  # runs of milliseconds: more samples for the best of
PLUGINS = {"noop": _baseline.noop, "sleep": _baseline.sleep}


def shape(name: str, n: int) -> list[dict[str, Any]]:
    """The workload ``name`` with ``n`` tasks."""
    if name == "wide":
        return workloads.w1_wide(n)
    if name == "chain":
        return workloads.w2_chain(n)
    if name == "layered":
        return workloads.get("W3", n / 1000)  # 50 tasks per level, n / 50 levels
    raise ValueError(name)


async def engine_times(wf: dagflow.WorkflowDefinition, store: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``engine.run(wf)`` in a fresh, entered engine."""
    async with dagflow.Engine(store=store, plugins=PLUGINS) as engine:
        gc.collect()
        cpu, start = time.process_time(), time.perf_counter()
        instance = await engine.run(wf)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert instance.state == dagflow.WorkflowState.COMPLETED, (instance.state, instance.error)
    return took, cpu


async def compare(tasks: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Engine and bare on the same task list: best seconds and µs per task of each."""
    parallel = args.parallel
    wf = definition(tasks, config={"max_parallel_tasks": parallel, "timeout_seconds": 86_400})
    n = len(tasks)
    engine, bare, engine_cpu, bare_cpu = [], [], [], []
    for _ in range(args.repeat * (SMALL_REPEAT if n <= SMALL else 1)):
        wall, cpu = await engine_times(wf, args.store)
        engine.append(wall)
        engine_cpu.append(cpu)
        wall, cpu = await _baseline.bare_times(tasks, parallel)
        bare.append(wall)
        bare_cpu.append(cpu)
    e, b = min(engine), min(bare)
    return {"tasks": n, "engine_s": e, "bare_s": b,
            "engine_us": us_per_task(e, n), "bare_us": us_per_task(b, n),
            "ratio": ratio(e, b), "cpu_ratio": ratio(min(engine_cpu), min(bare_cpu)),
            "engine_cpu_us": us_per_task(min(engine_cpu), n),
            "bare_cpu_us": us_per_task(min(bare_cpu), n),
            "engine_tasks_per_s": n / e, "bare_tasks_per_s": n / b,
            "engine_samples_s": engine, "bare_samples_s": bare}


COLUMNS = [("workload", "workload", "{}"), ("tasks", "tasks", "{:,}"),
           ("engine_s", "engine s", "{:.4f}"), ("engine_us", "engine µs/task", "{:.1f}"),
           ("bare_us", "bare µs/task", "{:.1f}"), ("ratio", "engine/bare", "{:.2f}"),
           ("cpu_ratio", "cpu engine/bare", "{:.2f}")]


async def shapes(args: argparse.Namespace, common: dict[str, Any]) -> None:
    table = Table("bench_run", "shapes", "shapes: engine vs bare anyio, in memory",
                  [*COLUMNS, ("target", "target", "<= {}"), ("meets", "meets", "{}")],
                  as_json=args.json, common=common)
    for name, n in (("wide", 1000), ("layered", 1000), ("chain", 200)):
        result = await compare(shape(name, n), args)
        target = TARGETS[name]
        table.row(workload=name, target=target,
                  meets=result["ratio"] <= target, **result)


async def scale(args: argparse.Namespace, common: dict[str, Any]) -> None:
    table = Table("bench_run", "scale",
                  "scale: cost per task as the workflow grows, in memory",
                  [*COLUMNS, ("engine_growth", "engine growth", "{:.2f}"),
                   ("bare_growth", "bare growth", "{:.2f}")],
                  as_json=args.json, common=common)
    sizes = SCALE_SIZES[:2] if args.quick else SCALE_SIZES
    for name in ("wide", "layered"):
        first: dict[str, Any] | None = None
        for n in sizes:
            result = await compare(shape(name, n), args)
            first = first or result
            table.row(workload=name, engine_growth=result["engine_us"] / first["engine_us"],
                      bare_growth=result["bare_us"] / first["bare_us"], **result)
    table.note("growth: µs/task over µs/task at 1,000 tasks; target: flat (about 1.0)")


async def makespan(args: argparse.Namespace, common: dict[str, Any]) -> None:
    table = Table("bench_run", "sleep",
                  "sleep DAG makespan (60 tasks, 10-200 ms, max_parallel_tasks 8)",
                  [("workload", "workload", "{}"), ("tasks", "tasks", "{:,}"),
                   ("ideal_s", "ideal s", "{:.3f}"), ("engine_s", "engine s", "{:.3f}"),
                   ("engine_ratio", "engine/ideal", "{:.3f}"),
                   ("bare_s", "bare s", "{:.3f}"), ("bare_ratio", "bare/ideal", "{:.3f}")],
                  as_json=args.json, common=common)
    tasks = workloads.get("W4")
    limit = workloads.W4_PARALLELISM
    wf = definition(tasks, config={"max_parallel_tasks": limit, "timeout_seconds": 86_400})
    engine, bare = [], []
    for _ in range(args.repeat):
        engine.append((await engine_times(wf, args.store))[0])
        bare.append(await _baseline.bare_seconds(tasks, limit))
    ideal = max(workloads.critical_path_ms(tasks),
                -(-workloads.total_work_ms(tasks) // limit)) / 1000
    table.row(workload="sleep", tasks=len(tasks), ideal_s=ideal, engine_s=min(engine),
              engine_ratio=min(engine) / ideal, bare_s=min(bare), bare_ratio=min(bare) / ideal,
              engine_samples_s=engine, bare_samples_s=bare)


SECTIONS = {"shapes": shapes, "scale": scale, "sleep": makespan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="memory://")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=1000,
                        help="max_parallel_tasks of the no-op workflows (default 1000)")
    parser.add_argument("--only", default="shapes,scale,sleep",
                        help="sections to run, comma-separated (shapes, scale, sleep)")
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    names = args.only.split(",")
    unknown = set(names) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    common = {"backend": args.backend, "store": args.store, "parallel": args.parallel}

    async def run_all() -> None:
        for name in names:
            await SECTIONS[name](args, common)

    anyio.run(run_all, backend=args.backend)


if __name__ == "__main__":
    main()
