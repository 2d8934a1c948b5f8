"""Seconds per training iteration on DS1 (or --datasets) for A components x estimator (A2A,
S2A, S2S), K=10: the cost that S2A/S2S are meant to cut (Hotti et al. 2024), all settings in
one run.

Each cell is the median of `--repeats` timings taken in rounds over the whole table, so that
a slow spell of the machine touches one round of every cell rather than a few cells.

    python -m benchmarks.iteration [--data DIR] [--datasets DS1 ...] [--components 1 2 5 10 20]
        [--iterations 10] [--repeats 3] [--likelihood-device cpu|cuda]
        [--plot benchmarks/results/iteration]  # PNG and PDF
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import benchmark_arguments, start
from vbpi_mix.bench.datasets import alignment_path, ufboot_paths
from vbpi_mix.bench.plots import plot_seconds_against_components
from vbpi_mix.command_options import add_likelihood_device
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.inference.runs import ModelConfig, create_run
from vbpi_mix.inference.trainer import TrainingConfig
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.trees.support import build_support

SETTINGS = (("a2a", None), ("s2a", 1), ("s2a", 2), ("s2s", 1), ("s2s", 2))
WARMUP = 3


def seconds_per_iteration(
    fasta: Path, support, components: int, estimator: str, subset, n: int, device: str = "cpu"
):
    model = ModelConfig(alignment=str(fasta), components=components)
    training = TrainingConfig(
        iterations=WARMUP + n, estimator=estimator, subset=subset, checkpoint_every=10**9
    )
    return time_steps(model, training, support, n, device)


def time_model(fasta: Path, support, substitution: dict, n: int) -> float:
    """Seconds per A = 1 iteration under the substitution model's ModelConfig fields."""
    model = ModelConfig(alignment=str(fasta), **substitution)
    training = TrainingConfig(iterations=WARMUP + n, checkpoint_every=10**9)
    return time_steps(model, training, support, n)


def time_steps(
    model: ModelConfig, training: TrainingConfig, support, n: int, device: str = "cpu"
) -> float:
    """Seconds per iteration: the mean of n steps after WARMUP untimed ones."""
    with tempfile.TemporaryDirectory() as folder:
        trainer = create_run(Path(folder), model, training, support, device).trainer
        for _ in range(WARMUP):
            trainer.step()
        begin = time.perf_counter()
        for _ in range(n):
            trainer.step()
        return (time.perf_counter() - begin) / n


def time_table(data_dir: Path, dataset: str, args) -> dict[str, list[tuple[int, float]]]:
    """Print the dataset's table (A down, estimator settings across) and return each
    setting's (A, seconds) series."""
    fasta = alignment_path(data_dir, dataset)
    support = build_support(
        ufboot_paths(data_dir, dataset), load_alignment(fasta).taxa, progress=False
    )
    labels = [f"{name.upper()}" + (f" S={s}" if s else "") for name, s in SETTINGS]
    timings: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.repeats):
        for components in args.components:
            for label, (estimator, subset) in zip(labels, SETTINGS, strict=True):
                try:
                    value = seconds_per_iteration(
                        fasta, support, components, estimator, subset, args.iterations,
                        args.likelihood_device,
                    )  # fmt: skip
                except VbpiMixError:  # e.g. S > A, or S2S with S = A (that is A2A)
                    continue
                timings.setdefault((components, label), []).append(value)
    print(f"{dataset}\n\n| A | " + " | ".join(labels) + " |")
    print("|---:|" + "---:|" * len(labels))
    series: dict[str, list[tuple[int, float]]] = {label: [] for label in labels}
    for components in args.components:
        cells = []
        for label in labels:
            if (components, label) not in timings:
                cells.append("-")
                continue
            value = statistics.median(timings[components, label])
            cells.append(f"{value:.4f}")
            series[label].append((components, value))
        print(f"| {components} | " + " | ".join(cells) + " |", flush=True)
    print()
    return series


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n")[0])
    parser.set_defaults(datasets=["DS1"])
    parser.add_argument("--components", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; cells give the median")
    add_likelihood_device(parser)
    parser.add_argument(
        "--plot", type=Path, metavar="STEM",
        help="write STEM.png and STEM.pdf (STEM_DSn.* for each of several datasets)",
    )  # fmt: skip
    args = parser.parse_args()
    data_dir = start(
        args, f"seconds per iteration, K=10, VIMCO, PSP, likelihood on {args.likelihood_device}"
    )
    for dataset in args.datasets:
        series = time_table(data_dir, dataset, args)
        if args.plot:
            stem = args.plot if len(args.datasets) == 1 else Path(f"{args.plot}_{dataset}")
            device = ", likelihood on the GPU" if args.likelihood_device == "cuda" else ""
            plot_seconds_against_components(
                series, stem, f"{dataset}, K=10, {args.threads} threads{device}"
            )


if __name__ == "__main__":
    main()
