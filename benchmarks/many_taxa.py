"""Cost of more taxa (clades of one to eight words): support building, SBN scoring and a
training iteration on alignments simulated down random trees of 64, 128, 256 and 512 taxa.

Each alignment (JC69, `--sites` sites, pendant branches 0.02-0.15, internal 0.004-0.05 as in
the bundled example) gets its support from IQ-TREE's ultrafast bootstrap (`vbpi-mix support`,
one run of `--bootstrap` trees), kept in OUT/N/ and reused. Then each measurement runs in a
fresh process, one thread, so that its peak resident memory (ru_maxrss) is its own: reading
the support and building the SBN's index, scoring `--score` sampled trees; and a training
iteration (K = 10) of A = 1 and of S2A with A = 10, S = 1 (median of `--iterations` after
three warm-up iterations).

    python -m benchmarks.many_taxa [--taxa 64 128 256 512] [--out runs/many_taxa]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

SETTINGS = {"support": None, "A=1": (1, "a2a", None), "S2A A=10 S=1": (10, "s2a", 1)}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taxa", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--score", type=int, default=1000, help="trees scored")
    parser.add_argument("--iterations", type=int, default=20, help="timed training iterations")
    parser.add_argument("--out", type=Path, default=Path("runs/many_taxa"))
    parser.add_argument("--child", nargs=2, metavar=("N", "SETTING"), help=argparse.SUPPRESS)
    return parser.parse_args()


def simulate(folder: Path, n_taxa: int, sites: int) -> Path:
    """OUT/N/sim.fasta, simulated once (seed N)."""
    import numpy as np

    from vbpi_mix.io.text_files import write_text_atomic
    from vbpi_mix.phylo.models import JC69
    from vbpi_mix.phylo.simulate import simulate_sequences
    from vbpi_mix.trees.random_tree import random_parents

    path = folder / "sim.fasta"
    if not path.is_file():
        rng = np.random.default_rng(n_taxa)
        parents = random_parents(n_taxa, rng)
        lengths = np.where(
            np.arange(len(parents)) < n_taxa,
            rng.uniform(0.02, 0.15, len(parents)),
            rng.uniform(0.004, 0.05, len(parents)),
        )
        sequences = simulate_sequences(parents, lengths, JC69(), sites, rng)
        folder.mkdir(parents=True, exist_ok=True)
        fasta = "".join(f">t{i:03d}\n{s}\n" for i, s in enumerate(sequences))
        write_text_atomic(path, fasta)
    return path


def support_files(folder: Path, alignment: Path, bootstrap: int) -> tuple[Path, float | None]:
    """OUT/N/support/rep_1.ufboot.gz from IQ-TREE (seconds, or None when reused)."""
    target = folder / "support"
    if (target / "rep_1.ufboot.gz").is_file():
        return target, None
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "vbpi_mix.cli", "support", str(alignment), "-o", str(target),
         "--replicates", "1", "--bootstrap", str(bootstrap), "--quiet"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return target, time.perf_counter() - started


def peak_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def child(args: argparse.Namespace, n_taxa: int, setting: str) -> dict:
    """One measurement in this (fresh) process."""
    import numba
    import numpy as np
    import torch

    from vbpi_mix.inference.runs import ModelConfig, create_run
    from vbpi_mix.inference.trainer import TrainingConfig
    from vbpi_mix.phylo.alignment import load_alignment
    from vbpi_mix.trees.subsplits import build_subsplit_index
    from vbpi_mix.trees.support import build_support
    from vbpi_mix.variational.sbn import SBN

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    folder = args.out / str(n_taxa)
    alignment = folder / "sim.fasta"
    taxa = load_alignment(alignment).taxa
    started = time.perf_counter()
    support = build_support(sorted((folder / "support").glob("rep_*")), taxa, progress=False)
    read_s = time.perf_counter() - started
    if SETTINGS[setting] is None:
        build_subsplit_index(support.parents()[:1], np.ones(1), n_taxa)  # compiles or loads
        started = time.perf_counter()
        index = build_subsplit_index(support.parents(), np.array(support.counts), n_taxa)
        index_s = time.perf_counter() - started
        sbn = SBN(index, 1)
        trees = sbn.sample(np.zeros(args.score, dtype=np.int64)).parents
        sbn.log_prob(trees[:10])  # compiles, or loads the compiled walks
        started = time.perf_counter()
        with torch.no_grad():
            sbn.log_prob(trees)
        score_s = time.perf_counter() - started
        return {
            "topologies": len(support), "read_s": read_s, "index_s": index_s,
            "root_splits": index.n_root_splits, "entries": index.n_entries,
            "words": index.words, "score_s": score_s, "peak_mb": peak_megabytes(),
        }  # fmt: skip
    components, estimator, subset = SETTINGS[setting]
    model = ModelConfig(alignment=str(alignment), components=components)
    training = TrainingConfig(
        iterations=10**6, particles=10, estimator=estimator, subset=subset, split_at=0
    )
    trainer = create_run(Path(tempfile.mkdtemp()), model, training, support).trainer
    for _ in range(3):
        trainer.step()
    seconds = []
    for _ in range(args.iterations):
        started = time.perf_counter()
        trainer.step()
        seconds.append(time.perf_counter() - started)
    return {"ms": 1000 * statistics.median(seconds), "peak_mb": peak_megabytes()}


def measure(args: argparse.Namespace, n_taxa: int, setting: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.many_taxa", "--child", str(n_taxa), setting,
               "--out", str(args.out), "--score", str(args.score),
               "--iterations", str(args.iterations)]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    args = arguments()
    if args.child:
        print(json.dumps(child(args, int(args.child[0]), args.child[1])))
        return
    print(f"# More taxa, {date.today()}, {platform.machine()}, one thread per measurement")
    print()
    print("| taxa | words | IQ-TREE s | topologies | read s | index s | root splits | entries "
          f"| score {args.score} s | support peak MB | A=1 ms/it | A=1 peak MB "
          "| S2A A=10 ms/it | S2A A=10 peak MB |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n_taxa in args.taxa:
        folder = args.out / str(n_taxa)
        alignment = simulate(folder, n_taxa, args.sites)
        _, iqtree_s = support_files(folder, alignment, args.bootstrap)
        s = measure(args, n_taxa, "support")
        one, many = measure(args, n_taxa, "A=1"), measure(args, n_taxa, "S2A A=10 S=1")
        iqtree = f"{iqtree_s:.0f}" if iqtree_s is not None else "(kept)"
        print(f"| {n_taxa} | {s['words']} | {iqtree} | {s['topologies']} | {s['read_s']:.2f} "
              f"| {s['index_s']:.2f} | {s['root_splits']} | {s['entries']} | {s['score_s']:.2f} "
              f"| {s['peak_mb']:.0f} | {one['ms']:.1f} | {one['peak_mb']:.0f} "
              f"| {many['ms']:.1f} | {many['peak_mb']:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
