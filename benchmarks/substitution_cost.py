"""Milliseconds per training iteration (A = 1, K = 10) under each substitution model, with
its free parameters fixed or inferred, against JC69: what inferring the model costs.

Each cell is the median over `--repeats` rounds that time every row in turn.

    python -m benchmarks.substitution_cost [--data DIR] [--datasets DS1] [--iterations 30]
"""

from __future__ import annotations

import statistics

from benchmarks.common import benchmark_arguments, start
from benchmarks.iteration import time_model
from vbpi_mix.bench.datasets import alignment_path, ufboot_paths
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.trees.support import build_support

# (row label, ModelConfig substitution fields)
ROWS = (
    ("JC69", {}),
    ("JC69+G4, alpha inferred", {"gamma_categories": 4}),
    ("JC69+G4, alpha fixed", {"gamma_categories": 4, "alpha": 0.5}),
    ("HKY+G4, all inferred", {"substitution_model": "HKY", "gamma_categories": 4}),
    ("GTR+G4, all inferred", {"substitution_model": "GTR", "gamma_categories": 4}),
    (
        "GTR+G4, all fixed",
        {
            "substitution_model": "GTR",
            "gamma_categories": 4,
            "alpha": 0.5,
            "rates": [1.0, 2.0, 1.0, 1.0, 2.0, 1.0],
            "frequencies": "empirical",
        },
    ),  # fmt: skip
)


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.set_defaults(datasets=["DS1"])
    args = parser.parse_args()
    data_dir = start(args, "ms per iteration by substitution model, A=1, K=10")
    for dataset in args.datasets:
        fasta = alignment_path(data_dir, dataset)
        support = build_support(
            ufboot_paths(data_dir, dataset), load_alignment(fasta).taxa, progress=False
        )
        timings: dict[str, list[float]] = {label: [] for label, _ in ROWS}
        for _ in range(args.repeats):
            for label, fields in ROWS:
                timings[label].append(time_model(fasta, support, fields, args.iterations))
        base = statistics.median(timings["JC69"])
        print(f"{dataset}\n\n| model | ms / iteration | x JC69 |\n|---|---:|---:|")
        for label, values in timings.items():
            value = statistics.median(values)
            print(f"| {label} | {1000 * value:.2f} | {value / base:.2f} |")
        print()


if __name__ == "__main__":
    main()
