"""Load + validate + DAG build for random DAGs of 1k, 10k and 100k tasks (3 deps each).

Run: ``python benchmarks/bench_load.py`` (add ``--sizes 1000,10000`` to pick sizes,
``--repeat N`` for more samples). Prints one line per (format, size) with the best time
of the repeats, and the 100k/10k ratio for each format (linear scaling gives about 10).
"""

from __future__ import annotations

import argparse
import json
import random
import time

import dagflow

LIMITS = dagflow.ParseLimits(max_bytes=256 * 1024 * 1024, max_tasks=1_000_000)


def random_dag(n: int, deps: int = 3, seed: int = 7) -> dict[str, object]:
    """``n`` tasks; each after the first few depends on ``deps`` random earlier tasks."""
    rng = random.Random(seed)
    tasks: list[dict[str, object]] = []
    for i in range(n):
        task: dict[str, object] = {
            "id": f"t{i:06d}",
            "type": {"type": "Command", "command": "true", "args": [str(i)]},
        }
        if i >= deps:
            task["depends_on"] = [f"t{j:06d}" for j in sorted(rng.sample(range(i), deps))]
        tasks.append(task)
    return {"id": f"random-{n}", "tasks": tasks}


def to_yaml(doc: dict[str, object]) -> str:
    """Block-style YAML, the way people write workflow files."""
    lines = [f"id: {doc['id']}", "tasks:"]
    for task in doc["tasks"]:  # type: ignore[attr-defined]
        lines.append(f"  - id: {task['id']}")
        kind = task["type"]
        lines.append("    type:")
        lines.append(f"      type: {kind['type']}")
        lines.append(f"      command: \"{kind['command']}\"")
        lines.append(f"      args: [\"{kind['args'][0]}\"]")
        if "depends_on" in task:
            lines.append(f"    depends_on: [{', '.join(task['depends_on'])}]")
    return "\n".join(lines) + "\n"


def measure(text: str, fmt: str, repeat: int) -> float:
    best = float("inf")
    builder = dagflow.DefaultDagBuilder()
    for _ in range(repeat):
        start = time.perf_counter()
        wf = dagflow.loads(text, format=fmt, limits=LIMITS)  # type: ignore[arg-type]
        builder.build_dag(wf)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default="json,yaml")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], float] = {}
    for fmt in args.formats.split(","):
        for n in sizes:
            doc = random_dag(n)
            text = json.dumps(doc) if fmt == "json" else to_yaml(doc)
            seconds = measure(text, fmt, args.repeat if n < 100_000 else max(1, args.repeat - 1))
            results[fmt, n] = seconds
            print(f"{fmt:4} {n:>7} tasks  {len(text) / 1e6:6.2f} MB  {seconds:7.3f} s  "
                  f"{n / seconds:>9,.0f} tasks/s", flush=True)
        if (fmt, 10_000) in results and (fmt, 100_000) in results:
            ratio = results[fmt, 100_000] / results[fmt, 10_000]
            print(f"{fmt:4} 100k/10k time ratio: {ratio:.1f}")


if __name__ == "__main__":
    main()
