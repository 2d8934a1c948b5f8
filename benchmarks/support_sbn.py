"""Support and SBN benchmark: building the support from all UFBoot trees, then sampling and
scoring topologies, on DS1 and DS8 (found via --data, $VBPI_MIX_DATA or ../shared/datasets).

    python -m benchmarks.support_sbn [--data DIR] [--datasets DS1 DS8] [--particles 1000]
"""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.common import benchmark_arguments, start
from vbpi_mix.bench.datasets import alignment_path, ufboot_paths
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.trees.subsplits import build_subsplit_index
from vbpi_mix.trees.support import build_support
from vbpi_mix.variational.sbn import SBN


def timed(function, *args, **kwargs):
    """Call once; return the result and the seconds it took."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n")[0])
    parser.add_argument("--particles", type=int, default=1000)
    args = parser.parse_args()
    data_dir = start(args, "support and SBN benchmark")
    print("| data | trees read | support topologies | support s | SBN index s | root splits "
          "| entries | sample n s | score n s | score n, 10 components s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.datasets:
        taxa = load_alignment(alignment_path(data_dir, name)).taxa
        paths = ufboot_paths(data_dir, name)
        support, support_s = timed(build_support, paths, taxa, progress=False)
        parents = support.parents()
        index, index_s = timed(build_subsplit_index, parents, np.array(support.counts), len(taxa))
        sbn = SBN(index, init="counts")
        mixture = SBN(index, n_components=10, init="counts", perturbation=0.1)
        generator = torch.Generator().manual_seed(0)
        components = np.zeros(args.particles, dtype=np.int64)
        sbn.sample(components[:10], generator)  # warm-up
        sample, sample_s = timed(sbn.sample, components, generator)
        _, score_s = timed(sbn.log_prob, sample.parents)
        _, mixture_s = timed(mixture.log_prob, sample.parents)
        trees = 10000 * len(paths)
        print(f"| {name} | {trees} | {len(support)} | {support_s:.2f} | {index_s:.2f} | "
              f"{index.n_root_splits} | {index.n_entries} | {sample_s:.3f} | {score_s:.3f} "
              f"| {mixture_s:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
