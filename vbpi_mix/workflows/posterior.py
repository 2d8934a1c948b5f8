"""What a fitted posterior gives back: trees drawn from it (`vbpi-mix sample`) and the files
a phylogeneticist opens after a fit (`vbpi-mix summarize`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

from vbpi_mix.export.api import Posterior
from vbpi_mix.export.posterior import TreeSample, topology_probabilities
from vbpi_mix.export.report import PosteriorSummary, write_posterior_summary
from vbpi_mix.export.tree_writers import (
    parameter_table,
    sample_newick,
    sample_nexus,
    topology_tsv,
)
from vbpi_mix.io.text_files import write_text_atomic
from vbpi_mix.workflows.trees import PathLike


def sample(
    run_dir: PathLike,
    n: int,
    out: PathLike,
    seed: int = 0,
    tree_format: Literal["nexus", "newick"] = "nexus",
    topologies: PathLike | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> TreeSample:
    """`n` trees with branch lengths drawn from a run's q, written to `out` (NEXUS, as
    MrBayes' .t files, or Newick); where the fit inferred substitution parameters, the values
    drawn with each tree beside it, in `out` with the suffix `.p` (as MrBayes' .p files,
    `parameter_file`); with `topologies`, also the distinct topologies of the draw with
    their exact q, as TSV. Setting `stop` ends it at its next safe point
    (vbpi_mix.errors.Stopped); each file is written whole or not at all."""
    posterior = Posterior.open(run_dir)
    trees = posterior.sample(n, seed, progress, stop)
    write_text_atomic(out, sample_nexus(trees) if tree_format == "nexus" else sample_newick(trees))
    if trees.parameters is not None:
        write_text_atomic(parameter_file(out), parameter_table(trees))
    if topologies is not None:
        table = topology_probabilities(posterior.run.mixture, trees, stop)
        write_text_atomic(topologies, topology_tsv(table))
    return trees


def parameter_file(out: PathLike) -> Path:
    """Where `sample` writes the substitution parameters drawn with the trees in `out`."""
    out = Path(out)
    return out.with_name(out.name + ".p") if out.suffix == ".p" else out.with_suffix(".p")


def summarize(
    run_dir: PathLike, out: PathLike | None = None, n: int = 10_000, seed: int = 0,
    progress: bool = False, stop: threading.Event | None = None,
) -> PosteriorSummary:  # fmt: skip
    """Into `out` (default RUN_DIR/posterior): the topology table, split frequencies, MAP and
    consensus trees from `n` draws (vbpi_mix.export.report), and the training curves; the
    returned summary lists every file written. `stop` as in `sample`."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "posterior"
    summary = write_posterior_summary(Posterior.open(run_dir), out, n, seed, progress, stop)
    from vbpi_mix.export.figures import plot_training_curves  # matplotlib: a slow import

    curves = plot_training_curves({run_dir.name: run_dir}, out / "training_curves", run_dir.name)
    summary.files.extend(curves)
    return summary
