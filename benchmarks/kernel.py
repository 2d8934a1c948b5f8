"""Likelihood-kernel benchmark: batched kernel vs one-tree-at-a-time recursion, side by side.

For DS1 and DS8 (found via --data, $VBPI_MIX_DATA or ../shared/datasets), UFBoot topologies
with random branch lengths, batch sizes 1, 10, 100, 1000: forward and forward + backward,
milliseconds per batch and per tree, and the speed-up over the per-tree recursive baseline
(`vbpi_mix.phylo.reference_pruning`, autograd through a node-by-node pass), all in one run.

    python -m benchmarks.kernel [--data DIR] [--threads 2] [--datasets DS1 DS8]
        [--likelihood-device cpu|cuda]  # the baseline always runs on the CPU
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks.common import benchmark_arguments, start
from vbpi_mix.bench.datasets import alignment_path, ufboot_paths
from vbpi_mix.command_options import add_likelihood_device
from vbpi_mix.io.tree_files import read_tree_file
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.phylo.likelihood import TreeLikelihood
from vbpi_mix.phylo.models import JC69
from vbpi_mix.phylo.reference_pruning import reference_log_likelihood
from vbpi_mix.trees.conversions import topology_from_dendropy

BATCH_SIZES = (1, 10, 100, 1000)
BASELINE_TREES = 5  # the recursive baseline is timed on this many trees, then per tree


def seconds_per_call(function: Callable[[], object], min_seconds: float = 0.5) -> float:
    """Median-free simple timer: one warm-up, then repeat until `min_seconds` have passed."""
    function()
    calls, start = 0, time.perf_counter()
    while True:
        function()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and calls >= 2:
            return elapsed / calls


def benchmark_dataset(data_dir, name: str, device: str = "cpu") -> list[tuple]:
    alignment = load_alignment(alignment_path(data_dir, name))
    trees = read_tree_file(ufboot_paths(data_dir, name)[0])[: max(BATCH_SIZES)]
    parents = np.stack([topology_from_dendropy(t, alignment.taxa)[0].parents for t in trees])
    rng = np.random.default_rng(0)
    lengths = torch.as_tensor(rng.exponential(0.1, parents.shape) + 1e-3)
    model = JC69()
    likelihood = TreeLikelihood(alignment, model, device)

    def baseline(backward: bool) -> float:
        def run() -> None:
            for b in range(BASELINE_TREES):
                bl = lengths[b].clone().requires_grad_(backward)
                value = reference_log_likelihood(alignment, model, parents[b], bl)
                if backward:
                    value.backward()

        with torch.set_grad_enabled(backward):
            return seconds_per_call(run) / BASELINE_TREES

    base_forward, base_backward = baseline(False), baseline(True)
    rows = []
    for batch in BATCH_SIZES:
        p, bl = parents[:batch], lengths[:batch]

        def forward(p=p, bl=bl) -> None:
            with torch.no_grad():
                likelihood(p, bl)

        def forward_backward(p=p, bl=bl) -> None:
            branch = bl.clone().requires_grad_()
            likelihood(p, branch).sum().backward()

        for label, function, base in (
            ("forward", forward, base_forward),
            ("forward+backward", forward_backward, base_backward),
        ):
            per_batch = seconds_per_call(function)
            per_tree = per_batch / batch
            rows.append((name, alignment.n_patterns, batch, label, per_batch * 1e3,
                         per_tree * 1e3, base * 1e3, base / per_tree))  # fmt: skip
    return rows


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n")[0])
    add_likelihood_device(parser)
    args = parser.parse_args()
    data_dir = start(args, f"kernel benchmark (JC69, float64), kernel on {args.likelihood_device}")
    print("| data | patterns | batch | pass | ms/batch | ms/tree | baseline ms/tree | speed-up |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for name in args.datasets:
        for row in benchmark_dataset(data_dir, name, args.likelihood_device):
            print("| {} | {} | {} | {} | {:.2f} | {:.3f} | {:.2f} | {:.0f}x |".format(*row))


if __name__ == "__main__":
    main()
