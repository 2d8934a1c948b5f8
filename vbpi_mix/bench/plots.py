"""Figures of a bench over many fits, saved as PNG and PDF: MLL box plots and seconds per
iteration against A (on matplotlib `Figure` objects, as vbpi_mix.export.figures, which draws
each fit's own figures)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from vbpi_mix.export.figures import new_figure, save_figure


def plot_mll_boxes(results: list[dict], published: dict[str, float], stem: Path) -> list[Path]:
    """Box plot of the repeated MLL estimates per setting, one panel per data set, with the
    MrBayes stepping-stone value as a line."""
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        by_dataset[result["setting"]["dataset"]].append(result)
    figure = new_figure(figsize=(4 * len(by_dataset), 4.2))
    axes = figure.subplots(1, len(by_dataset), squeeze=False)
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
    figure = new_figure(figsize=(6, 4.2))
    axis = figure.subplots()
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
