"""Figures (matplotlib, each saved as PNG and PDF): training curves, MLL box plots, seconds
per iteration against A, and, against MrBayes golden runs, topology probabilities and split
support under q (the standard VBPI figures)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from vbpi_mix.export.posterior import draw_trees, split_frequencies  # noqa: E402
from vbpi_mix.inference.runs import read_metrics  # noqa: E402
from vbpi_mix.io.atomic_files import atomic_path  # noqa: E402
from vbpi_mix.trees.topology import Topology  # noqa: E402
from vbpi_mix.variational.mixture import Mixture  # noqa: E402

SPLIT_DRAWS = 10_000


def save_figure(figure: plt.Figure, stem: Path) -> list[Path]:
    """stem.png and stem.pdf; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format=path.suffix[1:], dpi=150, bbox_inches="tight")
    plt.close(figure)
    return paths


def _identity_axes(axes: plt.Axes, low: float, label: str) -> None:
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
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.6))
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
    figure, axes = plt.subplots(1 + with_mll, 2, figsize=(11, 3.75 * (1 + with_mll)),
                                sharey="row", squeeze=False)  # fmt: skip
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


def plot_mll_boxes(results: list[dict], published: dict[str, float], stem: Path) -> list[Path]:
    """Box plot of the repeated MLL estimates per setting, one panel per data set, with the
    MrBayes stepping-stone value as a line."""
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        by_dataset[result["setting"]["dataset"]].append(result)
    figure, axes = plt.subplots(1, len(by_dataset), figsize=(4 * len(by_dataset), 4.2),
                                squeeze=False)  # fmt: skip
    for axis, (dataset, rows) in zip(axes[0], sorted(by_dataset.items()), strict=True):
        labels = [_setting_label(r["setting"]) for r in rows]
        axis.boxplot([r["summary"]["mll_estimates"] for r in rows])
        axis.set_xticks(range(1, len(rows) + 1), labels, rotation=45, ha="right", fontsize=7)
        if dataset in published:
            axis.axhline(published[dataset], color="grey", linestyle="--", label="MrBayes SS")
            axis.legend(fontsize=7)
        axis.set_title(dataset)
        axis.set_ylabel("MLL")
    return save_figure(figure, stem)


def plot_seconds_per_iteration(results: list[dict], stem: Path) -> list[Path]:
    """Seconds per training iteration against A, one line per data set and estimator/S."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for result in results:
        setting = result["setting"]
        label = f"{setting['dataset']} {_setting_label(setting, with_a=False)}"
        series[label].append((setting["components"], result["summary"]["seconds_per_iteration"]))
    return plot_seconds_against_components(series, stem)


def plot_seconds_against_components(
    series: dict[str, list[tuple[int, float]]], stem: Path, title: str = ""
) -> list[Path]:
    """The headline figure of Hotti et al.: seconds per iteration against the number of
    components A, one line per estimator (label -> [(A, seconds)])."""
    figure, axis = plt.subplots(figsize=(6, 4.2))
    for label, points in sorted(series.items()):
        points = sorted(points)
        axis.plot([a for a, _ in points], [s for _, s in points], "o-", label=label)
    axis.set_xlabel("components A")
    axis.set_ylabel("seconds per iteration")
    axis.set_title(title)
    axis.legend(fontsize=7)
    return save_figure(figure, stem)


def _setting_label(setting: dict, with_a: bool = True) -> str:
    label = setting["estimator"].upper()
    if with_a:
        label += f" A={setting['components']}"
    if setting["subset"] is not None:
        label += f" S={setting['subset']}"
    return label
