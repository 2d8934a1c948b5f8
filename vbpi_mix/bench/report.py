"""Bench results as JSON, Markdown and CSV, with the published numbers side by side, and the
bench figures."""

from __future__ import annotations

import csv
import io
import json
import platform
from collections import defaultdict
from datetime import date
from importlib.resources import files
from pathlib import Path

from vbpi_mix.inference.golden import FLOOR as GOLDEN_FLOOR
from vbpi_mix.inference.psis import UNRELIABLE_ABOVE
from vbpi_mix.inference.runs import read_metrics
from vbpi_mix.io.text_files import write_text_atomic

KL_FLOORED = f"KL golden (q floored at {GOLDEN_FLOOR:.2g})"
GAPS = (1.0, 0.5, 0.3)  # nats from MrBayes' stepping-stone MLL
TIME_TO_ACCURACY = "s to MrBayes " + " / ".join(f"±{gap:g}" for gap in GAPS)
COLUMNS = (
    "dataset", "estimator", "A", "S", "seed", "iterations", "seconds", "s/iter", "ELBO",
    "MLL", "MLL sd", KL_FLOORED, "KL golden reachable", "golden mass unreachable", "Pareto k",
    "MrBayes SS", TIME_TO_ACCURACY, "VBPI MLL", "VBPI ELBO", "VBPI-GNN MLL", "ARTree MLL",
    "PhyloGFN MLL",
)  # fmt: skip


def published_numbers() -> dict[tuple[str, str, str], tuple[float, float]]:
    """(dataset, method, quantity) -> (mean, sd), from the package's published.tsv."""
    text = files("vbpi_mix.bench").joinpath("published.tsv").read_text()
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    table = {}
    for row in csv.DictReader(rows, delimiter="\t"):
        key = (row["dataset"], row["method"], row["quantity"])
        table[key] = (float(row["mean"]), float(row["sd"]))
    return table


def seconds_to_accuracy(run_dir: Path, reference: float) -> list[float | None]:
    """For each of GAPS: the training seconds at the first periodic MLL estimate (`fit
    --eval-every`, one set of particles) within that many nats of `reference` and reliable
    by its Pareto k-hat (at most 0.7; early estimates can land near by chance), or None."""
    evaluations = [
        line for line in read_metrics(run_dir)
        if "mll" in line and line["pareto_k"] <= UNRELIABLE_ABOVE
    ]  # fmt: skip
    return [
        next((e["seconds"] for e in evaluations if abs(e["mll"] - reference) <= gap), None)
        for gap in GAPS
    ]


def _time_to_accuracy_cell(run_dir: Path, reference: tuple[float, float] | None) -> str:
    if reference is None:
        return ""
    seconds = seconds_to_accuracy(run_dir, reference[0])
    return " / ".join("-" if s is None else f"{s:.0f}" for s in seconds)


def table_rows(results: list[dict], out: Path) -> list[dict]:
    """One row per finished setting (its run folder under `out`), published values
    alongside."""
    published, rows = published_numbers(), []
    for result in results:
        setting, summary = result["setting"], result["summary"]
        dataset = setting["dataset"]
        run_dir = out / dataset / Path(result["run_dir"]).name

        floored, reachable = summary.get("kl_golden_floored"), summary.get("kl_golden_reachable")
        missing = summary.get("golden_mass_unreachable")
        rows.append({
            "dataset": dataset, "estimator": setting["estimator"].upper(),
            "A": setting["components"],
            "S": setting["subset"] if setting["subset"] is not None else "",
            "seed": setting["seed"], "iterations": summary["iterations"],
            "seconds": f"{summary['seconds']:.0f}",
            "s/iter": f"{summary['seconds_per_iteration']:.4f}",
            "ELBO": f"{summary['elbo']:.2f}", "MLL": f"{summary['mll_mean']:.2f}",
            "MLL sd": f"{summary['mll_std']:.2f}",
            KL_FLOORED: f"{floored:.3f}" if floored is not None else "",
            "KL golden reachable": f"{reachable:.3f}" if reachable is not None else "",
            "golden mass unreachable": f"{missing:.2g}" if missing is not None else "",
            "Pareto k": f"{summary['pareto_k']:.2f}",
            "MrBayes SS": _reference(published, dataset, "MrBayes SS", "mll"),
            TIME_TO_ACCURACY: _time_to_accuracy_cell(
                run_dir, published.get((dataset, "MrBayes SS", "mll"))
            ),
            "VBPI MLL": _reference(published, dataset, "VBPI", "mll"),
            "VBPI ELBO": _reference(published, dataset, "VBPI", "elbo"),
            "VBPI-GNN MLL": _reference(published, dataset, "VBPI-GNN", "mll"),
            "ARTree MLL": _reference(published, dataset, "ARTree", "mll"),
            "PhyloGFN MLL": _reference(published, dataset, "PhyloGFN", "mll"),
        })  # fmt: skip
    return rows


