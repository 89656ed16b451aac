"""``dagflow run`` of a one-task workflow as a whole process, beside a bare anyio process
that runs the same command.

Cases, each a fresh process timed from spawn to exit (wall clock):

  python -c pass        the interpreter alone (for reference)
  bare anyio            ``python -c "import anyio; anyio.run(anyio.run_process, ['true'])"``
  dagflow run memory    ``dagflow run wf.yaml --store memory://``
  dagflow run sqlite    ``dagflow run wf.yaml --store sqlite:///<tmp>/dagflow.db`` (one file
                        for all the runs, as the CLI's default store is)

``wf.yaml`` holds one Command task running ``true``. Every case runs once untimed first
(disk caches, bytecode, the SQLite tables), then the cases take turns, ``--repeat`` times
each; the table shows the best and the median, and dagflow over bare anyio for both.
Target: <= 2.

Run::

    python benchmarks/bench_cli.py [--repeat 15] [--dagflow PATH] [--json]

``python`` is the interpreter running this script (use the project's venv); ``dagflow``
is the console script next to it unless ``--dagflow`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Table, median, ratio

WORKFLOW = """\
id: one-command
tasks:
  - id: t
    type: {type: Command, command: "true"}
"""
BARE = "import anyio; anyio.run(anyio.run_process, ['true'])"
TARGET = 2.0


def once(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    """Wall seconds of one process, spawn to exit (it must exit 0)."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n"
                         f"{done.stderr.decode(errors='replace')}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15, help="timed runs of each case")
    parser.add_argument("--dagflow", default=str(Path(sys.executable).parent / "dagflow"),
                        help="the dagflow executable (default: next to this Python)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGFLOW_")}
    with tempfile.TemporaryDirectory(prefix="dagflow-bench-cli-") as tmp:
        wf = Path(tmp, "wf.yaml")
        wf.write_text(WORKFLOW)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "bare anyio": [sys.executable, "-c", BARE],
            "dagflow run memory": [args.dagflow, "run", str(wf), "--store", "memory://"],
            "dagflow run sqlite": [args.dagflow, "run", str(wf),
                                   "--store", f"sqlite:///{tmp}/dagflow.db"],
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for argv in cases.values():
            once(argv, tmp, env)  # untimed
        for _ in range(args.repeat):
            for name, argv in cases.items():
                samples[name].append(once(argv, tmp, env))

    table = Table("bench_cli", "cli", "one-task workflow as a whole process",
                  [("case", "case", "{}"), ("best_s", "best s", "{:.3f}"),
                   ("median_s", "median s", "{:.3f}"),
                   ("best_ratio", "best / bare", "{:.2f}"),
                   ("median_ratio", "median / bare", "{:.2f}"),
                   ("meets", "meets (<= 2)", "{}")],
                  as_json=args.json, common={"runs": args.repeat},
                  widths={"case": max(map(len, samples))})
    bare_best, bare_median = min(samples["bare anyio"]), median(samples["bare anyio"])
    for name, times in samples.items():
        best, middle = min(times), median(times)
        dagflow = name.startswith("dagflow")
        table.row(case=name, best_s=best, median_s=middle,
                  best_ratio=ratio(best, bare_best), median_ratio=ratio(middle, bare_median),
                  meets=ratio(middle, bare_median) <= TARGET if dagflow else None,
                  target=TARGET if dagflow else None, samples_s=times)
    table.note("meets: median / bare <= 2")


if __name__ == "__main__":
    main()
