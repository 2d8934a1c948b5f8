"""Peak resident memory of training: each setting runs in a fresh process (data set, A, K,
estimator), loads the data, builds the support and trains a few iterations; the table gives
the process's peak RSS (ru_maxrss) after loading and after training.

    python -m benchmarks.memory [--data DIR] [--datasets DS8] [--components 10] [--iterations 5]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import benchmark_arguments, start

SETTINGS = (("a2a", None), ("s2a", 1), ("s2s", 1))


def peak_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def child(data_dir: str, dataset: str, components: int, estimator: str, subset, n: int) -> None:
    """Runs inside the fresh process; prints one JSON line."""
    from vbpi_mix.bench.datasets import alignment_path, ufboot_paths
    from vbpi_mix.inference.runs import ModelConfig, create_run
    from vbpi_mix.inference.trainer import TrainingConfig
    from vbpi_mix.phylo.alignment import load_alignment
    from vbpi_mix.trees.support import build_support

    fasta = alignment_path(Path(data_dir), dataset)
    support = build_support(
        ufboot_paths(Path(data_dir), dataset), load_alignment(fasta).taxa, progress=False
    )
    model = ModelConfig(alignment=str(fasta), components=components)
    training = TrainingConfig(iterations=n, estimator=estimator, subset=subset, particles=10)
    with tempfile.TemporaryDirectory() as folder:
        run = create_run(Path(folder), model, training, support)
        loaded = peak_megabytes()
        run.trainer.run(progress=False)
    print(json.dumps({"loaded": loaded, "trained": peak_megabytes()}))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        data_dir, dataset, a, estimator, subset, n = sys.argv[2:]
        child(data_dir, dataset, int(a), estimator, None if subset == "-" else int(subset), int(n))
        return
    parser = benchmark_arguments(__doc__.split("\n")[0])
    parser.set_defaults(datasets=["DS8"])
    parser.add_argument("--components", type=int, nargs="+", default=[10])
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    data_dir = start(args, "peak resident memory (MB), K=10, VIMCO, PSP")
    print("| data | A | estimator | after loading | after training |")
    print("|---|---:|---|---:|---:|")
    for dataset in args.datasets:
        for components in args.components:
            for estimator, subset in SETTINGS:
                if subset is not None and subset >= components:
                    continue
                command = [sys.executable, "-m", "benchmarks.memory", "--child", str(data_dir),
                           dataset, str(components), estimator, str(subset or "-"),
                           str(args.iterations)]  # fmt: skip
                output = subprocess.run(command, capture_output=True, text=True, check=True)
                peaks = json.loads(output.stdout.strip().splitlines()[-1])
                label = estimator.upper() + (f" S={subset}" if subset else "")
                print(f"| {dataset} | {components} | {label} | {peaks['loaded']:.0f} | "
                      f"{peaks['trained']:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