def _reference(published: dict, dataset: str, method: str, quantity: str) -> str:
    value = published.get((dataset, method, quantity))
    return f"{value[0]:.2f} ({value[1]:.2f})" if value else ""


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict]) -> str:
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return stream.getvalue()


def write_report(
    results: list[dict], out: Path, protocol: str, unfinished: list[str], plots: bool = True
) -> list[Path]:
    """OUT/results.{json,md,csv} and, with `plots`, OUT/plots/*; returns the paths."""
    rows = table_rows(results, out)
    header = (
        f"# vbpi-mix bench, protocol `{protocol}`\n\n{date.today().isoformat()}, "
        f"{platform.node()} ({platform.machine()}, {platform.system()}, Python "
        f"{platform.python_version()}). Seconds are training wall clock; MLL is mean (sd) of "
        "the repeated 1000-particle estimates; KL(golden || q) is given in the published "
        f"convention (q floored at {GOLDEN_FLOOR:.2g}, as the reference SBN code) and over the "
        "golden topologies q can reach (renormalised), with the golden mass it cannot reach beside "
        f"it; '{TIME_TO_ACCURACY}': training seconds until a periodic MLL estimate (one set of "
        "particles, Pareto k-hat at most 0.7) first came within that many nats of MrBayes' "
        "stepping-stone value.\n\n"
    )
    if unfinished:
        header += f"Not finished (not reported): {', '.join(unfinished)}.\n\n"
    texts = {
        "results.json": json.dumps(results, indent=2) + "\n",
        "results.md": header + markdown_table(rows),
        "results.csv": csv_table(rows),
    }
    paths = []
    for name, text in texts.items():
        write_text_atomic(out / name, text)
        paths.append(out / name)
    if plots and results:
        paths += _figures(results, out)
    return paths


def _figures(results: list[dict], out: Path) -> list[Path]:
    # matplotlib: a slow import, only where plots are drawn
    from vbpi_mix.bench.plots import plot_mll_boxes, plot_seconds_per_iteration
    from vbpi_mix.export.figures import plot_training_curves

    published = {
        dataset: value[0]
        for (dataset, method, quantity), value in published_numbers().items()
        if method == "MrBayes SS" and quantity == "mll"
    }
    paths = plot_mll_boxes(results, published, out / "plots" / "mll_boxes")
    paths += plot_seconds_per_iteration(results, out / "plots" / "seconds_per_iteration")
    by_dataset: dict[str, dict[str, Path]] = defaultdict(dict)
    for result in results:  # found under `out`, so a moved or copied bench folder still plots
        dataset, name = result["setting"]["dataset"], Path(result["run_dir"]).name
        by_dataset[dataset][name] = out / dataset / name
    for dataset, runs in sorted(by_dataset.items()):
        stem = out / "plots" / f"training_{dataset}"
        paths += plot_training_curves(runs, stem, dataset, published.get(dataset))
    return paths
