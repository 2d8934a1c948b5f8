"""Seconds per training iteration of `vbpi-mix fit` on DS1 when fits share the machine: one
fit alone, two side by side, and one beside a load that keeps every core busy; with the
default threads (tuned while training, vbpi_mix.threads) and with `--threads` fixed at every
core or at one. All cells come from one run.

Each fit is a real `vbpi-mix fit` process; its time per iteration is the median over the
middle 60% of training of the per-10-iteration times in its metrics.jsonl (the fits of a
pair start together and overlap there). Each cell is the median over `--repeats` rounds.

    python -m benchmarks.threads [--data DIR] [--iterations 3000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from vbpi_mix.bench.datasets import alignment_path, find_data_dir

BUSY_LOOP = "while True: pass"
# (label, components, estimator): the fits of the table
SETTINGS = (("DS1 A=1", 1, "a2a"), ("DS1 A2A A=10", 10, "a2a"))
THREADS = (("default (tuned)", []), ("--threads every core", ["--threads", str(os.cpu_count())]),
           ("--threads 1", ["--threads", "1"]))  # fmt: skip
SCENARIOS = ("alone", "two side by side", "beside a busy load")


def fit_command(data_dir: Path, out: Path, components: int, estimator: str, iterations: int):
    alignment = alignment_path(data_dir, "DS1")
    return [
        sys.executable, "-m", "vbpi_mix.cli", "fit", str(alignment),
        "--support-dir", str(alignment.parent / "ufboot"), "--out", str(out),
        "--components", str(components), "--estimator", estimator,
        "--iterations", str(iterations), "--warmup", str(iterations), "--eval-every", "0",
        "--eval-repeats", "1", "--eval-particles", "100", "--quiet",
    ]  # fmt: skip


def seconds_per_iteration(run_dir: Path) -> float:
    """Median seconds per iteration over the middle 60% of a finished fit's training."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [r for r in map(json.loads, lines) if "seconds_per_iteration" in r]
    middle = records[len(records) // 5 : 4 * len(records) // 5]
    steps = [
        (b["seconds"] - a["seconds"]) / (b["iteration"] - a["iteration"])
        for a, b in zip(middle, middle[1:], strict=False)
    ]
    return statistics.median(steps)


def run_scenario(commands: list[list[str]], busy: bool) -> None:
    """Run the fits together (and two busy loops beside them), wait for the fits."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(2 * busy)]
    try:
        fits = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in commands]
        if any(fit.wait() != 0 for fit in fits):
            raise SystemExit("a fit failed: " + " ".join(commands[0]))
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def measure(data_dir: Path, args: argparse.Namespace) -> dict[tuple[str, str, str], list[float]]:
    """{(setting, threads, scenario): [seconds per iteration, one per fit and round]}."""
    cells: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.repeats):
        for label, components, estimator in SETTINGS:
            iterations = args.iterations if components == 1 else args.iterations // 3
            for threads, options in THREADS:
                for scenario in SCENARIOS:
                    n_fits = 2 if scenario == "two side by side" else 1
                    with tempfile.TemporaryDirectory() as folder:
                        outs = [Path(folder) / f"fit{i}" for i in range(n_fits)]
                        commands = [
                            fit_command(data_dir, out, components, estimator, iterations) + options
                            for out in outs
                        ]
                        run_scenario(commands, busy=scenario == "beside a busy load")
                        values = [seconds_per_iteration(out) for out in outs]
                    cells.setdefault((label, threads, scenario), []).extend(values)
    return cells


def print_table(cells: dict[tuple[str, str, str], list[float]]) -> None:
    print("| fit | threads | " + " | ".join(SCENARIOS) + " | side by side / alone "
          "| busy / alone |")  # fmt: skip
    print("|---|---|" + "---:|" * (len(SCENARIOS) + 2))
    for label, _, _ in SETTINGS:
        for threads, _ in THREADS:
            ms = [1000 * statistics.median(cells[label, threads, s]) for s in SCENARIOS]
            pair = " / ".join(f"{1000 * v:.2f}" for v in cells[label, threads, SCENARIOS[1]])
            print(
                f"| {label} | {threads} | {ms[0]:.2f} | {ms[1]:.2f} ({pair}) | {ms[2]:.2f} "
                f"| {ms[1] / ms[0]:.2f} | {ms[2] / ms[0]:.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder holding DS1..DS8")
    parser.add_argument("--iterations", type=int, default=3000, help="per A=1 fit (A=10: a third)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data_dir = find_data_dir(args.data)
    if data_dir is None:
        raise SystemExit("DS1-DS8 data not found: pass --data DIR or set VBPI_MIX_DATA")
    print(
        f"# milliseconds per training iteration, DS1, K=10, {date.today()}, "
        f"{platform.machine()}, {os.cpu_count()} cores"
    )
    print()
    print_table(measure(data_dir, args))


if __name__ == "__main__":
    main()
