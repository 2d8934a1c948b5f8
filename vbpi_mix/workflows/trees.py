"""Workflows on trees before any fit: the support trees a fit starts from (found in files or
made by IQ-TREE's ultrafast bootstrap), and log-likelihoods of given trees."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vbpi_mix.choices import LikelihoodDevice
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.io.alignment_file import read_sequences
from vbpi_mix.io.tree_files import read_tree_file
from vbpi_mix.phylo.alignment import Alignment, load_alignment
from vbpi_mix.phylo.likelihood import TreeLikelihood
from vbpi_mix.phylo.models import build_model
from vbpi_mix.trees.conversions import topology_from_dendropy
from vbpi_mix.workflows.ufboot import find_iqtree, run_ufboot

LOGLIK_CHUNK = 256  # trees per kernel call: bounds memory on large tree files
PathLike = str | os.PathLike[str]  # every workflow's file arguments


def build_support(
    alignment: PathLike,
    out: PathLike,
    replicates: int = 10,
    bootstrap: int = 10000,
    seed: int = 1,
    alignment_format: str | None = None,
    progress: bool = False,
) -> list[Path]:
    """OUT/rep_1.ufboot.gz ... rep_R.ufboot.gz: R IQ-TREE runs (JC, ultrafast bootstrap with
    `bootstrap` trees), replicate k seeded `seed + k - 1`; the alignment is checked first, so
    that a bad file fails here with its name and not inside IQ-TREE."""
    records = read_sequences(alignment, alignment_format)
    Alignment.from_sequences(records, source=str(alignment))
    return run_ufboot(records, out, replicates, bootstrap, seed, progress=progress)


def support_files(
    support: Sequence[PathLike] | None = None,
    support_dir: PathLike | None = None,
    alignment: PathLike | None = None,
    bootstrap_out: PathLike | None = None,
    alignment_format: str | None = None,
    progress: bool = False,
) -> list[Path]:
    """The support tree files of a fit: the given files; else the folder's rep_* files (as
    `vbpi-mix support` and DS1-DS8 lay them out), or every file when it has none; else new
    UFBoot replicates of `alignment` in `bootstrap_out` (IQ-TREE must be installed)."""
    if support:
        return [Path(path) for path in support]
    if support_dir is not None:
        folder = Path(support_dir)
        if not folder.is_dir():
            raise VbpiMixError(f"{folder}: no such folder")
        files = sorted(path for path in folder.iterdir() if path.is_file())
        if not files:
            raise VbpiMixError(f"{folder}: no support tree files in this folder")
        return [path for path in files if path.name.startswith("rep_")] or files
    if alignment is None or bootstrap_out is None:
        raise VbpiMixError("give support tree files, a support folder, or an alignment to run "
                           "IQ-TREE's ultrafast bootstrap on")  # fmt: skip
    find_iqtree()  # a clear error when neither support nor IQ-TREE is available
    return build_support(alignment, bootstrap_out, alignment_format=alignment_format,
                         progress=progress)  # fmt: skip


def loglik(
    alignment: PathLike,
    trees: PathLike,
    model: dict,
    alignment_format: str | None = None,
    likelihood_device: LikelihoodDevice = "cpu",
    progress: bool = False,
) -> list[float]:
    """log p(y | tau, b) of every tree of a tree file (branch lengths required), in the
    file's order, under a fixed substitution model: `model` holds build_model's arguments
    (frequencies "empirical" are counted from the alignment)."""
    data = load_alignment(alignment, alignment_format)
    substitution = build_model(**model, alignment=data)
    parents, lengths = [], []
    for index, tree in enumerate(read_tree_file(trees), start=1):
        source = f"{trees}, tree {index}"
        topology, tree_lengths = topology_from_dendropy(tree, data.taxa, source)
        if np.isnan(tree_lengths).any():
            raise VbpiMixError(f"{source}: branch lengths are required")
        if not np.isfinite(tree_lengths).all() or (tree_lengths < 0).any():
            raise VbpiMixError(f"{source}: negative or infinite branch length")
        parents.append(topology.parents)
        lengths.append(tree_lengths)
    likelihood = TreeLikelihood(data, substitution, likelihood_device)
    all_parents, all_lengths = np.stack(parents), torch.as_tensor(np.stack(lengths))
    values: list[float] = []
    starts = range(0, len(parents), LOGLIK_CHUNK)
    with torch.no_grad():
        for start in tqdm(starts, desc="trees", unit="chunk", disable=not progress or None):
            chunk = slice(start, start + LOGLIK_CHUNK)
            values.extend(likelihood(all_parents[chunk], all_lengths[chunk]).tolist())
    return values
