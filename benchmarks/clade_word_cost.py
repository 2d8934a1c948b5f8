"""What single-word clades cost, for A/B runs of two checkouts: one thread, one data set; the
SBN index from the full support, drawing 1000 trees from a 10-component SBN and building
their scoring tables, and training iterations (K = 10) of A = 1 and of S2A with A = 10, S = 1.
Prints one JSON line; run it alternately with each checkout first on PYTHONPATH:

    for round in 1 2 3; do for code in ../old ../new; do
        PYTHONPATH=$code python benchmarks/clade_word_cost.py DS8 200; done; done
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import torch

from vbpi_mix.bench.datasets import alignment_path, find_data_dir, ufboot_paths
from vbpi_mix.inference.runs import ModelConfig, create_run
from vbpi_mix.inference.trainer import TrainingConfig
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.trees.subsplits import build_subsplit_index
from vbpi_mix.trees.support import build_support
from vbpi_mix.variational.sbn import SBN


def seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    dataset, steps = sys.argv[1], int(sys.argv[2])
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    data_dir = find_data_dir(None)
    if data_dir is None:
        raise SystemExit("DS1-DS8 data not found: set VBPI_MIX_DATA")
    alignment = alignment_path(data_dir, dataset)
    taxa = load_alignment(alignment).taxa
    support = build_support(ufboot_paths(data_dir, dataset), taxa, progress=False)
    parents, counts = support.parents(), np.array(support.counts)
    build_subsplit_index(parents[:2], np.ones(2), len(taxa))  # compiles, or loads
    out = {"index_s": seconds(lambda: build_subsplit_index(parents, counts, len(taxa)))}
    sbn = SBN(build_subsplit_index(parents, counts, len(taxa)), 10)
    generator = torch.Generator().manual_seed(0)
    components = np.arange(1000) % 10
    sbn.sample(components[:10], generator)
    out["sample_1000_ms"] = 1000 * seconds(lambda: sbn.sample(components, generator))
    drawn = sbn.sample(components, generator).parents
    out["tables_1000_ms"] = 1000 * seconds(lambda: sbn.tables(drawn))
    for label, size, estimator, subset in (("A=1", 1, "a2a", None), ("S2A A=10", 10, "s2a", 1)):
        training = TrainingConfig(iterations=10**6, estimator=estimator, subset=subset, split_at=0)
        model = ModelConfig(alignment=str(alignment), components=size)
        trainer = create_run(Path(tempfile.mkdtemp()), model, training, support).trainer
        for _ in range(5):
            trainer.step()
        started = time.perf_counter()
        for _ in range(steps):
            trainer.step()
        out[f"{label} ms"] = 1000 * (time.perf_counter() - started) / steps
    print(json.dumps(out))


if __name__ == "__main__":
    main()
