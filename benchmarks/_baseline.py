"""The bare-anyio limit: a task list run by plain dependency counting, no engine.

Given the same task list the engine gets (``workloads.py`` dicts: ``id``, ``deps``), it
runs every task in one task group: a counter of unfinished dependencies per task; a task
that finishes decrements its children's counters and ``start_soon``s those that reach
zero. Each task awaits the same no-op coroutine a Plugin task's handler is, called with the
same arguments shape ``(config, ctx)``. (A task with ``sleep_ms`` awaits the ``sleep``
handler with ``{"ms": sleep_ms}`` instead, as in the engine's workflows.)

With ``max_parallel`` set, at most that many run at once: ready tasks wait in a FIFO and
a finishing task starts the next ones (slot counting, like the engine's
``max_parallel_tasks``). Not a ``CapacityLimiter``: starting every ready task and parking
it on a limiter costs 2-3x more per task at 10,000 tasks and up (thousands of parked
coroutines), so it would not be a floor.

It is what any scheduler built on anyio pays at least per task on this machine and
backend, so ``engine / bare`` is the engine's own overhead factor. Timings include
building the counters from the task list, as the engine's include building its DAG.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

Task = dict[str, Any]  # {"id": str, "deps": [str, ...], "sleep_ms": int}
Handler = Callable[[Any, Any], Awaitable[Any]]

NO_CONFIG: dict[str, Any] = {}  # a Plugin task without ``config`` gets an empty mapping


async def noop(config: Any, ctx: Any) -> None:
    """The Plugin handler of every no-op task, engine and bare alike."""
    return None


async def sleep(config: Any, ctx: Any) -> None:
    """The Plugin handler of the sleeping tasks (``config["ms"]`` milliseconds)."""
    await anyio.sleep(config["ms"] / 1000)


async def run_bare(tasks: Sequence[Task], max_parallel: int | None = None,
                   handler: Handler = noop) -> None:
    """Run ``tasks`` to the end by dependency counting (see the module docstring)."""
    index = {task["id"]: i for i, task in enumerate(tasks)}
    children: list[list[int]] = [[] for _ in tasks]
    waiting = [len(task["deps"]) for task in tasks]
    for i, task in enumerate(tasks):
        for dep in task["deps"]:
            children[index[dep]].append(i)
    ids = [task["id"] for task in tasks]
    calls = [(sleep, {"ms": task["sleep_ms"]}) if task.get("sleep_ms") else (handler, NO_CONFIG)
             for task in tasks]
    slots = max_parallel or len(tasks)
    ready = deque(i for i, count in enumerate(waiting) if not count)
    running = 0

    async with anyio.create_task_group() as tg:

        async def one(i: int) -> None:
            nonlocal running
            function, config = calls[i]
            await function(config, ids[i])
            running -= 1
            for c in children[i]:
                waiting[c] -= 1
                if not waiting[c]:
                    ready.append(c)
            while ready and running < slots:
                running += 1
                tg.start_soon(one, ready.popleft())

        while ready and running < slots:
            running += 1
            tg.start_soon(one, ready.popleft())


async def bare_times(tasks: Sequence[Task], max_parallel: int | None = None
                     ) -> tuple[float, float]:
    """Wall and CPU seconds of one :func:`run_bare` (after a full garbage collection)."""
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    await run_bare(tasks, max_parallel)
    return time.perf_counter() - start, time.process_time() - cpu


async def bare_seconds(tasks: Sequence[Task], max_parallel: int | None = None) -> float:
    """Wall seconds of one :func:`run_bare` (after a full garbage collection)."""
    return (await bare_times(tasks, max_parallel))[0]


async def bare_runs_seconds(tasks: Sequence[Task], runs: int,
                            max_parallel: int | None = None) -> float:
    """Wall seconds of ``runs`` concurrent :func:`run_bare` of the same task list."""
    gc.collect()
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(runs):
            tg.start_soon(run_bare, tasks, max_parallel)
    return time.perf_counter() - start
