"""Figures of one fit, each saved as PNG and PDF: training curves, and against a MrBayes
golden run, topology probabilities and split support under q (the standard VBPI figures).

Drawn on matplotlib `Figure` objects, never through pyplot, so that nothing here touches
process-wide plotting state; matplotlib is imported by whoever draws (a slow import that
commands which draw nothing should not pay).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from vbpi_mix.export.posterior import draw_trees, split_frequencies
from vbpi_mix.inference.runs import read_metrics
from vbpi_mix.io.atomic_files import atomic_path
from vbpi_mix.trees.topology import Topology
from vbpi_mix.variational.mixture import Mixture

SPLIT_DRAWS = 10_000


def new_figure(**options) -> Figure:
    """A figure of its own, outside pyplot's global state (no backend to choose, nothing to
    close), laid out without overlaps."""
    return Figure(layout="constrained", **options)


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    """stem.png and stem.pdf, written atomically; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format=path.suffix[1:], dpi=150)
    return paths


def _identity_axes(axes: Axes, low: float, label: str) -> None:
    axes.plot([low, 1], [low, 1], color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel(f"golden-run {label}")
    axes.set_ylabel(f"{label} under q")


def plot_posterior_against_golden(
    mixture: Mixture, golden: dict[Topology, float], folder: Path, title: str
) -> list[Path]:
    """q(tau) against golden probability for every golden topology (log-log; those q cannot
    reach are drawn at the bottom edge), and split support under q (frequencies of 10,000
    draws) against golden split probabilities."""
    topologies = list(golden)
    p = np.array([golden[t] for t in topologies])
    q = np.exp(mixture.sbn.mixture_log_prob(np.stack([t.parents for t in topologies])))
    low = min(p.min(), q[q > 0].min() if np.any(q > 0) else p.min()) / 2
    figure = new_figure(figsize=(10, 4.6))
    left, right = figure.subplots(1, 2)
    left.loglog(p, np.maximum(q, low), "o", markersize=3, alpha=0.6)
    _identity_axes(left, low, "topology probability")
    left.set_title(f"{title}: topologies")

    golden_splits: Counter[int] = Counter()
    for topology, probability in golden.items():
        n = topology.n_taxa
        golden_splits.update(
            {s: probability for s in topology.splits() if 1 < s.bit_count() < n - 1}
        )
    total = sum(golden.values())
    draws = draw_trees(mixture, topologies[0].taxa, SPLIT_DRAWS, torch.Generator().manual_seed(0))
    q_splits = split_frequencies(draws.topologies)
    keys = sorted(set(golden_splits) | set(q_splits))
    right.plot([golden_splits[k] / total for k in keys], [q_splits.get(k, 0.0) for k in keys],
               "o", markersize=3, alpha=0.6)  # fmt: skip
    _identity_axes(right, 0.0, "split support")
    right.set_title(f"{title}: splits ({SPLIT_DRAWS} draws from q)")
    return save_figure(figure, folder / "posterior_vs_golden")


def plot_training_curves(
    runs: dict[str, Path], stem: Path, title: str, reference: float | None = None
) -> list[Path]:
    """Running bound and, where runs recorded them (`fit --eval-every`), periodic MLL
    estimates against iterations and training seconds, one line per run folder; `reference`
    (MrBayes' stepping-stone MLL) as a dashed line on the MLL panels."""
    records = {label: read_metrics(folder) for label, folder in runs.items()}
    with_mll = any("mll" in line for lines in records.values() for line in lines)
    figure = new_figure(figsize=(11, 3.75 * (1 + with_mll)))
    axes = figure.subplots(1 + with_mll, 2, sharey="row", squeeze=False)
    for label, lines in records.items():
        training = [line for line in lines if "running_bound" in line]
        evaluations = [line for line in lines if "mll" in line]
        for column, key in enumerate(("iteration", "seconds")):
            axes[0, column].plot([t[key] for t in training],
                                 [t["running_bound"] for t in training], label=label)  # fmt: skip
            if with_mll:
                axes[1, column].plot([e[key] for e in evaluations],
                                     [e["mll"] for e in evaluations], "o-", markersize=3,
                                     label=label)  # fmt: skip
    for column, xlabel in enumerate(("iteration", "training seconds")):
        axes[-1, column].set_xlabel(xlabel)
    for axis in axes[:, 0]:
        axis.xaxis.set_major_formatter(EngFormatter(sep=""))  # 400k, not 400000
    axes[0, 0].set_ylabel("running K-particle bound")
    if with_mll:
        axes[1, 0].set_ylabel("MLL (one set of particles)")
    for row in axes:
        values = [y for line in row[0].get_lines() for y in line.get_ydata()]
        if values:  # the early, annealed part of training would squash the end
            low, top = np.percentile(values, 10), max(values)
            if reference is not None and row is axes[-1] and with_mll:
                low, top = min(low, reference - 1), max(top, reference)
            row[0].set_ylim(low, top + 0.05 * (top - low) + 1)
    if with_mll and reference is not None:
        for axis in axes[1]:
            axis.axhline(reference, color="grey", linestyle="--", linewidth=0.8,
                         label="MrBayes stepping-stone")  # fmt: skip
    axes[-1, 0].legend(fontsize=7)
    figure.suptitle(title)
    return save_figure(figure, stem)
