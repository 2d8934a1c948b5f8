"""Wall clock of one small DS1 bench grid under the local executor (the settings one after
another in one process, threads tuned while training) and under Ray with 2 single-CPU
workers (`--executor ray --cpus-per-run 1` on a 2-core machine: two settings at a time), one
after the other; per setting, the training seconds per iteration of each (its result.json).

    python -m benchmarks.executors [--data DIR] [--iterations 5000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from vbpi_mix.bench.datasets import find_data_dir

GRID = ["--components", "1", "2", "--subset", "1"]  # A=1; A=2 under A2A, S2A and S2S
EXECUTORS = {"local": [], "Ray, 2 x 1 CPU": ["--executor", "ray", "--cpus-per-run", "1"]}


def run_grid(data_dir: Path, out: Path, iterations: int, options: list[str]) -> float:
    """Wall-clock seconds of one `vbpi-mix bench` of the grid into `out`."""
    command = [
        sys.executable,
        "-m",
        "vbpi_mix.cli",
        "bench",
        "DS1",
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--iterations",
        str(iterations),
        "--quiet",
        *GRID,
        *options,
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def milliseconds_per_iteration(out: Path) -> dict[str, float]:
    return {
        path.parent.name: 1000 * json.loads(path.read_text())["summary"]["seconds_per_iteration"]
        for path in sorted((out / "DS1").glob("*/result.json"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding DS1..DS8")
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--out", help="bench folders (default: a temporary folder)")
    args = parser.parse_args()
    data_dir = find_data_dir(args.data)
    if data_dir is None:
        raise SystemExit("DS1-DS8 data not found: pass --data DIR or set VBPI_MIX_DATA")
    root = Path(args.out or tempfile.mkdtemp(prefix="executors-"))
    walls, rates = {}, {}
    for label, options in EXECUTORS.items():
        out = root / label.split(",")[0].lower()
        walls[label] = run_grid(data_dir, out, args.iterations, options)
        rates[label] = milliseconds_per_iteration(out)
    print(f"# bench executors, DS1, {args.iterations} iterations per setting, {date.today()}, "
          f"{platform.machine()}, {os.cpu_count()} cores\n")  # fmt: skip
    print("| setting | " + " | ".join(f"{label}: ms per iteration" for label in EXECUTORS) + " |")
    print("|---|" + "---:|" * len(EXECUTORS))
    for name in rates["local"]:
        print(f"| {name} | " + " | ".join(f"{rates[x].get(name, 0):.2f}" for x in EXECUTORS) + " |")
    print("| **wall clock of the grid, s** | "
          + " | ".join(f"{walls[label]:.0f}" for label in EXECUTORS) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
