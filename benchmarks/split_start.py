"""Seconds per iteration of a split start's lone phase against plain VBPI (A = 1), in one
process, alternating rounds: DS5, K = 10, one thread; the lone phase of A = 5 under A2A and
S2A (it trains one component, whatever the estimator that follows the split).

    python -m benchmarks.split_start [--data DIR] [--dataset DS5] [--rounds 5] [--steps 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numba
import torch

from vbpi_mix.bench.datasets import alignment_path, find_data_dir, ufboot_paths
from vbpi_mix.inference.runs import ModelConfig, create_run
from vbpi_mix.inference.trainer import TrainingConfig
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.trees.support import build_support

# (label, components, estimator, subset)
SETTINGS = (("A=1", 1, "a2a", None), ("A=5 A2A, lone phase", 5, "a2a", None),
            ("A=5 S2A S=1, lone phase", 5, "s2a", 1))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding DS1..DS8")
    parser.add_argument("--dataset", default="DS5")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    data_dir = find_data_dir(args.data)
    if data_dir is None:
        raise SystemExit("DS1-DS8 data not found: pass --data DIR or set VBPI_MIX_DATA")
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    alignment = alignment_path(data_dir, args.dataset)
    taxa = load_alignment(alignment).taxa
    support = build_support(ufboot_paths(data_dir, args.dataset), taxa, progress=False)
    trainers = {}
    for label, components, estimator, subset in SETTINGS:
        training = TrainingConfig(iterations=10**6, estimator=estimator, subset=subset,
                                  split_at=10**6 - 1 if components > 1 else None)  # fmt: skip
        model = ModelConfig(alignment=str(alignment), components=components)
        trainers[label] = create_run(Path(tempfile.mkdtemp()), model, training, support).trainer
        trainers[label].step()  # compiles, or loads the compiled kernels
    times: dict[str, list[float]] = {label: [] for label in trainers}
    for _ in range(args.rounds):
        for label, trainer in trainers.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.step()
            times[label].append(1000 * (time.perf_counter() - start) / args.steps)
    single = statistics.median(times["A=1"])
    print(f"| {args.dataset}, 1 thread | ms per iteration (median of {args.rounds} rounds) | "
          "x A=1 |\n|---|---:|---:|")  # fmt: skip
    for label, values in times.items():
        median = statistics.median(values)
        print(f"| {label} | {median:.2f} ({min(values):.2f}-{max(values):.2f}) | "
              f"{median / single:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
